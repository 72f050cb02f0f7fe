"""The input transformer: calls of the CQL magics become awaited calls where await is allowed."""

from __future__ import annotations

import ast

from cassnb._magics.transformer import await_magic_calls

NAMES = {"cql", "cql_connect"}


def rewrite(source: str) -> str:
    return await_magic_calls(source, NAMES, "T")


def test_cell_and_line_magics_are_awaited() -> None:
    cell = "get_ipython().run_cell_magic('cql', '--out x', 'SELECT 1;\\n')\n"
    assert rewrite(cell) == "(await T('cql', '--out x', 'SELECT 1;\\n'))\n"
    line = "df = get_ipython().run_line_magic('cql', 'SELECT count(*) FROM t')\n"
    assert rewrite(line) == "df = (await T('cql', 'SELECT count(*) FROM t', None))\n"


def test_other_magics_and_plain_code_are_untouched() -> None:
    for source in [
        "get_ipython().run_line_magic('time', 'x = 1')\n",
        "x = 1\n",
        "get_ipython().run_line_magic('cql', some_variable)\n",
        "def broken(:\n    get_ipython().run_line_magic('cql', 'x')\n",
    ]:
        assert rewrite(source) is source


def test_calls_where_await_is_not_allowed_stay_blocking() -> None:
    source = (
        "def f():\n"
        "    return get_ipython().run_line_magic('cql', 'a')\n"
        "g = lambda: get_ipython().run_line_magic('cql', 'b')\n"
        "h = (get_ipython().run_line_magic('cql', c) for c in 'xy')\n"
        "class C:\n"
        "    v = get_ipython().run_line_magic('cql', 'd')\n"
    )
    assert rewrite(source) is source


def test_calls_in_async_functions_and_top_level_blocks_are_awaited() -> None:
    source = (
        "async def f():\n"
        "    return get_ipython().run_line_magic('cql', 'a')\n"
        "for i in range(2):\n"
        "    x = get_ipython().run_line_magic('cql', 'b'); print('é', x)\n"
    )
    out = rewrite(source)
    assert out.count("(await T(") == 2
    assert "print('é', x)" in out
    ast.parse(out)


def test_positions_are_right_after_non_ascii_text() -> None:
    source = "x = 'ünïcødé'; df = get_ipython().run_line_magic('cql', 'SELECT 1')  # ß\n"
    assert rewrite(source) == "x = 'ünïcødé'; df = (await T('cql', 'SELECT 1', None))  # ß\n"
