"""A table altered while a result is read: every value stays under its own column's name.

The table is changed by the stream's page callback once the first page is handed out,
while the next page at most is already asked for: the first page is read before the
change, and the pages from the third on after it. Each test has a table of its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pandas as pd
import pytest
from frames_reference import KEYSPACE

from cassnb._core.errors import QueryError
from cassnb._core.results import Row
from cassnb._core.stream import StreamConfig
from cassnb._frames import columnar as _columnar
from cassnb._frames import read as _frames
from cassnb._frames.follow import FrameColumns
from cassnb._frames.read import read_cql
from cassnb._frames.types import ColumnwiseDecoder

ROWS = 300
FETCH_SIZE = 20
#: Rows surely read before the change (the first page) and surely after it (page 3 on).
BEFORE = range(FETCH_SIZE)
AFTER = range(2 * FETCH_SIZE, ROWS)
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

#: What each column reads back as, per dtype backend.
DTYPES: dict[str, tuple[str, str]] = {
    "pk": ("Int32", "int32[pyarrow]"),
    "ck": ("Int32", "int32[pyarrow]"),
    "b": ("Int32", "int32[pyarrow]"),
    "c2": ("string", "string[pyarrow]"),
    "c3": ("object", "binary[pyarrow]"),
    "d": ("string", "string[pyarrow]"),
    "e": ("datetime64[ms, UTC]", "timestamp[ms, tz=UTC][pyarrow]"),
    "f": ("object", "list<item: int32>[pyarrow]"),
}

#: The change, and the statements that give the rows values in the columns it adds.
CHANGES = {
    # c2 and c3 sort before d, e and f: every later column moves two places right.
    "add": "ALTER TABLE {table} ADD (c2 text, c3 blob)",
    # d, e and f move one place left.
    "drop": "ALTER TABLE {table} DROP b",
}

_tables = itertools.count()


def _expected(column: str, ck: int) -> Any:
    """The value a row has in a column, once the column exists."""
    return {
        "pk": 0,
        "ck": ck,
        "b": ck,
        "c2": f"c{ck}",
        "c3": f"blob {ck}".encode(),
        "d": f"d{ck}",
        "e": pd.Timestamp(EPOCH + dt.timedelta(seconds=ck)),
        "f": [ck, -ck],
    }[column]


def _cell(value: Any) -> Any:
    """A frame's cell as a plain value, None for NULL."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


@pytest.fixture
def table(driver: Any) -> Iterator[str]:
    """A table of ROWS rows in one partition, for one test."""
    name = f"altered_{next(_tables)}"
    driver.execute(f"DROP TABLE IF EXISTS {KEYSPACE}.{name}", timeout=60)
    driver.execute(
        f"CREATE TABLE {KEYSPACE}.{name} (pk int, ck int, b int, d text, e timestamp, "
        "f frozen<list<int>>, PRIMARY KEY (pk, ck))",
        timeout=60,
    )
    insert = driver.prepare(
        f"INSERT INTO {KEYSPACE}.{name} (pk, ck, b, d, e, f) VALUES (0, ?, ?, ?, ?, ?)"
    )
    futures = [
        driver.execute_async(
            insert, [ck, ck, f"d{ck}", EPOCH + dt.timedelta(seconds=ck), [ck, -ck]]
        )
        for ck in range(ROWS)
    ]
    for future in futures:
        future.result()
    try:
        yield name
    finally:
        driver.execute(f"DROP TABLE IF EXISTS {KEYSPACE}.{name}", timeout=60)


@pytest.fixture(params=["compiled", "python"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Frames decoded by the compiled decoder, or by the pure-Python one."""
    if request.param == "compiled":
        if not _columnar.native_available():
            pytest.skip("the compiled decoder is not built (or CASSNB_NO_NATIVE is set)")
    else:
        monkeypatch.setattr(_frames, "page_decoder", ColumnwiseDecoder())
    return str(request.param)


class Change:
    """Alters the table once, as the first page of a stream is handed out."""

    def __init__(self, session: Any, table: str, kind: str) -> None:
        self.session = session
        self.table = table
        self.kind = kind
        self.done = False

    async def after_page(self, page_number: int, rows: int) -> None:
        if page_number != 1 or self.done:
            return
        self.done = True
        await self.session.execute(CHANGES[self.kind].format(table=self.table), timeout=60)
        if self.kind == "add":
            update = await self.session.prepare(
                f"UPDATE {self.table} SET c2 = ?, c3 = ? WHERE pk = 0 AND ck = ?"
            )
            for start in range(0, ROWS, 50):
                await self.session.execute_batch(
                    [
                        (update, (_expected("c2", ck), _expected("c3", ck), ck))
                        for ck in range(start, start + 50)
                    ]
                )

    def config(self, config: StreamConfig | None = None) -> StreamConfig:
        return dataclasses.replace(
            config or StreamConfig(), fetch_size=FETCH_SIZE, page_callback=self.after_page
        )


class ChangingSession:
    """A session whose streams alter the table after their first page (for read_cql)."""

    def __init__(self, session: Any, change: Change) -> None:
        self._session = session
        self._change = change

    async def prepare(self, cql: str) -> Any:
        return await self._session.prepare(cql)

    async def execute_stream(
        self, query: Any, parameters: Any = None, *, stream_config: StreamConfig | None = None
    ) -> Any:
        return await self._session.execute_stream(
            query, parameters, stream_config=self._change.config(stream_config)
        )


async def _statement(session: Any, table: str, prepared: bool) -> tuple[Any, Any]:
    if prepared:
        return await session.prepare(f"SELECT * FROM {table} WHERE pk = ?"), [0]
    return f"SELECT * FROM {table} WHERE pk = 0", None


def _check_values(values: dict[str, list[Any]], kind: str) -> None:
    """Each column's values, by ck: all where they belong, the change seen in the middle."""
    cks = values["ck"]
    assert cks == list(range(ROWS))
    for column in ("pk", "d", "e", "f"):
        assert values[column] == [_expected(column, ck) for ck in cks], column
    if kind == "add":
        for column in ("c2", "c3"):
            cells = values[column]
            assert all(cells[ck] is None for ck in BEFORE), column
            assert all(cells[ck] == _expected(column, ck) for ck in AFTER), column
            assert all(cell in (None, _expected(column, ck)) for ck, cell in enumerate(cells))
    else:
        cells = values["b"]
        assert all(cells[ck] == ck for ck in BEFORE)
        assert all(cells[ck] is None for ck in AFTER)
        assert all(cell in (None, ck) for ck, cell in enumerate(cells))


def _check_frame(frame: pd.DataFrame, kind: str, backend: str) -> None:
    first = ["pk", "ck", "b", "d", "e", "f"]
    # The columns of the first page keep their places; those the table gained follow.
    assert list(frame.columns) == first + (["c2", "c3"] if kind == "add" else [])
    index = 0 if backend == "numpy_nullable" else 1
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        name: DTYPES[name][index] for name in frame.columns
    }
    frame = frame.sort_values("ck")
    _check_values({name: [_cell(v) for v in frame[name]] for name in frame.columns}, kind)


@pytest.mark.parametrize("kind", CHANGES)
@pytest.mark.parametrize("prepared", [False, True], ids=["simple", "prepared"])
@pytest.mark.parametrize("backend", ["numpy_nullable", "pyarrow"])
async def test_read_cql_follows_the_columns_by_name(
    session: Any, table: str, decoder: str, backend: str, prepared: bool, kind: str
) -> None:
    """read_cql: a column added mid-read appears, a dropped one is NULL from then on."""
    change = Change(session, table, kind)
    query = f"SELECT * FROM {table} WHERE pk = " + ("?" if prepared else "0")
    frame = await read_cql(
        query,
        ChangingSession(session, change),  # type: ignore[arg-type]
        [0] if prepared else None,
        fetch_size=FETCH_SIZE,
        dtype_backend=backend,  # type: ignore[arg-type]
    )
    assert change.done
    _check_frame(frame, kind, backend)


@pytest.mark.parametrize("kind", CHANGES)
@pytest.mark.parametrize("prepared", [False, True], ids=["simple", "prepared"])
@pytest.mark.parametrize("backend", ["numpy_nullable", "pyarrow"])
async def test_to_dataframe_follows_the_columns_by_name(
    session: Any, table: str, decoder: str, backend: str, prepared: bool, kind: str
) -> None:
    """stream.to_dataframe(): the same, for a stream opened by the caller."""
    change = Change(session, table, kind)
    statement, parameters = await _statement(session, table, prepared)
    stream = await session.execute_stream(statement, parameters, stream_config=change.config())
    async with stream:
        if backend == "numpy_nullable":
            frame = await stream.to_dataframe()
        else:
            frame = await _frames.stream_to_dataframe(stream, dtype_backend="pyarrow")
    assert change.done
    _check_frame(frame, kind, backend)


@pytest.mark.parametrize("kind", CHANGES)
async def test_frames_per_page_follow_the_columns_by_name(
    session: Any, table: str, decoder: str, kind: str
) -> None:
    """stream.frames(): each page's frame has the frame's columns, with the values by name."""
    change = Change(session, table, kind)
    stream = await session.execute_stream(
        f"SELECT * FROM {table} WHERE pk = 0", stream_config=change.config()
    )
    async with stream:
        frames = [frame async for frame in stream.frames()]
    assert change.done
    first = ["pk", "ck", "b", "d", "e", "f"]
    assert list(frames[0].columns) == first
    assert list(frames[-1].columns) == first + (["c2", "c3"] if kind == "add" else [])
    values: dict[str, list[Any]] = {name: [] for name in frames[-1].columns}
    for frame in frames:
        assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
            name: DTYPES[name][0] for name in frame.columns
        }
        for name, cells in values.items():
            cells.extend(_cell(v) for v in frame[name]) if name in frame else cells.extend(
                [None] * len(frame)
            )
    _check_values(values, kind)


async def _rows(stream: Any) -> AsyncIterator[Row]:
    async with stream:
        async for row in stream:
            yield row


@pytest.mark.parametrize("kind", CHANGES)
@pytest.mark.parametrize("prepared", [False, True], ids=["simple", "prepared"])
async def test_rows_have_their_own_pages_columns(
    session: Any, table: str, prepared: bool, kind: str
) -> None:
    """async for: each row has the columns of the page it came in, values by name."""
    change = Change(session, table, kind)
    statement, parameters = await _statement(session, table, prepared)
    stream = await session.execute_stream(statement, parameters, stream_config=change.config())
    rows = [row async for row in _rows(stream)]
    assert change.done
    values: dict[str, list[Any]] = {name: [] for name in DTYPES}
    for row in rows:
        fields = row._asdict()
        for name, cells in values.items():
            cells.append(fields.get(name))
    values["e"] = [None if v is None else pd.Timestamp(v, tz="UTC") for v in values["e"]]
    values["f"] = [None if v is None else list(v) for v in values["f"]]
    _check_values(values, kind)
    # Rows read after the change have the page's columns, not the first page's.
    changed = rows[-1]._fields
    assert ("c2" in changed) if kind == "add" else ("b" not in changed)
    assert "b" in rows[0]._fields and "c2" not in rows[0]._fields


def test_a_changed_type_fails_the_read_naming_the_column() -> None:
    """A column whose type changed between two pages is a QueryError that names it."""
    from cassandra import cqltypes

    columns = FrameColumns(["k", "v"], [cqltypes.Int32Type, cqltypes.UTF8Type], "numpy_nullable")
    same = columns.follow(["k", "v"], [cqltypes.Int32Type, cqltypes.UTF8Type])
    assert same.targets == (0, 1)
    with pytest.raises(QueryError, match=r"column 'v' changed type from text to blob"):
        columns.follow(["k", "v"], [cqltypes.Int32Type, cqltypes.BytesType])


def test_page_columns_follow_by_name() -> None:
    """Added columns go to the end, dropped ones are absent, the rest by name."""
    from cassandra import cqltypes

    int_, text = cqltypes.Int32Type, cqltypes.UTF8Type
    columns = FrameColumns(["k", "b", "d"], [int_, int_, text], "numpy_nullable")
    page = columns.follow(["k", "c", "d"], [int_, text, text])
    assert columns.names == ["k", "b", "d", "c"]
    assert page.schema.positions == (0, 2, 1)
    assert page.targets == (0, 2, 3)
    assert page.absent == (1,)
    placed = columns.place(page, [pd.array([1], "Int32"), pd.array(["d"]), pd.array(["c"])], 1)
    assert [_cell(array[0]) for array in placed] == [1, None, "d", "c"]
    # Only the wanted columns are kept: one the table gained is not wanted.
    wanted = FrameColumns(["k", "b", "d"], [int_, int_, text], "numpy_nullable", ["d", "k"])
    page = wanted.follow(["k", "c", "d"], [int_, text, text])
    assert wanted.names == ["d", "k"]
    assert page.schema.positions == (2, 0)
