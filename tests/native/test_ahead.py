"""Pages of a joined read decoded on the driver's thread as they arrive."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _native_node import ROWS, DecodeSpy, Remote, assert_same_frames, python_path
from _native_pages import assert_same_columns, raw_page
from cassandra import cqltypes

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
    """Notes the thread that asks for each next page."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[str] = []
        ask = fast_reads.start_next_page

        def spy(response_future: Any) -> None:
            self.threads.append(threading.current_thread().name)
            ask(response_future)

        monkeypatch.setattr(fast_reads, "start_next_page", spy)


def test_read_cql_lets_the_drivers_thread_ask_for_the_later_pages(
    remote: Remote, reference: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    asks = _AskSpy(monkeypatch)
    frame = remote.run(read_cql("SELECT * FROM types WHERE p = 0", remote.session, fetch_size=1))
    assert len(frame) == len(ROWS)
    assert len(asks.threads) >= len(ROWS) - 1
    loop_thread = remote.thread._thread.name
    # The loop asks for the first pages, until one arrives decoded; the driver's thread
    # asks for the pages after that (far fewer than the bound here).
    assert asks.threads[0] == loop_thread
    driver_asks = next(i for i, name in enumerate(asks.threads) if name != loop_thread)
    assert set(asks.threads[driver_asks:]) == {asks.threads[-1]} != {loop_thread}


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
