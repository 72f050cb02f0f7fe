"""Pages of a joined read decoded on the driver's thread as they arrive."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from _native_node import ROWS, DecodeSpy, Remote, assert_same_frames, python_path
from _native_pages import assert_same_columns, raw_page
from cassandra import cqltypes
from cassandra.cluster import ExecutionProfile
from cassandra.connection import ConnectionShutdown
from cassandra.policies import ConstantSpeculativeExecutionPolicy
from cassandra.protocol import ServerError
from cassandra.query import SimpleStatement

from cassnb import CassandraError
from cassnb._driver import Arrivals
from cassnb._driver.fast import reads as fast_reads
from cassnb._driver.fast.pages import RawPage
from cassnb._frames import columnar as _columnar
from cassnb._frames import join
from cassnb._frames.read import read_cql
from cassnb._frames.types import ColumnwiseDecoder, FrameSchema

pytestmark = pytest.mark.skipif(
    not _columnar.native_available(), reason="the compiled decoder is not built"
)

TYPES = [cqltypes.Int32Type, cqltypes.DoubleType, cqltypes.UTF8Type]


def _page(start: int, rows: int) -> RawPage:
    """A page of ``rows`` rows numbered from ``start``, not yet handed to a request."""
    return raw_page(TYPES, [[i, i / 2, f"r{i}"] for i in range(start, start + rows)])


def _arrive(source: Arrivals, start: int, rows: int) -> RawPage:
    """Hand a page to ``source`` as the driver does when it arrives."""
    page = source(["a", "b", "c"], _page(start, rows))
    assert isinstance(page, RawPage)
    return page


def _schema(page: RawPage) -> FrameSchema:
    return FrameSchema.from_metadata(page.column_names, page.column_types, "numpy_nullable")


def test_a_page_waits_for_the_undecoded_pages_before_it() -> None:
    source = Arrivals(lambda names, rows: rows)
    decoder = _columnar.NativeDecoder(ColumnwiseDecoder())
    first = _arrive(source, 0, 3000)
    second = _arrive(source, 3000, 3000)
    schema = _schema(first)
    decoder.decode_for_join(first, schema, ahead=True)
    # The second page arrived before the loop asked for pages ahead: it is still the
    # loop's to decode, and the third may not take its buffers before it.
    third = _arrive(source, 6000, 3000)
    assert second.decoded is None and third.decoded is None
    decoder.decode_for_join(second, schema, ahead=True)
    decoder.decode_for_join(third, schema, ahead=True)
    fourth = _arrive(source, 9000, 3000)
    assert fourth.decoded is not None and fourth.decoded[0] is schema
    columns = decoder.decode_for_join(fourth, schema, ahead=True)
    assert fourth.decoded is None
    reference = ColumnwiseDecoder().decode(list(_page(9000, 3000)), schema)
    assert_same_columns(join.built(columns), reference)


def test_without_ahead_every_page_is_decoded_when_read() -> None:
    source = Arrivals(lambda names, rows: rows)
    decoder = _columnar.NativeDecoder(ColumnwiseDecoder())
    first = _arrive(source, 0, 10)
    decoder.decode_for_join(first, _schema(first))
    assert _arrive(source, 10, 10).decoded is None


def test_a_page_that_fails_ahead_fails_where_it_is_read() -> None:
    source = Arrivals(lambda names, rows: rows)
    decoder = _columnar.NativeDecoder(ColumnwiseDecoder())
    first = _arrive(source, 0, 10)
    schema = _schema(first)
    decoder.decode_for_join(first, schema, ahead=True)
    good = _page(0, 10)
    # The same page with its last cell cut short: fill() finds it truncated.
    broken = RawPage(
        good.body[:-3], 0, 8, good.column_metadata, good.protocol_version, {}, good.column_metadata
    )
    page = source(["a", "b", "c"], broken)
    assert page.decoded is not None and isinstance(page.decoded[1], ValueError)
    with pytest.raises(CassandraError, match="could not decode a result page"):
        decoder.decode_for_join(page, schema, ahead=True)


class _ThreadSpy(DecodeSpy):
    """Records which thread decoded each page."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(monkeypatch)
        self.threads: list[str] = []
        counted = _columnar.decode_page

        def spy(page: Any, schema: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            return counted(page, schema)

        monkeypatch.setattr(_columnar, "decode_page", spy)


@pytest.mark.parametrize("backend", ["numpy_nullable", "pyarrow"])
def test_read_cql_decodes_later_pages_on_the_drivers_thread(
    remote: Remote, reference: None, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    spy = _ThreadSpy(monkeypatch)
    query = "SELECT * FROM types WHERE p = 0"
    native = remote.run(read_cql(query, remote.session, fetch_size=1, dtype_backend=backend))
    with python_path():
        python = remote.run(read_cql(query, remote.session, fetch_size=1, dtype_backend=backend))
    assert_same_frames(native, python)
    assert spy.rows == len(ROWS)
    loop_thread = remote.thread._thread.name
    # The first page tells the frame's columns; pages that arrive after it are decoded
    # by the thread that received them.
    assert spy.threads[0] == loop_thread
    assert any(name != loop_thread for name in spy.threads)


class _AskSpy:
    """Notes the thread that asks for each next page, and which way: through the driver's
    future, or straight on a connection."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[str] = []
        self.ways: list[str] = []
        ask = fast_reads.start_next_page
        send = fast_reads._DirectAsk.send

        def spy(response_future: Any) -> None:
            self._note("driver")
            ask(response_future)

        def direct(asked: fast_reads._DirectAsk) -> bool:
            self._note("direct")
            return send(asked)

        monkeypatch.setattr(fast_reads, "start_next_page", spy)
        monkeypatch.setattr(fast_reads._DirectAsk, "send", direct)

    def _note(self, way: str) -> None:
        self.threads.append(threading.current_thread().name)
        self.ways.append(way)


def test_read_cql_lets_the_drivers_thread_ask_for_the_later_pages(
    remote: Remote, reference: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    asks = _AskSpy(monkeypatch)
    frame = remote.run(read_cql("SELECT * FROM types WHERE p = 0", remote.session, fetch_size=1))
    assert len(frame) == len(ROWS)
    assert len(asks.threads) >= len(ROWS) - 1
    loop_thread = remote.thread._thread.name
    # The loop asks for the first pages, until one arrives decoded; the driver's thread
    # asks for every page after that.
    assert asks.threads[0] == loop_thread
    assert asks.threads[-1] != loop_thread
    driver_asks = asks.threads.index(asks.threads[-1])
    assert set(asks.threads[driver_asks:]) == {asks.threads[-1]}
    # ... straight on a connection, not through the driver's future.
    assert set(asks.ways[driver_asks:]) == {"direct"}
    assert set(asks.ways[:driver_asks]) == {"driver"}


def _fail_direct_answer(monkeypatch: pytest.MonkeyPatch, which: int, answer: Any) -> list[Any]:
    """Make the ``which``-th direct ask get ``answer`` instead of the server's; return the
    answers that were replaced."""
    replaced: list[Any] = []
    answered = fast_reads._DirectAsk.answered
    count = [0]

    def faulty(asked: fast_reads._DirectAsk, response: Any) -> None:
        count[0] += 1
        if count[0] == which:
            replaced.append(response)
            response = answer
        answered(asked, response)

    monkeypatch.setattr(fast_reads._DirectAsk, "answered", faulty)
    return replaced


@pytest.mark.parametrize(
    "answer",
    [
        ConnectionShutdown("connection lost (injected)"),
        ServerError(0x0000, "overloaded (injected)", None),
    ],
    ids=["lost-connection", "server-error"],
)
def test_a_direct_ask_that_fails_is_asked_again_through_the_driver(
    remote: Remote, reference: None, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    asks = _AskSpy(monkeypatch)
    replaced = _fail_direct_answer(monkeypatch, 2, answer)
    query = "SELECT * FROM types WHERE p = 0"
    native = remote.run(read_cql(query, remote.session, fetch_size=1))
    with python_path():
        python = remote.run(read_cql(query, remote.session, fetch_size=1))
    assert len(replaced) == 1 and replaced[0] is not answer
    # No row lost to the failed answer, none repeated.
    assert_same_frames(native, python)
    loop_thread = remote.thread._thread.name
    on_driver_thread = [
        way for way, name in zip(asks.ways, asks.threads, strict=True) if name != loop_thread
    ]
    # The second direct ask failed: its page was asked for again the driver's way.
    assert on_driver_thread[:3] == ["direct", "direct", "driver"]
    assert on_driver_thread[3:] == ["direct"] * (len(on_driver_thread) - 3)


def test_a_direct_answer_that_cannot_be_taken_fails_the_read_at_once(
    remote: Remote, reference: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    take = fast_reads.FastRead._direct_answer
    answers: list[Any] = []

    def failing(read: fast_reads.FastRead, response_future: Any, response: Any) -> None:
        answers.append(response)
        if len(answers) == 2:
            raise RuntimeError("cannot take it (injected)")
        take(read, response_future, response)

    monkeypatch.setattr(fast_reads.FastRead, "_direct_answer", failing)
    query = "SELECT * FROM types WHERE p = 0"
    # Not left waiting for the request timeout, nor for ever.
    with pytest.raises(CassandraError, match="cannot take it"):
        remote.run(read_cql(query, remote.session, fetch_size=1), timeout=5)
    assert len(answers) == 2


def test_a_direct_ask_never_answered_times_out_and_the_read_resumes(
    remote: Remote, reference: None, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    timeout = 0.5
    send = fast_reads._DirectAsk.send
    answered = fast_reads._DirectAsk.answered
    answers: list[Any] = []

    def with_short_timeout(asked: fast_reads._DirectAsk) -> bool:
        asked.response_future.timeout = timeout
        return send(asked)

    def lose_the_second(asked: fast_reads._DirectAsk, response: Any) -> None:
        answers.append(response)
        if len(answers) == 2:
            # Lost on its way: the connection is free again, the feed never hears of it.
            asked.pool.return_connection(asked.connection)
            return
        answered(asked, response)

    monkeypatch.setattr(fast_reads._DirectAsk, "send", with_short_timeout)
    monkeypatch.setattr(fast_reads._DirectAsk, "answered", lose_the_second)
    query = "SELECT * FROM types WHERE p = 0"
    began = time.monotonic()
    with caplog.at_level(logging.INFO, logger="cassnb"):
        native = remote.run(read_cql(query, remote.session, fetch_size=1))
    elapsed = time.monotonic() - began
    with python_path():
        python = remote.run(read_cql(query, remote.session, fetch_size=1))
    assert_same_frames(native, python)
    timed_out = [
        r.getMessage() for r in caplog.records if "Client request timeout" in r.getMessage()
    ]
    assert len(timed_out) == 1 and "asked again from its last page" in timed_out[0]
    # The lost request timed out after the request timeout, not much later.
    print(f"read with one page request lost: {elapsed:.2f} s (timeout {timeout} s)")
    assert timeout <= elapsed < timeout + 5


def test_traced_requests_and_speculative_executions_keep_the_drivers_way(
    driver: Any, reference: None
) -> None:
    """What the driver's future does per page besides sending it keeps it in charge."""
    statement = SimpleStatement("SELECT * FROM types WHERE p = 0", fetch_size=1)
    plain = driver.execute_async(statement)
    traced = driver.execute_async(statement, trace=True)
    for response_future in (plain, traced):
        response_future.result()
    assert fast_reads.direct_asks_allowed(plain)
    assert not fast_reads.direct_asks_allowed(traced)
    speculative = ExecutionProfile(
        speculative_execution_policy=ConstantSpeculativeExecutionPolicy(0.5, 2)
    )
    driver.cluster.add_execution_profile("speculative", speculative)
    idempotent = SimpleStatement(statement.query_string, fetch_size=1, is_idempotent=True)
    response_future = driver.execute_async(idempotent, execution_profile="speculative")
    response_future.result()
    assert not fast_reads.direct_asks_allowed(response_future)


def test_read_cql_with_max_rows_asks_for_each_page_from_the_loop(
    remote: Remote, reference: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    asks = _AskSpy(monkeypatch)
    query = "SELECT * FROM types WHERE p = 0"
    frame = remote.run(read_cql(query, remote.session, fetch_size=1, max_rows=4))
    assert len(frame) == 4
    assert asks.threads and set(asks.threads) == {remote.thread._thread.name}


def test_read_cql_with_max_rows_decodes_every_page_when_read(
    remote: Remote, reference: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _ThreadSpy(monkeypatch)
    frame = remote.run(
        read_cql("SELECT * FROM types WHERE p = 0", remote.session, fetch_size=1, max_rows=4)
    )
    assert len(frame) == 4
    assert set(spy.threads) == {remote.thread._thread.name}


def test_a_page_that_fails_on_the_drivers_thread_fails_the_read(
    remote: Remote, reference: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = _columnar._decode_page
    calls = []

    def failing(page: Any, schema: Any) -> Any:
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise ValueError("bad bytes")
        return decode(page, schema)

    monkeypatch.setattr(_columnar, "_decode_page", failing)
    with pytest.raises(CassandraError, match="could not decode a result page: bad bytes"):
        remote.run(read_cql("SELECT * FROM types WHERE p = 0", remote.session, fetch_size=1))
    assert calls[2] != remote.thread._thread.name
    monkeypatch.setattr(_columnar, "_decode_page", decode)
    frame = remote.run(read_cql("SELECT * FROM types WHERE p = 0", remote.session, fetch_size=1))
    assert len(frame) == len(ROWS)
