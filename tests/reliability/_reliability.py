"""Sizes, figures, the keyspace and small helpers shared by the reliability tests.

The suite runs at CI sizes unless ``CASSNB_RELIABILITY_SCALE=full``; then every scenario
runs at the sizes the reliability targets name (``scripts/reliability_full.sh``). Each
test prints its figures on one line starting with ``reliability:`` (shown by
``pytest -s``), and appends them as JSON to ``$CASSNB_RELIABILITY_REPORT`` when that is
set, so a full run can print a summary at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable

import psutil

_SCALES = ("ci", "full")
SCALE = os.environ.get("CASSNB_RELIABILITY_SCALE", "ci").strip().lower() or "ci"
if SCALE not in _SCALES:
    raise RuntimeError(f"CASSNB_RELIABILITY_SCALE must be one of {_SCALES}, not {SCALE!r}")
FULL = SCALE == "full"

#: The single-node scenarios' keyspace, kept by conftest.py.
KEYSPACE = "cassnb_rel"
#: Rows in the table the stream scenarios read: 20 partitions of 250 rows.
STREAM_PARTITIONS = 20
STREAM_ROWS_PER_PARTITION = 250
STREAM_ROWS = STREAM_PARTITIONS * STREAM_ROWS_PER_PARTITION


def sized(ci: int, full: int) -> int:
    """Return the CI size, or the full size when the suite runs at full scale."""
    return full if FULL else ci


def report(scenario: str, **figures: object) -> None:
    """Print a scenario's figures on one line, and record them when asked to."""
    shown = ", ".join(f"{name}={_show(value)}" for name, value in figures.items())
    print(f"\nreliability: {scenario} [{SCALE}]: {shown}", flush=True)
    target = os.environ.get("CASSNB_RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"scenario": scenario, "scale": SCALE, **figures}) + "\n")


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def rss_mb() -> float:
    """This process's resident set size, in MB."""
    return float(psutil.Process().memory_info().rss) / 1e6


async def eventually(
    probe: Callable[[], Awaitable[bool]], *, within: float, every: float = 0.1
) -> float:
    """Await ``probe()`` until it returns True; return the seconds it took.

    An exception from the probe counts as not yet. Raises ``AssertionError`` when
    ``within`` seconds pass first.
    """
    began = time.monotonic()
    last: BaseException | None = None
    while True:
        try:
            if await probe():
                return time.monotonic() - began
        except Exception as exc:
            last = exc
        if time.monotonic() - began > within:
            raise AssertionError(f"not true within {within} s (last error: {last!r})")
        await asyncio.sleep(every)
