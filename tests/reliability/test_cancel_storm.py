"""A storm of cancellations at random points of execute and streams leaves a healthy session."""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

from _reliability import (
    KEYSPACE,
    STREAM_PARTITIONS,
    STREAM_ROWS,
    STREAM_ROWS_PER_PARTITION,
    report,
    sized,
)
from cassandra.query import SimpleStatement

from cassnb import AsyncSession, StreamConfig
from cassnb._core.registry import open_counts

TASKS = 1_000
FOLLOW_UP_QUERIES = 1_000
#: Tasks running at once; each is cancelled after a random delay up to the median time a
#: request takes uncancelled, so that about as many are cancelled as finish on a slow
#: machine or a fast one.
WAVE = sized(100, 200)
KINDS = ("execute", "execute_page", "stream_rows", "stream_pages")
SEED = 20_240_601


@contextlib.contextmanager
def _recorded_requests(session: AsyncSession) -> Iterator[list[Any]]:
    """Keep every driver ResponseFuture the session sends, to inspect its callbacks later.

    The driver's request listener sees every request, whichever way it was started: plain
    ``execute_async`` and the streams' own start with the columnar page handler. It is
    removed on the way out, even when the block fails, since the session is shared.
    """
    requests: list[Any] = []
    listener = requests.append
    session._session.add_request_init_listener(listener)
    try:
        yield requests
    finally:
        session._session.remove_request_init_listener(listener)


async def _victim(session: AsyncSession, kind: str, rng: random.Random) -> str:
    """Run one request to completion, unless cancelled first; return its kind."""
    scan = SimpleStatement(f"SELECT p, c, v FROM {KEYSPACE}.stream_rows", fetch_size=250)
    if kind == "execute":
        result = await session.execute(scan)
        assert len(result) == STREAM_ROWS
    elif kind == "execute_page":
        page = await session.execute_page(scan, fetch_size=100)
        assert len(page) == 100
    elif kind == "stream_rows":
        stream = await session.execute_stream(
            f"SELECT p, c, v FROM {KEYSPACE}.stream_rows",
            stream_config=StreamConfig(fetch_size=rng.choice([50, 200, 1_000])),
        )
        async with stream:
            count = 0
            async for _ in stream:
                count += 1
            assert count == STREAM_ROWS
    else:
        stream = await session.execute_stream(
            f"SELECT p, c, v FROM {KEYSPACE}.stream_rows",
            stream_config=StreamConfig(fetch_size=300, prefetch=rng.choice([0, 1, 3])),
        )
        async with stream:
            async for _ in stream.pages():
                await asyncio.sleep(0)
    return kind


def _left_behind(requests: list[Any]) -> list[str]:
    """Describe driver callbacks that could still act on behalf of a finished task."""
    problems = []
    for response_future in requests:
        for callback, _, _ in [*response_future._callbacks, *response_future._errbacks]:
            owner = getattr(callback, "__self__", None)
            if getattr(owner, "response_future", None) is response_future:
                problems.append(f"{type(owner).__name__} still listening to {response_future}")
    return problems


async def _uncancelled_duration_s(session: AsyncSession, rng: random.Random) -> float:
    """The median time a request of a wave takes on this machine when nothing cancels it.

    The first wave warms the node and the driver; the second is the one measured.
    """

    async def timed(kind: str) -> float:
        began = time.monotonic()
        await _victim(session, kind, rng)
        return time.monotonic() - began

    for _ in range(2):
        durations = await asyncio.gather(*(timed(rng.choice(KINDS)) for _ in range(WAVE)))
    return statistics.median(durations)


async def test_cancellation_storm_leaves_the_session_healthy(session: AsyncSession) -> None:
    rng = random.Random(SEED)
    cancel_within_s = await _uncancelled_duration_s(session, rng)
    outcomes = {"cancelled": 0, "finished": 0}
    loop = asyncio.get_running_loop()
    cancel_latencies: list[float] = []

    def cancel(task: asyncio.Task[str]) -> None:
        if task.cancel():
            cancelled_at = time.monotonic()
            task.add_done_callback(
                lambda _: cancel_latencies.append(time.monotonic() - cancelled_at)
            )

    with _recorded_requests(session) as requests:
        began = time.monotonic()
        for first in range(0, TASKS, WAVE):
            tasks = []
            for _ in range(first, min(first + WAVE, TASKS)):
                task = asyncio.create_task(_victim(session, rng.choice(KINDS), rng))
                loop.call_later(rng.uniform(0, cancel_within_s), cancel, task)
                tasks.append(task)
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, asyncio.CancelledError):
                    outcomes["cancelled"] += 1
                elif isinstance(result, BaseException):
                    raise result
                else:
                    outcomes["finished"] += 1
        storm_s = time.monotonic() - began

        # Requests cancelled while in flight are still answered by the node; give them time.
        await asyncio.sleep(1.0)
    unanswered = sum(not response_future._event.is_set() for response_future in requests)
    left_behind = _left_behind(requests)
    open_streams = open_counts().streams
    waiting = len(session._in_flight._collectors)

    select = await session.prepare(f"SELECT v FROM {KEYSPACE}.stream_rows WHERE p = ? AND c = ?")
    limit = asyncio.Semaphore(100)

    async def query(i: int) -> None:
        p, c = i % STREAM_PARTITIONS, i % STREAM_ROWS_PER_PARTITION
        async with limit:
            row = (await session.execute(select, (p, c), timeout=10)).one()
        assert row is not None and row.v == f"row {p}-{c}"

    began = time.monotonic()
    await asyncio.gather(*(query(i) for i in range(FOLLOW_UP_QUERIES)))
    follow_up_s = time.monotonic() - began
    report(
        "cancellation storm",
        tasks=TASKS,
        cancel_within_s=cancel_within_s,
        cancelled=outcomes["cancelled"],
        finished_first=outcomes["finished"],
        driver_requests=len(requests),
        unanswered_after_1s=unanswered,
        callbacks_left_behind=len(left_behind),
        open_streams=open_streams,
        requests_waiting=waiting,
        max_cancel_to_done_ms=max(cancel_latencies) * 1000,
        storm_s=storm_s,
        follow_up_queries=FOLLOW_UP_QUERIES,
        follow_up_s=follow_up_s,
    )
    # Measured: 37-57% cancelled, the rest finished first, on a cold node and a warm one.
    assert outcomes["cancelled"] > TASKS // 4
    assert outcomes["finished"] > TASKS // 10
    assert left_behind == []
    assert open_streams == 0
    assert waiting == 0
