"""A fixture that fails a test when its loop's exception handler was called.

A suite's conftest.py takes it in by importing it, which makes it autouse there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
async def no_loop_errors() -> AsyncIterator[None]:
    """Fail a test when its loop's exception handler was called."""
    loop = asyncio.get_running_loop()
    caught: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: caught.append(context))
    yield
    loop.set_exception_handler(None)
    assert not caught, f"the loop's exception handler caught: {caught}"
