"""Streams opened and dropped unclosed, by the thousand: nothing accumulates."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import warnings
from collections import Counter
from typing import TextIO

from _reliability import KEYSPACE, report, rss_mb, sized
from cassandra.cluster import ResponseFuture

from cassnb import AsyncSession, StreamConfig
from cassnb._core.registry import open_counts

STREAMS = sized(2_000, 10_000)
WARM_UP_STREAMS = 500
#: How much the client's RSS may grow over the run, in MB, once warmed up.
RSS_GROWTH_LIMIT_MB = 25.0


def _tracked_objects() -> Counter[str]:
    """Count live objects of cassnb's own classes, and the driver's request futures."""
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        module = getattr(kind, "__module__", None)
        if isinstance(module, str) and (module == "cassnb" or module.startswith("cassnb.")):
            counts[kind.__qualname__] += 1
        elif kind is ResponseFuture:
            counts["driver ResponseFuture"] += 1
    return counts


async def _drop_streams(session: AsyncSession, count: int) -> None:
    """Open ``count`` streams, read a little of some, and drop every one unclosed."""
    query = f"SELECT p, c, v FROM {KEYSPACE}.stream_rows"
    config = StreamConfig(fetch_size=100)
    for i in range(count):
        stream = await session.execute_stream(query, stream_config=config)
        if i % 2:
            # Half are dropped after their first row, with a page still buffered and the
            # next one requested; the other half before any page arrived.
            await stream.__anext__()
        del stream
        if i % 100 == 99:
            # Let the node's answers to the dropped requests arrive.
            await asyncio.sleep(0.01)


async def test_dropped_streams_leave_nothing_behind(session: AsyncSession) -> None:
    unclosed = 0

    def count_warning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        nonlocal unclosed
        if issubclass(category, ResourceWarning) and "unclosed stream" in str(message):
            unclosed += 1
        else:
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        # Every dropped stream warns once, by design: counted here instead of failing.
        warnings.simplefilter("always", ResourceWarning)
        warnings.showwarning = count_warning
        await _drop_streams(session, WARM_UP_STREAMS)
        await asyncio.sleep(0.5)
        gc.collect()
        objects_start = _tracked_objects()
        rss_start = rss_mb()
        began = time.monotonic()
        await _drop_streams(session, STREAMS)
        elapsed = time.monotonic() - began
        await asyncio.sleep(0.5)
        collected_by_gc = gc.collect()
        objects_end = _tracked_objects()
        rss_end = rss_mb()
    counts = open_counts()
    # Still usable afterwards.
    still_works = await session.execute(f"SELECT count(*) FROM {KEYSPACE}.stream_rows")
    grown = {
        name: objects_end[name] - objects_start[name]
        for name in objects_end
        if objects_end[name] > objects_start[name]
    }
    report(
        "dropped streams",
        streams=STREAMS,
        unclosed_warnings=unclosed,
        open_streams=counts.streams,
        tracked_objects_start=dict(objects_start),
        tracked_objects_end=dict(objects_end),
        grown=grown or "none",
        cycles_collected=collected_by_gc,
        rss_start_mb=rss_start,
        rss_end_mb=rss_end,
        seconds=elapsed,
    )
    assert unclosed == WARM_UP_STREAMS + STREAMS
    assert counts.streams == 0
    assert all(growth <= 2 for growth in grown.values()), grown
    assert rss_end - rss_start < RSS_GROWTH_LIMIT_MB
    assert still_works.one() is not None
