"""The notebooks as saved in the repository: real figures, and nothing of the machine that ran them.

nbval compares their text outputs with a fresh run but skips images, so the figures are
checked here, as are the things a saved output can leak: paths, tracebacks, secrets.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:home|root|tmp|work|Users|var|opt)/|[A-Za-z]:\\\\")
FIGURES = {"02-flights-eda.ipynb": 3}


def _outputs(notebook: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [(cell, output) for cell in cells for output in cell.get("outputs", [])]


def test_every_notebook_is_found() -> None:
    assert [path.name for path in NOTEBOOKS] == [
        "01-quickstart.ipynb",
        "02-flights-eda.ipynb",
        "03-async-core.ipynb",
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_figures_are_real_png_images(notebook: Path) -> None:
    images = [
        base64.b64decode(output["data"]["image/png"])
        for _, output in _outputs(notebook)
        if "image/png" in output.get("data", {})
    ]
    assert len(images) == FIGURES.get(notebook.name, 0)
    for image in images:
        assert image.startswith(PNG_SIGNATURE)
        width, height = int.from_bytes(image[16:20], "big"), int.from_bytes(image[20:24], "big")
        assert width >= 300 and height >= 200, (width, height)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_saved_outputs_hold_no_paths_tracebacks_or_secrets(notebook: Path) -> None:
    for cell, output in _outputs(notebook):
        text = json.dumps({key: value for key, value in output.items() if key != "data"})
        text += json.dumps(
            {kind: value for kind, value in output.get("data", {}).items() if kind != "image/png"}
        )
        assert not ABSOLUTE_PATH.search(text), text[:300]
        assert "Traceback" not in text and 'File \\"' not in text, text[:300]
        assert "password" not in text.lower(), text[:300]
        if output["output_type"] == "error":
            # An error kept on purpose is tagged for nbval and shows one short line.
            assert "raises-exception" in cell["metadata"].get("tags", [])
            assert len(output["traceback"]) == 1
