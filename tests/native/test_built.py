"""CI builds the compiled decoder from a clean clone, so its suites cannot skip unnoticed."""

from __future__ import annotations

import os

import pytest

from cassnb._frames import columnar as _columnar


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI promises a C compiler")
def test_ci_built_the_compiled_decoder() -> None:
    assert _columnar.native_available()
