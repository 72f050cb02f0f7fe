"""Native and pure-Python paths against the node: equal frames, values and dtypes.

Every read runs twice, the second time as cassnb runs without the compiled decoder (the
driver's ordinary handler, then the type table's ColumnwiseDecoder), and the two frames
must be equal column by column, dtypes included. A spy proves the first read really went
through the compiled decoder.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

import hypothesis.strategies as st
import pandas as pd
import pytest
from _native_node import (
    ROWS,
    TYPED_COLUMNS,
    DecodeSpy,
    Remote,
    assert_same_frames,
    insert_rows,
    python_path,
)
from _native_pages import VALUES, same_value
from hypothesis import HealthCheck, given, settings

from cassnb._core.results import Row
from cassnb._frames import columnar as _columnar
from cassnb._frames.read import read_cql

pytestmark = pytest.mark.skipif(
    not _columnar.native_available(), reason="the compiled decoder is not built"
)

BACKENDS = ["numpy_nullable", "pyarrow"]
NAMES = [name for name, _ in TYPED_COLUMNS]
UTC = dt.UTC


def read_both(remote: Remote, query: str, **options: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the query natively, then through the Python path."""
    native = remote.run(read_cql(query, remote.session, **options))
    with python_path():
        python = remote.run(read_cql(query, remote.session, **options))
    return native, python


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fetch_size", [5000, 2, 1])
def test_type_table(
    remote: Remote, reference: None, spy: DecodeSpy, backend: str, fetch_size: int
) -> None:
    """Every CQL type, with NULLs and edge values, in one page or in one-row pages."""
    native, python = read_both(
        remote, "SELECT * FROM types WHERE p = 0", fetch_size=fetch_size, dtype_backend=backend
    )
    assert len(native) == len(ROWS)
    assert_same_frames(native, python)
    assert spy.rows == len(ROWS)
    assert spy.pages == -(-len(ROWS) // fetch_size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepared_statement_pages_carry_no_metadata(
    remote: Remote, reference: None, spy: DecodeSpy, backend: str
) -> None:
    """A prepared read (the server skips the metadata) decodes with the prepared one."""
    native, python = read_both(
        remote,
        "SELECT c_text, c_int, c_uuid, c_list FROM types WHERE p = ?",
        params=[0],
        fetch_size=2,
        dtype_backend=backend,
    )
    assert_same_frames(native, python)
    assert spy.pages == 3


def test_chosen_repeated_and_indexed_columns(remote: Remote, reference: None) -> None:
    """SELECT a column twice, columns=, index_col= and max_rows cutting inside a page."""
    query = "SELECT k, c_int, c_int, c_text, c_timestamp FROM types WHERE p = 0"
    native, python = read_both(remote, query, fetch_size=3)
    assert_same_frames(native, python)
    native.iloc[1, 1] = 42
    assert native.iloc[1, 2] == -(2**31)
    for options in (
        {"columns": ["c_text", "k"]},
        {"index_col": "k", "columns": ["c_timestamp"]},
        {"max_rows": 4, "fetch_size": 3},
        {"max_rows": 1},
        {"max_rows": 0},
    ):
        native, python = read_both(remote, query, **options)
        assert_same_frames(native, python)


def test_counters(remote: Remote, driver: Any) -> None:
    """Counter columns decode natively to the same Int64 column."""
    driver.execute("TRUNCATE counters", timeout=60)
    for key, delta in ((1, 5), (2, -7), (3, 2**40)):
        driver.execute(f"UPDATE counters SET c = c + {delta} WHERE k = {key}")
    for backend in BACKENDS:
        native, python = read_both(remote, "SELECT * FROM counters", dtype_backend=backend)
        assert_same_frames(native, python)


# --- generated tables ------------------------------------------------------------------

#: Partitions for generated tables start here; each example writes a fresh one.
_PARTITIONS = itertools.count(1000)

_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    **{name: VALUES[cql] for name, cql in TYPED_COLUMNS if cql in VALUES},
    "c_timestamp": st.integers(-62_135_596_800_000, 253_402_300_799_999).map(
        lambda ms: dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=ms)
    ),
    "c_decimal": st.decimals(allow_nan=False, allow_infinity=False, places=4),
    "c_tuple": st.tuples(
        st.none() | VALUES["int"], st.none() | st.text(max_size=5), st.none() | VALUES["timestamp"]
    ),
    "c_frozen": st.dictionaries(
        st.text(max_size=4), st.lists(VALUES["int"], max_size=3), max_size=3
    ),
    "c_nested": st.lists(st.sets(VALUES["date"], max_size=2), min_size=1, max_size=3),
    "c_udt": st.tuples(
        st.none() | VALUES["int"],
        st.none() | st.text(max_size=5),
        st.none() | st.lists(st.text(max_size=3), max_size=2),
    ),
    "c_vector": st.lists(st.floats(width=32), min_size=3, max_size=3),
}
assert set(_STRATEGIES) == set(NAMES)


@st.composite
def generated_tables(draw: st.DrawFn) -> tuple[list[str], list[dict[str, Any]]]:
    """Some columns and rows for them: NULL-heavy or not, empty strings, any row count."""
    columns = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    null_rate = draw(st.sampled_from([0.0, 0.2, 0.9, 1.0]))
    rows = []
    for _ in range(draw(st.integers(1, 25))):
        row: dict[str, Any] = {}
        for name in columns:
            if draw(st.floats(0, 1)) >= null_rate:
                empty = name in ("c_text", "c_ascii", "c_varchar", "c_blob") and draw(st.booleans())
                row[name] = (b"" if name == "c_blob" else "") if empty else draw(_STRATEGIES[name])
        rows.append(row)
    return columns, rows


@pytest.mark.parametrize("backend", BACKENDS)
@given(table=generated_tables(), data=st.data())
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_generated_tables(
    remote: Remote,
    driver: Any,
    reference: None,
    backend: str,
    table: tuple[list[str], list[dict[str, Any]]],
    data: st.DataObject,
) -> None:
    """Generated tables read equal both ways, across page boundaries and one-row pages."""
    columns, rows = table
    partition = next(_PARTITIONS)
    insert_rows(driver, partition, rows)
    fetch_size = data.draw(st.sampled_from([1, 2, 3, 7, len(rows), len(rows) + 1, 5000]))
    max_rows = data.draw(st.none() | st.integers(0, len(rows)))
    prepared = data.draw(st.booleans())
    selected = ", ".join(["k", *columns])
    if prepared:
        query = f"SELECT {selected} FROM types WHERE p = ?"
        params: list[Any] | None = [partition]
    else:
        query = f"SELECT {selected} FROM types WHERE p = {partition}"
        params = None
    native, python = read_both(
        remote,
        query,
        params=params,
        fetch_size=fetch_size,
        max_rows=max_rows,
        dtype_backend=backend,
    )
    assert len(native) == (len(rows) if max_rows is None else max_rows)
    assert_same_frames(native, python)


# --- the other ways frames are made, and rows -------------------------------------------


async def _stream_frames(remote: Remote, query: str, backend: str) -> list[pd.DataFrame]:
    from cassnb import StreamConfig
    from cassnb._frames.read import stream_frames

    stream = await remote.session.execute_stream(query, stream_config=StreamConfig(fetch_size=2))
    async with stream:
        if backend == "numpy_nullable":
            frames = stream.frames()
        else:
            frames = stream_frames(stream, dtype_backend=backend)  # type: ignore[arg-type]
        return [frame async for frame in frames]


async def _to_dataframe(remote: Remote, query: str) -> pd.DataFrame:
    from cassnb import StreamConfig

    stream = await remote.session.execute_stream(query, stream_config=StreamConfig(fetch_size=3))
    async with stream:
        return await stream.to_dataframe()


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_frames(remote: Remote, reference: None, spy: DecodeSpy, backend: str) -> None:
    """stream.frames() gives the same frame per page both ways."""
    query = "SELECT * FROM types WHERE p = 0"
    native = remote.run(_stream_frames(remote, query, backend))
    with python_path():
        python = remote.run(_stream_frames(remote, query, backend))
    assert len(native) == len(python) == 3
    for a, b in zip(native, python, strict=True):
        assert_same_frames(a, b)
    assert spy.pages == 3


def test_to_dataframe(remote: Remote, reference: None, spy: DecodeSpy) -> None:
    """stream.to_dataframe() builds the same frame both ways."""
    query = "SELECT * FROM types WHERE p = 0"
    native = remote.run(_to_dataframe(remote, query))
    with python_path():
        python = remote.run(_to_dataframe(remote, query))
    assert_same_frames(native, python)
    assert spy.pages == 2


def test_cql_magic_statement(remote: Remote, reference: None, spy: DecodeSpy) -> None:
    """A %%cql cell's statement is collected through the compiled decoder, same frame."""
    from cassnb._magics.parse import split_statements
    from cassnb._magics.run import Settings, run_statement

    (statement,) = split_statements("SELECT * FROM types WHERE p = 0")
    cell_settings = Settings(fetch_size=2, max_rows=100, progress=False)
    native = remote.run(run_statement(remote.session, statement, [], cell_settings)).frame
    with python_path():
        python = remote.run(run_statement(remote.session, statement, [], cell_settings)).frame
    assert native is not None and python is not None
    assert_same_frames(native, python)
    assert spy.pages == 3


async def _rows_by_stream(remote: Remote, query: str) -> tuple[list[Row], list[Any]]:
    from cassnb import StreamConfig

    config = StreamConfig(fetch_size=2, prefetch=2)
    stream = await remote.session.execute_stream(query, stream_config=config)
    async with stream:
        rows = [row async for row in stream]
    stream = await remote.session.execute_stream(query, stream_config=config)
    async with stream:
        pages = [page async for page in stream.pages()]
    return rows, pages


def test_rows_are_unchanged(remote: Remote, reference: None) -> None:
    """Streams still give the driver's rows, exactly as execute() does, page by page."""
    query = "SELECT * FROM types WHERE p = 0"
    rows, pages = remote.run(_rows_by_stream(remote, query))
    expected = remote.run(remote.session.execute(query)).all()
    # Row 2 holds a NaN, which == would put apart from itself.
    assert same_value(rows, expected)
    assert [type(row) for row in rows] == [type(row) for row in expected]
    assert isinstance(rows[1].c_uuid, uuid.UUID)
    assert same_value([row for page in pages for row in page], expected)
    assert all(len(page) <= 2 for page in pages)
