"""The package's shape, read from its source: one folder per layer, imports pointing down,
no import cycle, and the driver's internals reached from cassnb/_driver/ only.

Layers, lowest first: _driver, _core, _frames, _scan, _magics; the facade (cassnb/__init__.py
and cassnb/streaming.py) sits on top; local stands apart and uses the standard library
only. A module may import its own layer and those below it. Imports inside functions count
as much as those at the top; ``if TYPE_CHECKING:`` imports count for the direction, not
for cycles (they never run). The one upward import allowed is the documented lazy
convenience: ``stream.frames()`` and ``stream.to_dataframe()`` load the frames layer.
"""

from __future__ import annotations

import ast
import functools
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cassnb"

LAYERS = ("_driver", "_core", "_frames", "_scan", "_magics")
FACADE = {"cassnb", "cassnb.streaming"}
#: The documented lazy conveniences: (importer, imported).
UPWARD_ALLOWED = {("cassnb._core.stream", "cassnb._frames.read")}
#: cassnb's own attributes that share a name with a private name of the driver's: each is
#: defined by a class of the layer that reads it (checked below).
OWN_NAMES_LIKE_THE_DRIVERS = {"_fields", "_loop", "_state"}


@dataclass(frozen=True)
class Import:
    module: str
    line: int
    type_only: bool


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@functools.cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    if module in FACADE:
        return "facade"
    part = module.split(".")[1]
    return part if part in (*LAYERS, "local") else f"? {part}"


def _rank(layer: str) -> int:
    return len(LAYERS) if layer == "facade" else LAYERS.index(layer)


def _resolve(module: str, name: str | None) -> str:
    """The module an import names: ``from a import b`` is a.b when that is a module."""
    if name is not None and f"{module}.{name}" in _modules():
        return f"{module}.{name}"
    return module


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports_of(source: str, importer: str) -> Iterator[Import]:
    """Every import in a module's source, with the modules it names."""
    tree = ast.parse(source)
    type_only = _type_checking_lines(tree)
    for node in ast.walk(tree):
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # The package imports absolutely, so that every import names its module.
            assert not node.level, f"{importer}:{node.lineno}: a relative import"
            found = [_resolve(node.module or "", alias.name) for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("importlib.import_module", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found = [node.args[0].value]
        for module in found:
            yield Import(module, node.lineno, node.lineno in type_only)


@functools.cache
def _graph() -> dict[str, list[Import]]:
    return {
        name: [i for i in imports_of(path.read_text(), name) if i.module.startswith("cassnb")]
        for name, path in _modules().items()
    }


def direction_problems(graph: dict[str, list[Import]]) -> list[str]:
    problems = []
    for importer, imports in graph.items():
        mine = _layer(importer)
        for imported in imports:
            theirs = _layer(imported.module)
            where = f"{importer}:{imported.line} imports {imported.module}"
            if "?" in mine or "?" in theirs:
                problems.append(f"{where}: a module outside every layer")
            elif mine == "local" or theirs == "local":
                if mine != theirs:
                    problems.append(f"{where}: local stands apart from the other layers")
            elif _rank(theirs) > _rank(mine) and (importer, imported.module) not in UPWARD_ALLOWED:
                problems.append(f"{where}: {mine} may not import {theirs}, a layer above it")
    return problems


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Strongly connected groups of modules that import each other, at run time."""
    edges = {
        importer: sorted(
            {
                i.module
                for i in imports
                if not i.type_only
                and i.module in graph
                and i.module != importer
                and (importer, i.module) not in UPWARD_ALLOWED
            }
        )
        for importer, imports in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_lives_in_a_layer() -> None:
    layers = {_layer(module) for module in _modules()}
    assert layers == {*LAYERS, "facade", "local"}


def test_imports_point_down_the_layers() -> None:
    assert direction_problems(_graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(_graph()) == []


def test_local_uses_the_standard_library_only() -> None:
    for module, path in _modules().items():
        if _layer(module) != "local":
            continue
        for imported in imports_of(path.read_text(), module):
            top = imported.module.split(".")[0]
            assert (
                top == "__future__"
                or top in sys.stdlib_module_names
                or (imported.module.startswith("cassnb.local"))
            ), f"{module}:{imported.line} imports {imported.module}"


def test_the_checks_find_what_they_look_for() -> None:
    """Each check fails on a package made to break it."""
    graph = {
        "cassnb._core.session": [Import("cassnb._frames.read", 3, False)],
        "cassnb._frames.read": [Import("cassnb._core.session", 4, False)],
        "cassnb._driver.reads": [Import("cassnb._driver.start", 5, True)],
        "cassnb._driver.start": [Import("cassnb._driver.reads", 6, False)],
        "cassnb.local": [Import("cassnb._core.session", 7, False)],
    }
    problems = direction_problems(graph)
    assert problems == [
        "cassnb._core.session:3 imports cassnb._frames.read: _core may not import _frames, "
        "a layer above it",
        "cassnb.local:7 imports cassnb._core.session: local stands apart from the other layers",
    ]
    # The type-only import back does not close a cycle; the run-time one does.
    assert cycles(graph) == [["cassnb._core.session", "cassnb._frames.read"]]


# --- the driver's internals ------------------------------------------------------------


@functools.cache
def driver_private_names() -> frozenset[str]:
    """Every ``_name`` the installed driver defines or uses as an attribute."""
    import cassandra

    names: set[str] = set()
    for path in Path(cassandra.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return frozenset(n for n in names if _private(n))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_names(tree: ast.Module) -> set[str]:
    """The private names a module defines: attributes it assigns, slots, class members."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets)
            and isinstance(node.value, ast.Tuple | ast.List)
        ):
            names.update(
                e.value for e in node.value.elts if isinstance(e, ast.Constant) and e.value
            )
    return {name for name in names if _private(name)}


def _cassandra_names(tree: ast.Module) -> set[str]:
    """Local names bound to something imported from the driver."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cassandra":
                    bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "cassandra":
            bound.update(alias.asname or alias.name for alias in node.names)
    return bound


def internals_reached(source: str, own_names: set[str]) -> list[str]:
    """Where a module outside cassnb/_driver reaches into the driver.

    Flagged: an import of a private driver name or module; ``x._name`` (or
    ``getattr(x, "_name")``) on anything but ``self``/``cls`` when ``_name`` is a private
    name of the driver's, or a name the layer itself does not define; and in a class
    derived from a driver class, a private name of the driver's reached through ``self``,
    or a private method of the driver's overridden.
    """
    tree = ast.parse(source)
    driver = driver_private_names()
    imported = _cassandra_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "cassandra":
            private_module = any(_private(part) for part in (node.module or "").split("."))
            for alias in node.names:
                if private_module or _private(alias.name):
                    found.append(f"line {node.lineno}: imports {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "cassandra" and any(_private(part) for part in parts):
                    found.append(f"line {node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.ClassDef) and any(
            ast.unparse(base).split(".")[0].split("[")[0] in imported for base in node.bases
        ):
            found.extend(_through_self(node, driver))
        attribute = None
        owner: ast.expr | None = None
        if isinstance(node, ast.Attribute) and _private(node.attr):
            attribute, owner = node.attr, node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            attribute, owner = node.args[1].value, node.args[0]
        if attribute is None or owner is None:
            continue
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Name) and owner.id == "sys" and attribute == "_getframe":
            continue  # the interpreter's, documented
        if attribute in driver and attribute not in OWN_NAMES_LIKE_THE_DRIVERS:
            found.append(f"line {node.lineno}: reads or writes the driver's {attribute}")
        elif attribute not in own_names:
            found.append(f"line {node.lineno}: reads {attribute}, which its layer does not define")
    return sorted(found, key=lambda finding: int(finding.split(":")[0].split()[1]))


def _through_self(cls: ast.ClassDef, driver: frozenset[str]) -> list[str]:
    """Where a class derived from a driver class reaches the driver's private state."""
    found = []
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in driver:
            found.append(f"line {node.lineno}: {cls.name} overrides the driver's {node.name}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in driver
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            found.append(f"line {node.lineno}: {cls.name} reaches the driver's {node.attr}")
    return found


@functools.cache
def _own_names_by_layer() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for module, path in _modules().items():
        names.setdefault(_layer(module), set()).update(_defined_names(ast.parse(path.read_text())))
    return names


#: Private names of other libraries a layer uses on their objects, each named here.
OTHER_LIBRARIES = {
    "_concat_same_type": "pandas ExtensionArray interface",
    "_data": "pandas masked arrays' values",
    "_mask": "pandas masked arrays' NULL mask",
    "_repr_html_": "IPython's rich display protocol",
    "_render_traceback_": "IPython's traceback protocol",
}


@pytest.mark.parametrize(
    "module", sorted(m for m in _modules() if _layer(m) not in ("_driver", "local"))
)
def test_outside_the_driver_layer_nothing_reaches_its_internals(module: str) -> None:
    own = _own_names_by_layer()[_layer(module)] | set(OTHER_LIBRARIES)
    assert internals_reached(_modules()[module].read_text(), own) == []


def test_own_names_like_the_drivers_are_defined_where_they_are_read() -> None:
    for name in OWN_NAMES_LIKE_THE_DRIVERS:
        readers = {
            _layer(module)
            for module, path in _modules().items()
            if _layer(module) != "_driver" and f".{name}" in path.read_text()
        }
        for layer in readers:
            assert name in _own_names_by_layer()[layer], (name, layer)


def test_the_internals_check_finds_what_it_looks_for() -> None:
    source = textwrap.dedent(
        """
        from cassandra.cluster import _NOT_SET, Cluster
        from cassandra.protocol import ResultMessage
        import cassandra.io._private

        class Handler(ResultMessage):
            def recv_body(self, f):
                self._own_counter = 1
                return self._FLAGS_GLOBAL_TABLES_SPEC

            def _set_final_result(self, response):
                pass

        def read(future, stream):
            future._col_names = None
            state = getattr(future, "_paging_state", None)
            stream._unheard_of.clear()
            return self._own
        """
    )
    assert internals_reached(source, own_names=set()) == [
        "line 2: imports cassandra.cluster._NOT_SET",
        "line 4: imports cassandra.io._private",
        "line 9: Handler reaches the driver's _FLAGS_GLOBAL_TABLES_SPEC",
        "line 11: Handler overrides the driver's _set_final_result",
        "line 15: reads or writes the driver's _col_names",
        "line 16: reads or writes the driver's _paging_state",
        "line 17: reads _unheard_of, which its layer does not define",
    ]
