"""Turn calls of the CQL magics into awaited calls, so a cell runs on the kernel's loop.

IPython rewrites ``%%cql`` and ``%cql`` into ``get_ipython().run_cell_magic(...)`` and
``get_ipython().run_line_magic(...)``; the post-transformer here rewrites those calls,
wherever an ``await`` is allowed, into ``(await <target>(name, line, cell))``. The cell
then contains a top-level ``await`` and IPython (autoawait, in ipykernel and in terminal
IPython) runs it as a coroutine on its own running loop. Calls inside a plain function,
a lambda, a class body or a generator expression are left alone: the magic's blocking
path runs them.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Collection, Iterator
from typing import Any, Final

__all__ = ["AwaitMagics", "asyncio_autoawait", "await_magic_calls"]

_SYNC_SCOPES: Final = (
    ast.FunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.GeneratorExp,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
)


def _magic_call(node: ast.AST, names: Collection[str]) -> tuple[str, str, str | None] | None:
    """Return ``(magic, line, cell)`` if ``node`` is IPython's call of one of ``names``."""
    if not isinstance(node, ast.Call) or node.keywords:
        return None
    func = node.func
    if not (
        isinstance(func, ast.Attribute)
        and func.attr in ("run_line_magic", "run_cell_magic")
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
        and not func.value.args
    ):
        return None
    wanted = 2 if func.attr == "run_line_magic" else 3
    args = node.args
    if len(args) != wanted or not all(
        isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in args
    ):
        return None
    values = [str(arg.value) for arg in args if isinstance(arg, ast.Constant)]
    if values[0] not in names:
        return None
    return values[0], values[1], values[2] if wanted == 3 else None


def _awaitable_calls(tree: ast.AST, names: Collection[str]) -> Iterator[ast.Call]:
    """Yield the magic calls that sit where ``await`` may be written."""

    def visit(node: ast.AST, awaitable: bool) -> Iterator[ast.Call]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.AsyncFunctionDef):
                child_awaitable = True
            elif isinstance(child, _SYNC_SCOPES):
                child_awaitable = False
            else:
                child_awaitable = awaitable
            if child_awaitable and isinstance(child, ast.Call) and _magic_call(child, names):
                yield child
                continue
            yield from visit(child, child_awaitable)

    yield from visit(tree, True)


def _offset(lines: list[str], lineno: int, col_offset: int) -> int:
    """Turn the AST's (line, UTF-8 byte column) into an index into the joined source."""
    before = sum(len(line) for line in lines[: lineno - 1])
    return before + len(lines[lineno - 1].encode("utf-8")[:col_offset].decode("utf-8"))


def await_magic_calls(source: str, names: Collection[str], target: str) -> str:
    """Rewrite the calls of magics ``names`` in ``source`` into ``(await target(...))``.

    Source that does not parse, or has no such call, is returned unchanged.
    """
    if "get_ipython()" not in source:
        return source
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    calls = list(_awaitable_calls(tree, names))
    if not calls:
        return source
    lines = source.splitlines(keepends=True)
    pieces: list[str] = []
    position = 0
    for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
        found = _magic_call(call, names)
        assert found is not None and call.end_lineno is not None
        assert call.end_col_offset is not None
        start = _offset(lines, call.lineno, call.col_offset)
        end = _offset(lines, call.end_lineno, call.end_col_offset)
        magic, line, cell = found
        pieces.append(source[position:start])
        pieces.append(f"(await {target}({magic!r}, {line!r}, {cell!r}))")
        position = end
    pieces.append(source[position:])
    return "".join(pieces)


def _inside_running_cell() -> bool:
    """Tell whether we are called from code that a cell is already running.

    Magics such as ``%%time`` or ``%%capture`` transform their body while their own cell
    runs, and then compile or run it without top-level await; such a body keeps the
    blocking call.
    """
    from IPython.core.interactiveshell import InteractiveShell

    run_code = InteractiveShell.run_code.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is run_code:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def asyncio_autoawait(shell: Any) -> bool:
    """Tell whether ``shell`` runs top-level ``await`` on asyncio (``%autoawait`` on)."""
    from IPython.core.async_helpers import _asyncio_runner

    return bool(shell.autoawait) and shell.loop_runner is _asyncio_runner


class AwaitMagics:
    """An IPython post input transformer that awaits the given magics.

    ``enabled`` is asked on every cell: with ``%autoawait off`` (or a trio or curio
    runner) the calls stay blocking.
    """

    def __init__(
        self, names: Collection[str], target: str, enabled: Callable[[], bool] = lambda: True
    ) -> None:
        self.names = frozenset(names)
        self.target = target
        self.enabled = enabled

    def __call__(self, lines: list[str]) -> list[str]:
        source = "".join(lines)
        if not self.enabled() or _inside_running_cell():
            return lines
        rewritten = await_magic_calls(source, self.names, self.target)
        if rewritten is source:
            return lines
        return rewritten.splitlines(keepends=True)
