"""read_cql, stream.frames() and stream.to_dataframe() against the real node."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys
import tracemalloc
import types
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest
from cassandra.concurrent import execute_concurrent_with_args

import cassnb
from cassnb._core import default
from cassnb._core import registry as _registry
from cassnb._core.errors import ConfigurationError, QueryError
from cassnb._core.stream import StreamConfig
from cassnb._frames import read as _frames
from cassnb._frames.read import read_cql
from cassnb._frames.types import Column, FrameSchema

WIDE_ROWS = 250
MEMORY_ROWS = 20_000


@pytest.fixture(scope="module")
def wide(driver: Any) -> int:
    """Partition 1 of ``wide``: 250 rows, every third ``v`` NULL."""
    driver.execute("DELETE FROM wide WHERE p = 1")
    insert = driver.prepare("INSERT INTO wide (p, c, v) VALUES (1, ?, ?)")
    execute_concurrent_with_args(
        driver, insert, [(c, None if c % 3 == 0 else f"v{c}") for c in range(WIDE_ROWS)]
    )
    return WIDE_ROWS


class CountingDecoder:
    """A page decoder that counts the rows it decodes, to see what a read really did."""

    def __init__(self) -> None:
        self.rows = 0
        self.pages = 0

    def decode(self, rows: Sequence[Sequence[Any]], schema: FrameSchema) -> list[Column]:
        self.rows += len(rows)
        self.pages += 1
        return _frames.ColumnwiseDecoder().decode(rows, schema)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingDecoder:
    decoder = CountingDecoder()
    monkeypatch.setattr(_frames, "page_decoder", decoder)
    return decoder


def _expected_wide() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "p": pd.array([1] * WIDE_ROWS, dtype="Int32"),
            "c": pd.array(range(WIDE_ROWS), dtype="Int32"),
            "v": pd.array(
                [None if c % 3 == 0 else f"v{c}" for c in range(WIDE_ROWS)], dtype="string"
            ),
        }
    )


async def test_many_pages_make_one_frame(
    session: Any, wide: int, counting: CountingDecoder
) -> None:
    """Pages are decoded one by one and joined into the frame a single page would give."""
    frame = await read_cql("SELECT p, c, v FROM wide WHERE p = 1", session, fetch_size=7)
    pd.testing.assert_frame_equal(frame, _expected_wide())
    assert counting.pages == -(-WIDE_ROWS // 7)
    assert isinstance(frame.index, pd.RangeIndex)


async def test_max_rows_stops_reading_and_closes_the_stream(
    session: Any, wide: int, counting: CountingDecoder
) -> None:
    """max_rows keeps the first rows, decodes no more than asked and leaves no stream open."""
    before = _registry.open_counts().streams
    frame = await read_cql(
        "SELECT p, c, v FROM wide WHERE p = 1", session, fetch_size=10, max_rows=25
    )
    pd.testing.assert_frame_equal(frame, _expected_wide().head(25))
    assert counting.rows == 25
    assert _registry.open_counts().streams == before


async def test_max_rows_zero_keeps_columns_and_dtypes(session: Any, wide: int) -> None:
    """max_rows=0 still runs the query, for an empty frame of the right shape."""
    frame = await read_cql("SELECT p, c, v FROM wide WHERE p = 1", session, max_rows=0)
    pd.testing.assert_frame_equal(frame, _expected_wide().head(0))


async def test_columns_and_index_col(session: Any, wide: int) -> None:
    """columns picks and orders result columns; index_col moves one or more to the index."""
    query = "SELECT p, c, v FROM wide WHERE p = 1"
    picked = await read_cql(query, session, columns=["v", "c"])
    assert list(picked.columns) == ["v", "c"]
    pd.testing.assert_frame_equal(picked, _expected_wide()[["v", "c"]])

    indexed = await read_cql(query, session, index_col="c")
    pd.testing.assert_frame_equal(indexed, _expected_wide().set_index("c"))

    both = await read_cql(query, session, columns=["v"], index_col=["p", "c"])
    pd.testing.assert_frame_equal(both, _expected_wide().set_index(["p", "c"])[["v"]])


async def test_unknown_column_is_a_clear_error(session: Any, wide: int) -> None:
    """Asking for a column the result lacks names it and the columns there are."""
    before = _registry.open_counts().streams
    with pytest.raises(ConfigurationError, match=r"'nope'.*'p', 'c', 'v'"):
        await read_cql("SELECT p, c, v FROM wide WHERE p = 1", session, columns=["c", "nope"])
    assert _registry.open_counts().streams == before


async def test_duplicate_result_columns_survive(session: Any, wide: int) -> None:
    """SELECT v, v gives two columns named v, as the result has."""
    frame = await read_cql("SELECT v, v FROM wide WHERE p = 1 AND c = 1", session)
    assert list(frame.columns) == ["v", "v"]
    assert frame.iloc[0].tolist() == ["v1", "v1"]


async def test_empty_result_has_columns_and_dtypes(session: Any, wide: int) -> None:
    """A SELECT that matches nothing gives an empty frame typed from the metadata."""
    frame = await read_cql("SELECT p, c, v FROM wide WHERE p = 404", session)
    pd.testing.assert_frame_equal(frame, _expected_wide().head(0))


async def test_statements_without_rows_give_an_empty_frame(session: Any) -> None:
    """DDL and writes read back as an empty DataFrame with no columns."""
    for statement in (
        "CREATE TABLE IF NOT EXISTS scratch_ddl (k int PRIMARY KEY)",
        "INSERT INTO wide (p, c, v) VALUES (9, 9, 'nine')",
        "DELETE FROM wide WHERE p = 9",
    ):
        frame = await read_cql(statement, session)
        assert frame.shape == (0, 0), statement


async def test_parameters_positional_named_and_prepared(session: Any, wide: int) -> None:
    """Sequences bind ? markers, mappings bind :name markers; a prepared statement works too."""
    expected = _expected_wide().iloc[10:13].reset_index(drop=True)
    positional = await read_cql(
        "SELECT p, c, v FROM wide WHERE p = ? AND c >= ? AND c < ?", session, [1, 10, 13]
    )
    named = await read_cql(
        "SELECT p, c, v FROM wide WHERE p = :p AND c >= :lo AND c < :hi",
        session,
        {"p": 1, "lo": 10, "hi": 13},
    )
    prepared = await session.prepare("SELECT p, c, v FROM wide WHERE p = ? AND c >= ? AND c < ?")
    from_prepared = await read_cql(prepared, session, (1, 10, 13))
    for frame in (positional, named, from_prepared):
        pd.testing.assert_frame_equal(frame, expected)


async def test_default_session_is_used(session: Any, wide: int) -> None:
    """Without session=, read_cql uses the default session."""
    previous = default._default_session
    cassnb.set_default_session(session)
    try:
        frame = await read_cql("SELECT c FROM wide WHERE p = 1 LIMIT 3")
    finally:
        cassnb.set_default_session(previous)
    assert frame["c"].tolist() == [0, 1, 2]


async def test_progress_bar_shows_rows_pages_and_rate(
    session: Any, wide: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """progress=True draws a tqdm bar on stderr with rows, pages and rows/s."""
    await read_cql("SELECT p, c, v FROM wide WHERE p = 1", session, fetch_size=50, progress=True)
    err = capsys.readouterr().err
    assert f"{WIDE_ROWS} rows" in err
    assert "pages=5" in err
    assert "rows/s" in err
    await read_cql("SELECT c FROM wide WHERE p = 1", session)
    assert capsys.readouterr().err == ""


def test_progress_bar_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a kernel, and in a kernel without ipywidgets, the bar is tqdm's text bar."""
    from tqdm.std import tqdm as text_bar

    assert _frames.bar_class() is text_bar
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _frames.bar_class() is text_bar


async def test_bad_arguments_and_query_errors(session: Any, wide: int) -> None:
    """Bad arguments raise ConfigurationError; server errors are the core's QueryError."""
    with pytest.raises(ConfigurationError, match="dtype_backend"):
        await read_cql("SELECT c FROM wide", session, dtype_backend="numpy")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="fetch_size"):
        await read_cql("SELECT c FROM wide", session, fetch_size=0)
    with pytest.raises(ConfigurationError, match="max_rows"):
        await read_cql("SELECT c FROM wide", session, max_rows=-1)
    before = _registry.open_counts().streams
    with pytest.raises(QueryError, match="no_such_table"):
        await read_cql("SELECT * FROM no_such_table", session, progress=True)
    with pytest.raises(QueryError):
        await read_cql("SELECT nope FROM wide WHERE p = ?", session, [1])
    assert _registry.open_counts().streams == before


async def test_a_failing_decoder_closes_the_stream(
    session: Any, wide: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while building the frame propagates and still closes the stream."""

    class Broken:
        def decode(self, rows: Sequence[Sequence[Any]], schema: FrameSchema) -> list[Column]:
            raise RuntimeError("decoder failed")

    monkeypatch.setattr(_frames, "page_decoder", Broken())
    before = _registry.open_counts().streams
    with pytest.raises(RuntimeError, match="decoder failed"):
        await read_cql("SELECT p, c, v FROM wide WHERE p = 1", session, fetch_size=10)
    assert _registry.open_counts().streams == before
    assert gc.get_freeze_count() == 0


async def test_kept_objects_are_hidden_from_the_collector_during_a_read(
    session: Any, wide: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoded pages are frozen for the GC while reading, and given back at the end."""
    frozen_while_decoding: list[int] = []

    class Watching:
        def decode(self, rows: Sequence[Sequence[Any]], schema: FrameSchema) -> list[Column]:
            frozen_while_decoding.append(gc.get_freeze_count())
            return _frames.ColumnwiseDecoder().decode(rows, schema)

    monkeypatch.setattr(_frames, "page_decoder", Watching())
    assert gc.get_freeze_count() == 0
    await read_cql("SELECT p, c, v FROM wide WHERE p = 1", session, fetch_size=50)
    assert frozen_while_decoding[0] == 0
    assert all(count > 0 for count in frozen_while_decoding[1:])
    assert gc.get_freeze_count() == 0

    # Objects someone else froze stay frozen (some may be freed), and nothing is added.
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        await read_cql("SELECT p, c, v FROM wide WHERE p = 1", session, fetch_size=50)
        assert 0.9 * before < gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()


async def test_cancelling_read_cql_closes_the_stream(session: Any, wide: int) -> None:
    """A read cancelled between pages leaves no open stream and a healthy session."""
    before = _registry.open_counts().streams
    started = asyncio.Event()

    def decode(rows: Sequence[Sequence[Any]], schema: FrameSchema) -> list[Column]:
        started.set()
        return _frames.ColumnwiseDecoder().decode(rows, schema)

    class Slow:
        pass

    slow = Slow()
    slow.decode = decode  # type: ignore[attr-defined]
    original = _frames.page_decoder
    _frames.page_decoder = slow  # type: ignore[assignment]
    try:
        task = asyncio.create_task(
            read_cql("SELECT p, c, v FROM wide WHERE p = 1", session, fetch_size=1)
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        _frames.page_decoder = original
    assert _registry.open_counts().streams == before
    frame = await read_cql("SELECT c FROM wide WHERE p = 1 LIMIT 1", session)
    assert frame["c"].tolist() == [0]


@pytest.mark.parametrize("dtype_backend", ["numpy_nullable", "pyarrow"])
async def test_stream_frames_and_to_dataframe(session: Any, wide: int, dtype_backend: str) -> None:
    """stream.frames() yields one typed frame per page; to_dataframe() joins them all."""
    query = "SELECT p, c, v FROM wide WHERE p = 1"
    whole = await read_cql(query, session, dtype_backend=dtype_backend)
    config = StreamConfig(fetch_size=100)
    async with await session.execute_stream(query, stream_config=config) as stream:
        pages = [
            frame
            async for frame in _frames.stream_frames(stream, dtype_backend=dtype_backend)  # type: ignore[arg-type]
        ]
    assert [len(page) for page in pages] == [100, 100, 50]
    for page in pages:
        pd.testing.assert_series_equal(page.dtypes, whole.dtypes)
    pd.testing.assert_frame_equal(pd.concat(pages, ignore_index=True), whole)

    async with await session.execute_stream(query, stream_config=config) as stream:
        via_method = [frame async for frame in stream.frames()]
    pd.testing.assert_frame_equal(
        pd.concat(via_method, ignore_index=True), await read_cql(query, session)
    )

    async with await session.execute_stream(query, stream_config=config) as stream:
        first = await stream.pages().__anext__()
        rest = await stream.to_dataframe()
    assert len(first) == 100
    pd.testing.assert_frame_equal(
        rest, (await read_cql(query, session)).iloc[100:].reset_index(drop=True)
    )


async def test_stream_frames_of_an_empty_result(session: Any) -> None:
    """An empty result yields one empty typed frame, so pd.concat always works."""
    async with await session.execute_stream("SELECT p, c, v FROM wide WHERE p = 404") as stream:
        frames = [frame async for frame in stream.frames()]
    assert len(frames) == 1
    pd.testing.assert_frame_equal(frames[0], _expected_wide().head(0))


@pytest.fixture(scope="module")
def memory_table(driver: Any) -> int:
    """A 20,000-row table of mixed columns for the memory bound."""
    driver.execute(
        "CREATE TABLE IF NOT EXISTS memory (k int PRIMARY KEY, i int, d double, t text, "
        "ts timestamp, u uuid, l list<int>)"
    )
    if driver.execute("SELECT count(*) FROM memory").one()[0] != MEMORY_ROWS:
        insert = driver.prepare(
            "INSERT INTO memory (k, i, d, t, ts, u, l) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        execute_concurrent_with_args(
            driver,
            insert,
            [
                (
                    k,
                    k if k % 4 else None,
                    k / 3,
                    f"text {k}",
                    1_600_000_000_000 + k,
                    uuid.uuid4(),
                    [k, k],
                )
                for k in range(MEMORY_ROWS)
            ],
            concurrency=64,
        )
    return MEMORY_ROWS


async def _traced(read: Any) -> tuple[int, int, Any]:
    """Run ``read``; return the traced memory it kept, its peak above the start, its value."""
    tracemalloc.start()
    try:
        value = await read()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return kept, peak, value


async def test_read_cql_memory_is_bounded_by_pages_not_rows(
    session: Any, memory_table: int
) -> None:
    """While reading, read_cql holds a few pages of rows, never a list of every row."""
    query = "SELECT * FROM memory"
    config = StreamConfig(fetch_size=500)

    async def every_row() -> list[Any]:
        async with await session.execute_stream(query, stream_config=config) as stream:
            return [row async for row in stream]

    async def frame() -> pd.DataFrame:
        return await read_cql(query, session, fetch_size=500)

    all_rows, _, rows = await _traced(every_row)
    assert len(rows) == memory_table
    del rows
    kept, peak, result = await _traced(frame)
    assert len(result) == memory_table
    # Holding every row costs all_rows; a page-bounded read costs a few 500-row pages,
    # plus one column's chunks while joining, above the frame it keeps.
    assert peak - kept < all_rows / 4, (peak - kept, all_rows, kept)
