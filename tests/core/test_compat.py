"""What code written for async-cassandra calls on cassnb, against the node: result sets
read with ``async for``, LWT rows, a bounded connect, traced and payload-carrying
requests, stream aliases, and an empty result counted as one page."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from _core_data import KEYSPACE, Data
from cassandra import OperationTimedOut
from cassandra.policies import RetryPolicy
from cassandra.protocol import ExecuteMessage, QueryMessage
from cassandra.query import SimpleStatement

from cassnb import (
    AsyncCluster,
    AsyncSession,
    ConfigurationError,
    ConnectionError,
    StreamConfig,
)
from cassnb._core.stream import run_ahead

PAYLOAD = {"cassnb-test": b"\x01\x02"}


# --- result sets --------------------------------------------------------------------------


async def test_async_for_over_a_result_set(session: AsyncSession, data: Data) -> None:
    result = await session.execute(
        SimpleStatement("SELECT c FROM paged WHERE p = 0", fetch_size=700)
    )
    seen = [row.c async for row in result]
    assert seen == list(range(data.paged_rows))
    assert result.rows == result.all()
    assert [row.c for row in result.rows[:3]] == [0, 1, 2]


async def test_lwt_applied_and_not_applied(session: AsyncSession) -> None:
    key = f"lwt-{uuid.uuid4()}"
    insert = await session.prepare("INSERT INTO kv (k, v) VALUES (?, ?) IF NOT EXISTS")

    first = (await session.execute(insert, [key, 1])).one()
    assert first is not None
    assert first.applied is True
    assert first["[applied]"] is True
    assert first["applied"] is True
    assert first._fields[0] == "[applied]"

    second = (await session.execute(insert, [key, 2])).one()
    assert second is not None
    assert second.applied is False
    # A transaction not applied returns the row that stopped it.
    assert (second.k, second.v) == (key, 1)

    update = await session.execute(f"UPDATE kv SET v = 3 WHERE k = '{key}' IF v = 1")
    row = update.one()
    assert row is not None
    assert row.applied is True
    assert (await session.execute(f"SELECT v FROM kv WHERE k = '{key}'")).one() == (3,)


# --- connect with a timeout ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def test_connect_to_a_closed_port_fails_within_the_timeout() -> None:
    async with AsyncCluster(["127.0.0.1"], _free_port()) as cluster:
        started = time.perf_counter()
        with pytest.raises(ConnectionError):
            await cluster.connect(timeout=2.0)
        assert time.perf_counter() - started < 2.5


async def test_connect_to_a_node_that_never_answers_stops_at_the_timeout(
    silent_port: int,
) -> None:
    # The driver would wait out its own 5 s connect timeout per attempt.
    async with AsyncCluster(["127.0.0.1"], silent_port) as cluster:
        started = time.perf_counter()
        with pytest.raises(ConnectionError, match=r"within 0\.8 s") as caught:
            await cluster.connect(timeout=0.8)
        elapsed = time.perf_counter() - started
        assert 0.7 < elapsed < 1.8
        assert isinstance(caught.value.__cause__, TimeoutError)
        # The same bound with ``async with``.
        with pytest.raises(ConnectionError, match="within"):
            async with cluster.connect(KEYSPACE, timeout=0.5):
                pytest.fail("connected to a port that never answers")


async def test_connect_with_a_timeout_that_is_long_enough(data: Data) -> None:
    async with AsyncCluster(data.contact_points, data.port) as cluster:
        session = await cluster.connect(KEYSPACE, timeout=30)
        assert (await session.execute("SELECT k FROM kv LIMIT 1")) is not None
        await session.close()
        async with cluster.connect(KEYSPACE, timeout=30) as other:
            assert other.keyspace == KEYSPACE
        with pytest.raises(ConfigurationError, match="timeout"):
            cluster.connect(KEYSPACE, timeout=0)


# --- tracing ------------------------------------------------------------------------------


async def test_traced_execute_has_a_trace_with_events(session: AsyncSession) -> None:
    prepared = await session.prepare("SELECT c FROM paged WHERE p = ? LIMIT 5")
    result = await session.execute(prepared, [0], trace=True)
    assert [row.c for row in result] == [0, 1, 2, 3, 4]
    trace = result.get_query_trace()
    assert trace is not None
    assert trace.trace_id == result.trace_id
    assert trace.events
    assert trace.duration is not None
    assert trace.coordinator

    untraced = await session.execute(prepared, [0])
    assert untraced.get_query_trace() is None
    assert untraced.trace_id is None


async def test_traced_execute_of_several_pages_has_the_last_requests_trace(
    session: AsyncSession, data: Data
) -> None:
    statement = SimpleStatement("SELECT c FROM paged WHERE p = 0", fetch_size=1000)
    result = await session.execute(statement, trace=True)
    assert len(result) == data.paged_rows
    trace = result.get_query_trace()
    assert trace is not None
    assert trace.trace_id == result.trace_id
    assert trace.events
    # Each page was a request of its own, traced apart: the first page's trace is another.
    first = await session.execute_page(statement, fetch_size=1000, trace=True)
    assert first.trace_id is not None
    assert first.trace_id != result.trace_id


async def test_traced_execute_page(session: AsyncSession) -> None:
    page = await session.execute_page("SELECT c FROM paged WHERE p = 0", fetch_size=10, trace=True)
    assert len(page) == 10
    trace = page.get_query_trace()
    assert trace is not None
    assert trace.events


# --- custom payload -----------------------------------------------------------------------


@pytest.fixture
def sent(session: AsyncSession, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every query or execute request the session's connections send, as
    (paging_state, custom_payload) when it was sent."""
    requests: list[tuple[Any, ...]] = []
    connection_class = session._session.cluster.connection_class
    send_msg = connection_class.send_msg

    def recording(self: Any, msg: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(msg, (QueryMessage, ExecuteMessage)):
            requests.append((msg.paging_state, dict(msg.custom_payload or {})))
        return send_msg(self, msg, *args, **kwargs)

    monkeypatch.setattr(connection_class, "send_msg", recording)
    return requests


def assert_every_page_carried_the_payload(requests: list[tuple[Any, ...]], pages: int) -> None:
    assert len(requests) >= pages
    assert sum(1 for paging_state, _ in requests if paging_state is not None) >= pages - 1
    assert all(payload == PAYLOAD for _, payload in requests)


async def test_execute_sends_the_payload_with_every_page(
    session: AsyncSession, sent: list[tuple[Any, ...]], data: Data
) -> None:
    statement = SimpleStatement("SELECT c FROM paged WHERE p = 0", fetch_size=1000)
    result = await session.execute(statement, custom_payload=PAYLOAD)
    assert len(result) == data.paged_rows
    assert_every_page_carried_the_payload(sent, 3)


async def test_execute_page_sends_the_payload(
    session: AsyncSession, sent: list[tuple[Any, ...]]
) -> None:
    query = "SELECT c FROM paged WHERE p = 0"
    first = await session.execute_page(query, fetch_size=5, custom_payload=PAYLOAD)
    second = await session.execute_page(
        query, fetch_size=5, paging_state=first.paging_state, custom_payload=PAYLOAD
    )
    assert [row.c for row in second] == [5, 6, 7, 8, 9]
    assert sent == [(None, PAYLOAD), (first.paging_state, PAYLOAD)]


@pytest.mark.parametrize("ahead", [False, True], ids=["paced", "run-ahead"])
async def test_a_stream_sends_the_payload_with_every_page(
    session: AsyncSession, sent: list[tuple[Any, ...]], data: Data, ahead: bool
) -> None:
    config = StreamConfig(fetch_size=500)
    async with await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0", stream_config=config, custom_payload=PAYLOAD
    ) as stream:
        if ahead:
            # Later pages then go out below the driver's future on the fast path.
            run_ahead(stream)
        rows = [row.c async for row in stream]
    assert rows == list(range(data.paged_rows))
    assert_every_page_carried_the_payload(sent, data.paged_rows // 500)


class _RetryTimeouts(RetryPolicy):
    """Has a request that timed out on the client sent again, on the same node."""

    def on_request_error(
        self, query: Any, consistency: Any, error: Any, retry_num: int
    ) -> tuple[int, Any]:
        return self.RETRY, None


async def test_a_resumed_stream_request_sends_the_payload(
    session: AsyncSession, sent: list[tuple[Any, ...]]
) -> None:
    config = StreamConfig(fetch_size=100, prefetch=0)
    statement = SimpleStatement("SELECT c FROM paged WHERE p = 0", retry_policy=_RetryTimeouts())
    async with await session.execute_stream(
        statement, stream_config=config, custom_payload=PAYLOAD
    ) as stream:
        pages = stream.pages()
        await anext(pages)
        feed = stream._state.feed
        assert feed is not None
        before = len(sent)
        # As after a page that timed out: the request goes again, as a new request.
        assert feed.resume(OperationTimedOut("client-side timeout (simulated)"))
        for _ in range(1000):
            if len(sent) > before:
                break
            await asyncio.sleep(0.005)
    assert len(sent) > before
    assert all(payload == PAYLOAD for _, payload in sent)


async def test_a_payload_must_map_str_to_bytes(session: AsyncSession) -> None:
    for bad in ({"k": "secret text"}, {1: b"x"}, [("k", b"x")]):
        with pytest.raises(ConfigurationError, match="custom_payload") as caught:
            await session.execute("SELECT k FROM kv LIMIT 1", custom_payload=bad)  # type: ignore[arg-type]
        # A payload may carry credentials: the message names types, never values.
        assert "secret" not in str(caught.value)
        with pytest.raises(ConfigurationError, match="custom_payload"):
            await session.execute_stream("SELECT k FROM kv LIMIT 1", custom_payload=bad)  # type: ignore[arg-type]


# --- streams ------------------------------------------------------------------------------


async def test_total_rows_fetched_follows_rows_fetched(session: AsyncSession) -> None:
    config = StreamConfig(fetch_size=100)
    async with await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0 LIMIT 250", stream_config=config
    ) as stream:
        counts = []
        async for _page in stream.pages():
            counts.append((stream.total_rows_fetched, stream.rows_fetched))
    assert counts == [(100, 100), (200, 200), (250, 250)]


async def test_cancel_stops_the_stream_and_may_be_called_twice(
    session: AsyncSession, no_leftover_streams: None
) -> None:
    stream = await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0", stream_config=StreamConfig(fetch_size=100)
    )
    taken = []
    async for row in stream:
        taken.append(row.c)
        if len(taken) == 150:
            break
    await stream.cancel()
    assert stream.is_closed
    assert stream._state.feed is None
    await stream.cancel()
    # Iterating a cancelled stream ends at once, with nothing more.
    assert [row async for row in stream] == []
    assert taken == list(range(150))
    assert stream.rows_fetched == 200


EMPTY = "SELECT c FROM paged WHERE p = 424242"


def record_pages() -> tuple[StreamConfig, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    return StreamConfig(page_callback=lambda *args: calls.append(args)), calls


async def test_an_empty_result_is_one_page_of_no_rows_for_the_rows(
    session: AsyncSession,
) -> None:
    config, calls = record_pages()
    async with await session.execute_stream(EMPTY, stream_config=config) as stream:
        assert [row async for row in stream] == []
        assert [row async for row in stream] == []
    assert calls == [(1, 0)]
    assert (stream.page_number, stream.rows_fetched) == (1, 0)


async def test_an_empty_result_is_one_page_of_no_rows_for_the_pages(
    session: AsyncSession,
) -> None:
    config, calls = record_pages()
    async with await session.execute_stream(EMPTY, stream_config=config) as stream:
        assert [page async for page in stream.pages()] == []
        assert stream.column_names == ["c"]
    assert calls == [(1, 0)]
    assert stream.page_number == 1


async def test_an_empty_result_is_one_page_of_no_rows_for_the_frames(
    session: AsyncSession,
) -> None:
    config, calls = record_pages()
    async with await session.execute_stream(EMPTY, stream_config=config) as stream:
        frames = [frame async for frame in stream.frames()]
    assert len(frames) == 1
    assert list(frames[0].columns) == ["c"]
    assert frames[0].empty
    assert calls == [(1, 0)]
    assert stream.page_number == 1

    config, calls = record_pages()
    async with await session.execute_stream(EMPTY, stream_config=config) as stream:
        frame = await stream.to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert frame.empty
    assert calls == [(1, 0)]


async def test_an_async_page_callback_hears_of_the_empty_page(session: AsyncSession) -> None:
    heard: list[tuple[int, int]] = []

    async def record(page: int, rows: int) -> None:
        await asyncio.sleep(0)
        heard.append((page, rows))

    config = StreamConfig(page_callback=record, fetch_size=10)
    async with await session.execute_stream(EMPTY, stream_config=config) as stream:
        assert [row async for row in stream] == []
    assert heard == [(1, 0)]


async def test_a_closed_or_failed_stream_reports_no_empty_page(session: AsyncSession) -> None:
    config, calls = record_pages()
    stream = await session.execute_stream(EMPTY, stream_config=config)
    await stream.close()
    assert [row async for row in stream] == []
    assert stream.page_number == 0

    stream = await session.execute_stream("SELECT * FROM no_such_table", stream_config=config)
    async with stream:
        with pytest.raises(Exception, match="no_such_table"):
            await anext(stream)
    assert calls == []
    assert stream.page_number == 0


async def test_a_result_whose_last_page_is_empty_counts_only_its_rows(
    session: AsyncSession, data: Data
) -> None:
    # 3000 rows in pages of 1000: the server may send a fourth, empty page.
    config, calls = record_pages()
    config = StreamConfig(fetch_size=1000, page_callback=config.page_callback)
    async with await session.execute_stream(
        "SELECT c FROM paged WHERE p = 0", stream_config=config
    ) as stream:
        assert len([row async for row in stream]) == data.paged_rows
    assert calls == [(1, 1000), (2, 1000), (3, 1000)]
