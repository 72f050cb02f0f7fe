"""The README's examples are cells of notebooks that CI executes, so they cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"<!-- from (notebooks/[\w.-]+\.ipynb) -->\n```python\n(.*?)\n```", re.S)


def examples() -> list[tuple[str, str]]:
    return EXAMPLE.findall((ROOT / "README.md").read_text())


def test_readme_opens_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[2] == "```bash"
    assert lines[3].startswith("make demo")
    assert lines[4].startswith("make test")
    assert lines[5] == "```"


def test_readme_has_an_async_a_cql_and_a_dataframe_example() -> None:
    sources = {notebook for notebook, _ in examples()}
    assert sources == {
        "notebooks/01-quickstart.ipynb",
        "notebooks/02-flights-eda.ipynb",
        "notebooks/03-async-core.ipynb",
    }


@pytest.mark.parametrize(("notebook", "block"), examples())
def test_each_example_is_made_of_whole_cells_of_its_notebook(notebook: str, block: str) -> None:
    cells = [
        cell.source
        for cell in nbformat.read(ROOT / notebook, as_version=4).cells
        if cell.cell_type == "code"
    ]
    remaining = block
    for source in cells:
        if remaining.startswith(source):
            remaining = remaining[len(source) :].removeprefix("\n\n")
    assert remaining == "", f"not a sequence of cells of {notebook}:\n{remaining}"
