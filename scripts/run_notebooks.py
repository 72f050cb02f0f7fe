"""Execute every notebook in notebooks/ against the running node and write each as HTML."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

ROOT = Path(__file__).resolve().parent.parent


def execute(notebook: Path, out_dir: Path, timeout: int, *, save: bool) -> Path:
    """Run one notebook from its own folder and write the executed copy as HTML."""
    document = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        document,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    client.execute()
    if save:
        # One stream output per name, with progress bars' carriage returns resolved, so
        # the saved notebook holds what a reader saw rather than every redraw.
        document, _ = CoalesceStreamsPreprocessor().preprocess(document, {})
        nbformat.write(document, notebook)
    html, _ = HTMLExporter().from_notebook_node(document)
    target = out_dir / notebook.with_suffix(".html").name
    target.write_text(html, encoding="utf-8")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "notebooks")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--save", action="store_true", help="also save the outputs in place")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    for notebook in notebooks:
        began = time.monotonic()
        target = execute(notebook.resolve(), args.out, args.timeout, save=args.save)
        print(f"executed {notebook.name} in {time.monotonic() - began:.0f} s -> {target}")
    print(f"\nAll notebooks executed; the HTML files are in {args.out}")
    print("To work in them against the running node:")
    print("  .venv/bin/pip install jupyterlab && .venv/bin/jupyter lab notebooks/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
