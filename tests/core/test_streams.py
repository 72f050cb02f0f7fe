"""Streams against the node: pages, prefetch, limits, errors, cancellation and leaks."""

from __future__ import annotations

import asyncio
import gc
import inspect
import sys
import time
import types
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _core_data import Data
from cassandra.cluster import ResponseFuture
from cassandra.cqltypes import Int32Type, VarcharType

from cassnb import (
    AsyncSession,
    AsyncStreamingResultSet,
    ConfigurationError,
    ConnectionError,
    QueryError,
    QueryTimeout,
    StreamConfig,
)
from cassnb._core.bridge import PageFeed
from cassnb._core.registry import open_counts
from cassnb._core.stream import _State


def response_future_of(stream: AsyncStreamingResultSet) -> Any:
    feed = stream._state.feed
    assert feed is not None
    return feed.read.response_future


def has_no_callbacks(response_future: Any) -> bool:
    return not response_future._callbacks and not response_future._errbacks


async def wait_until(condition: Callable[[], bool], *, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.001)):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met in time")


async def test_pages_iterate_lists_of_rows(session: AsyncSession, data: Data) -> None:
    config = StreamConfig(fetch_size=400)
    async with await session.execute_stream(
        "SELECT p, c, v FROM paged WHERE p = 0", stream_config=config
    ) as stream:
        assert stream.column_names is None
        sizes = []
        async for page in stream.pages():
            assert stream.column_names == ["p", "c", "v"]
            assert stream.column_types == [Int32Type, Int32Type, VarcharType]
            sizes.append(len(page))
    assert sum(sizes) == data.paged_rows
    assert max(sizes) == 400
    assert stream.page_number == len(sizes)


async def test_empty_result_yields_no_page_but_counts_one(session: AsyncSession) -> None:
    calls: list[tuple[int, int]] = []
    config = StreamConfig(page_callback=lambda *args: calls.append(args))
    async with await session.execute_stream(
        "SELECT c FROM paged WHERE p = 999", stream_config=config
    ) as stream:
        assert [page async for page in stream.pages()] == []
        assert stream.column_names == ["c"]
    assert calls == [(1, 0)]
    assert (stream.page_number, stream.rows_fetched) == (1, 0)


async def test_max_pages_and_an_async_page_callback(session: AsyncSession) -> None:
    seen: list[tuple[int, int]] = []

    async def record(page: int, rows: int) -> None:
        await asyncio.sleep(0)
        seen.append((page, rows))

    config = StreamConfig(fetch_size=100, max_pages=3, page_callback=record)
    async with await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0", stream_config=config
    ) as stream:
        rows = [row.c async for row in stream]
    assert rows == list(range(300))
    assert seen == [(1, 100), (2, 100), (3, 100)]


async def test_error_before_iteration_is_raised_at_first_anext(session: AsyncSession) -> None:
    stream = await session.execute_stream("SELECT * FROM no_such_table")
    # Let the error arrive before anyone iterates.
    await wait_until(lambda: stream._state.error is not None)
    started = time.perf_counter()
    with pytest.raises(QueryError, match="no_such_table"):
        await asyncio.wait_for(stream.__anext__(), 5)
    assert time.perf_counter() - started < 0.1
    assert stream.is_closed
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_error_while_waiting_for_the_first_page(session: AsyncSession) -> None:
    async with await session.execute_stream("SELECT * FROM no_such_table") as stream:
        with pytest.raises(QueryError, match="no_such_table"):
            await asyncio.wait_for(stream.__anext__(), 5)


async def test_per_request_timeout(session: AsyncSession) -> None:
    async with await session.execute_stream(
        "SELECT * FROM paged WHERE p = 0", timeout=0.0001
    ) as stream:
        with pytest.raises(QueryTimeout):
            await stream.__anext__()


async def test_timeout_applies_to_each_page_not_the_whole(session: AsyncSession) -> None:
    # Ten pages read with a pause each take longer than the per-request timeout.
    config = StreamConfig(fetch_size=300)
    started = time.perf_counter()
    async with await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0", stream_config=config, timeout=0.5
    ) as stream:
        async for _page in stream.pages():
            await asyncio.sleep(0.1)
    assert time.perf_counter() - started > 0.9
    assert stream.rows_fetched == 3000

    started = time.perf_counter()
    everything = await session.execute("SELECT * FROM big", timeout=1.0)
    print(f"\nread {len(everything)} rows in {time.perf_counter() - started:.2f} s")
    assert len(everything) == 100_000


async def test_timeout_seconds_bounds_the_whole_stream(session: AsyncSession) -> None:
    config = StreamConfig(fetch_size=100, timeout_seconds=0.3)
    started = time.perf_counter()
    async with await session.execute_stream("SELECT c FROM big", stream_config=config) as stream:
        with pytest.raises(QueryTimeout, match=r"timeout_seconds=0\.3"):
            await _consume(stream, pause=0.05)
    assert 0.25 < time.perf_counter() - started < 1.0
    assert stream.is_closed
    assert len(await session.execute("SELECT k FROM kv LIMIT 1")) <= 1


async def _consume(stream: AsyncStreamingResultSet, pause: float) -> tuple[float, float]:
    """Read every page, pausing per page; return (elapsed, time spent waiting for pages)."""
    waited = 0.0
    started = time.perf_counter()
    pages = stream.pages()
    while True:
        before = time.perf_counter()
        try:
            await pages.__anext__()
        except StopAsyncIteration:
            break
        waited += time.perf_counter() - before
        assert len(stream._state.buffer) <= stream._config.prefetch
        await asyncio.sleep(pause)
    return time.perf_counter() - started, waited


async def test_next_page_is_fetched_while_the_consumer_works(
    session: AsyncSession, data: Data
) -> None:
    query = "SELECT p, c, v FROM paged WHERE p = 0"
    best: dict[int, tuple[float, float]] = {}
    for prefetch in (0, 1, 0, 1, 0, 1):
        config = StreamConfig(fetch_size=100, prefetch=prefetch)
        async with await session.execute_stream(query, stream_config=config) as stream:
            elapsed, waited = await _consume(stream, pause=0.02)
        assert stream.rows_fetched == data.paged_rows
        if prefetch not in best or elapsed < best[prefetch][0]:
            best[prefetch] = (elapsed, waited)
    (elapsed_0, waited_0), (elapsed_1, waited_1) = best[0], best[1]
    print(
        f"\n30 pages, 20 ms of work each: prefetch=0 {elapsed_0 * 1000:.0f} ms "
        f"(waiting for pages {waited_0 * 1000:.0f} ms), prefetch=1 {elapsed_1 * 1000:.0f} ms "
        f"(waiting {waited_1 * 1000:.0f} ms): saved {(elapsed_0 - elapsed_1) * 1000:.0f} ms"
    )
    # The consumer barely waits for pages when they are fetched during its work; on a
    # machine short of CPU the wall time saved shrinks, so only a slowdown fails.
    assert waited_1 < waited_0 / 2
    assert elapsed_1 < elapsed_0 + 0.1


async def test_prefetch_buffers_at_most_that_many_pages(session: AsyncSession) -> None:
    config = StreamConfig(fetch_size=100, prefetch=2)
    async with await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0", stream_config=config
    ) as stream:
        await stream.__anext__()
        await asyncio.sleep(0.3)
        assert len(stream._state.buffer) == 2
        assert not stream._state.requesting


def test_stream_config_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        StreamConfig(prefetch=-1)
    with pytest.raises(ConfigurationError):
        StreamConfig(fetch_size=0)
    with pytest.raises(ConfigurationError):
        StreamConfig(max_pages=0)
    with pytest.raises(ConfigurationError):
        StreamConfig(timeout_seconds=0)


async def test_cancelling_a_stream_mid_page(session: AsyncSession) -> None:
    stream = await session.execute_stream(
        "SELECT * FROM big", stream_config=StreamConfig(fetch_size=5000, prefetch=0)
    )
    response_future = response_future_of(stream)
    rows = 0

    async def consume() -> None:
        nonlocal rows
        async for _row in stream:
            rows += 1

    task = asyncio.create_task(consume())
    await wait_until(lambda: rows > 6000)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.is_closed
    assert stream._state.feed is None
    assert has_no_callbacks(response_future)
    state_at_cancel = response_future.message.paging_state
    await asyncio.sleep(0.3)
    assert response_future.message.paging_state == state_at_cancel
    with pytest.raises(ConnectionError, match="cancelled"):
        await stream.__anext__()
    assert len(await session.execute("SELECT c FROM paged WHERE p = 0")) == 3000


async def test_wait_for_on_a_stream_page(session: AsyncSession) -> None:
    stream = await session.execute_stream("SELECT * FROM big", stream_config=StreamConfig())
    response_future = response_future_of(stream)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.__anext__(), 0.0001)
    assert stream.is_closed
    assert has_no_callbacks(response_future)
    assert (await session.execute("SELECT k FROM kv LIMIT 1")) is not None


async def test_cancelling_execute_mid_page(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[ResponseFuture] = []
    driver_session = session._session
    original = driver_session.execute_async

    def recording(*args: Any, **kwargs: Any) -> Any:
        future = original(*args, **kwargs)
        sent.append(future)
        return future

    monkeypatch.setattr(driver_session, "execute_async", recording)
    task = asyncio.create_task(session.execute("SELECT * FROM big", timeout=30))
    # A later page is on its way: through the first request's future, or (the driver's
    # public API only) as a request of its own.
    await wait_until(
        lambda: len(sent) > 1 or (bool(sent) and sent[0].message.paging_state is not None)
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    requests = len(sent)
    response_future = sent[-1]
    assert has_no_callbacks(response_future)
    state_at_cancel = response_future.message.paging_state
    await asyncio.sleep(0.3)
    assert response_future.message.paging_state == state_at_cancel
    assert len(sent) == requests
    monkeypatch.undo()
    assert len(await session.execute("SELECT c FROM paged WHERE p = 0")) == 3000


async def test_wait_for_on_execute(session: AsyncSession) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(session.execute("SELECT * FROM big"), 0.01)
    assert len(await session.execute("SELECT c FROM paged WHERE p = 0")) == 3000


async def test_unclosed_stream_warns_with_where_it_was_opened(session: AsyncSession) -> None:
    config = StreamConfig(fetch_size=100)
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    stream = await session.execute_stream("SELECT c FROM paged WHERE p = 0", stream_config=config)
    await stream.__anext__()
    response_future = response_future_of(stream)
    only_reference = [stream]
    del stream
    with pytest.warns(ResourceWarning, match=rf"test_streams\.py:{line} in test_unclosed"):
        only_reference.clear()
    assert has_no_callbacks(response_future)
    assert open_counts().streams == 0


def test_where_a_stream_was_opened_skips_every_layer_of_cassnb() -> None:
    import cassnb._frames.read
    import cassnb._scan.ranges
    from cassnb._core import stream

    for layer in (stream, cassnb._frames.read, cassnb._scan.ranges):
        assert not stream._is_user_code(layer.__file__)
    assert stream._is_user_code(__file__)


async def test_finished_stream_needs_no_close(session: AsyncSession) -> None:
    stream = await session.execute_stream("SELECT c FROM paged WHERE p = 0 LIMIT 5")
    assert len([row async for row in stream]) == 5
    assert stream.is_closed
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        del stream
        gc.collect()


def _count_instances(*classes: type) -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, classes))


async def test_ten_thousand_dropped_streams_leave_nothing_behind(session: AsyncSession) -> None:
    config = StreamConfig(fetch_size=10)
    statement = await session.prepare("SELECT c FROM paged WHERE p = ?")
    request_timeout = 1.0
    gc.collect()
    ours = (AsyncStreamingResultSet, _State, PageFeed)
    ours_before = _count_instances(*ours)
    driver_before = _count_instances(ResponseFuture)
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            for _ in range(100):
                streams = [
                    await session.execute_stream(
                        statement, [0], stream_config=config, timeout=request_timeout
                    )
                    for _ in range(100)
                ]
                await streams[-1].__anext__()
                del streams
            # Let the last requests' answers arrive (and find nobody listening).
            await session.execute("SELECT k FROM kv LIMIT 1")
            await asyncio.sleep(0.2)
        # Reference counting alone freed every stream: the collector has not run.
        ours_after = _count_instances(*ours)
        assert open_counts().streams == 0
    finally:
        gc.enable()
    # A request dropped in flight keeps its driver future in the reactor's timer heap
    # until the request timeout passes; after that, nothing is left.
    await asyncio.sleep(request_timeout + 0.5)
    gc.collect()
    driver_after = _count_instances(ResponseFuture)
    print(
        f"\n10,000 dropped streams: stream objects {ours_before} -> {ours_after}, "
        f"driver futures {driver_before} -> {driver_after}, registry {open_counts().streams}"
    )
    assert ours_after <= ours_before
    assert driver_after <= driver_before + 2


async def test_closing_the_session_closes_its_streams(cluster: Any) -> None:
    session = await cluster.connect("cassnb_test")
    stream = await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0", stream_config=StreamConfig(fetch_size=10)
    )
    await stream.__anext__()
    await session.close()
    assert stream.is_closed
    with pytest.raises(ConnectionError, match="session closed"):
        async for _row in stream:
            pass


async def test_frames_and_to_dataframe_call_the_frames_layer(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def stream_frames(stream: AsyncStreamingResultSet) -> AsyncIterator[str]:
        calls.append("frames")
        async for page in stream.pages():
            yield f"{len(page)} rows"

    async def stream_to_dataframe(stream: AsyncStreamingResultSet) -> str:
        calls.append("to_dataframe")
        return f"{len([row async for row in stream])} rows"

    fake = types.ModuleType("cassnb._frames.read")
    fake.stream_frames = stream_frames  # type: ignore[attr-defined]
    fake.stream_to_dataframe = stream_to_dataframe  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cassnb._frames.read", fake)
    config = StreamConfig(fetch_size=2)
    async with await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0 LIMIT 5", stream_config=config
    ) as stream:
        assert [frame async for frame in stream.frames()] == ["2 rows", "2 rows", "1 rows"]
    async with await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0 LIMIT 5", stream_config=config
    ) as stream:
        assert await stream.to_dataframe() == "5 rows"
    assert calls == ["frames", "to_dataframe"]
