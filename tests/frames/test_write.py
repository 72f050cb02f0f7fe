"""write_frame against the real node; what it wrote is checked with the plain driver."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from cassandra.util import Date, Duration, Time
from frames_reference import KEYSPACE

from cassnb._core.errors import ConfigurationError, QueryError
from cassnb._frames.read import read_cql
from cassnb._frames.write import WriteFrameError, write_frame


@pytest.fixture
def writes(driver: Any) -> Any:
    """The ``writes`` table, emptied."""
    driver.execute("TRUNCATE writes")
    return driver


def _row(driver: Any, query: str, *params: Any) -> Any:
    return driver.execute(query, params).one()


@pytest.mark.parametrize(
    ("dtype_backend", "table", "keys"),
    [
        ("numpy_nullable", "types_copy", [0, 1, 2, 3, 4]),
        # Arrow dates beyond year 9999 have no Python object to write through; see types.md.
        ("pyarrow", "types_arrow_copy", [0, 1, 2]),
    ],
)
async def test_round_trip_of_every_type(
    session: Any,
    driver: Any,
    reference_rows: dict[int, dict[str, Any]],
    dtype_backend: str,
    table: str,
    keys: list[int],
) -> None:
    """A frame read from a table of every type writes back to an equal table."""
    driver.execute(f"TRUNCATE {table}")
    where = f"WHERE k IN ({', '.join(map(str, keys))})"
    original = await read_cql(f"SELECT * FROM types {where}", session, dtype_backend=dtype_backend)  # type: ignore[arg-type]
    assert await write_frame(original, table, session) == len(keys)
    copied = await read_cql(f"SELECT * FROM {table}", session)
    expected = await read_cql(f"SELECT * FROM types {where}", session)
    pd.testing.assert_frame_equal(
        copied.sort_values("k", ignore_index=True), expected.sort_values("k", ignore_index=True)
    )


async def test_missing_values_are_unset_not_tombstones(session: Any, writes: Any) -> None:
    """NA, None, NaT and NaN in a float64 column leave the stored cell (and its writetime)."""
    writes.execute(
        "INSERT INTO writes (k, i, t, d, ts) VALUES (1, 7, 'keep', 2.5, '2020-01-01') "
        "USING TIMESTAMP 1000"
    )
    frame = pd.DataFrame(
        {
            "k": [1],
            "i": pd.array([None], dtype="Int32"),
            "t": pd.array([None], dtype="string"),
            "d": np.array([np.nan]),
            "ts": np.array(["NaT"], dtype="datetime64[ns]"),
            "f": [1.25],
        }
    )
    assert await write_frame(frame, "writes", session) == 1
    row = _row(
        writes,
        "SELECT i, t, d, ts, f, writetime(i) AS wi, writetime(t) AS wt FROM writes WHERE k = 1",
    )
    assert (row.i, row.t, row.d, row.f) == (7, "keep", 2.5, 1.25)
    assert row.ts == dt.datetime(2020, 1, 1)
    assert (row.wi, row.wt) == (1000, 1000)  # the cells were not rewritten


async def test_missing_null_writes_nulls(session: Any, writes: Any) -> None:
    """missing="null" overwrites with NULL (a tombstone) instead of leaving cells unset."""
    writes.execute("INSERT INTO writes (k, i, t) VALUES (2, 7, 'gone')")
    frame = pd.DataFrame({"k": [2], "i": pd.array([None], dtype="Int32"), "t": [None]})
    await write_frame(frame, "writes", session, missing="null")
    row = _row(writes, "SELECT i, t FROM writes WHERE k = 2")
    assert (row.i, row.t) == (None, None)


async def test_nan_is_a_value_in_nullable_floats(session: Any, writes: Any) -> None:
    """In Float64 columns NaN is written as NaN and only NA is missing."""
    values = pd.arrays.FloatingArray(np.array([np.nan, 0.0]), np.array([False, True]))
    frame = pd.DataFrame(
        {"k": [1, 2], "d": values, "f": pd.array([math.inf, 0.5], dtype="Float32")}
    )
    writes.execute("INSERT INTO writes (k, d) VALUES (2, 9.5)")
    await write_frame(frame, "writes", session)
    assert math.isnan(_row(writes, "SELECT d FROM writes WHERE k = 1").d)
    assert _row(writes, "SELECT d, f FROM writes WHERE k = 2") == (9.5, 0.5)
    assert _row(writes, "SELECT f FROM writes WHERE k = 1").f == math.inf


async def test_numpy_datetimes_and_timedeltas(session: Any, writes: Any) -> None:
    """Naive datetime64 is UTC, aware is converted; timedelta64 fills time and duration."""
    frame = pd.DataFrame(
        {
            "k": [1, 2],
            "ts": pd.to_datetime(["2024-03-01 12:34:56.789999999", "1900-01-01 00:00:00.0"]),
            "dt": np.array(["2024-03-01T23:59:59", "1600-02-29"], dtype="datetime64[s]"),
            "tm": pd.to_timedelta(["12:00:00.000000001", "00:00:00"]),
            "du": pd.to_timedelta(["1 days 00:00:01", "-5ns"]),
        }
    )
    await write_frame(frame, "writes", session)
    one = _row(writes, "SELECT ts, dt, tm, du FROM writes WHERE k = 1")
    assert one.ts == dt.datetime(2024, 3, 1, 12, 34, 56, 789000)
    assert one.dt == Date(dt.date(2024, 3, 1))
    assert one.tm == Time(43_200_000_000_001)
    assert one.du == Duration(0, 0, 86_401_000_000_000)
    two = _row(writes, "SELECT ts, dt, du FROM writes WHERE k = 2")
    assert two.ts == dt.datetime(1900, 1, 1)
    assert two.dt == Date(dt.date(1600, 2, 29))
    assert two.du == Duration(0, 0, -5)

    paris = pd.DataFrame(
        {"k": [3], "ts": pd.to_datetime(["2024-07-01 12:00"]).tz_localize("Europe/Paris")}
    )
    await write_frame(paris, "writes", session)
    assert _row(writes, "SELECT ts FROM writes WHERE k = 3").ts == dt.datetime(2024, 7, 1, 10, 0)


async def test_extension_and_arrow_dtypes(session: Any, writes: Any) -> None:
    """Int64, boolean, string and ArrowDtype columns (lists and maps too) bind as their values."""
    frame = pd.DataFrame(
        {
            "k": pd.array([1, 2], dtype="Int64"),
            "i": pd.array([5, None], dtype="int32[pyarrow]"),
            "b": pd.array([2**62, -1], dtype="Int64"),
            "flag": pd.array([True, None], dtype="boolean"),
            "t": pd.array(["a", "b"], dtype="string"),
            "l": pd.array([[1, 2], None], dtype=pd.ArrowDtype(pa.list_(pa.int32()))),
            "m": pd.array(
                [[("x", 1)], None], dtype=pd.ArrowDtype(pa.map_(pa.string(), pa.int32()))
            ),
            "u": pd.array(["3b241101-e2bb-4255-8caf-4136c566a962", None], dtype="string[pyarrow]"),
            "ts": pd.array(
                [dt.datetime(2024, 1, 1, 0, 0, 0, 1000, tzinfo=dt.UTC), None],
                dtype=pd.ArrowDtype(pa.timestamp("us", tz="UTC")),
            ),
            "tm": pd.array([1, None], dtype=pd.ArrowDtype(pa.time64("ns"))),
        }
    )
    assert await write_frame(frame, "writes", session) == 2
    one = _row(writes, "SELECT i, b, flag, t, l, m, u, ts, tm FROM writes WHERE k = 1")
    assert tuple(one) == (
        5,
        2**62,
        True,
        "a",
        [1, 2],
        {"x": 1},
        uuid.UUID("3b241101-e2bb-4255-8caf-4136c566a962"),
        dt.datetime(2024, 1, 1, 0, 0, 0, 1000),
        Time(1),
    )
    two = _row(writes, "SELECT i, b, flag, l, m, u FROM writes WHERE k = 2")
    assert tuple(two) == (None, -1, None, None, None, None)


async def test_int_columns_with_gaps_and_other_conversions(session: Any, writes: Any) -> None:
    """float64 ints with NaN gaps, text uuids and numbers for decimals are converted."""
    frame = pd.DataFrame(
        {
            "k": [1.0, 2.0],
            "i": [3.0, np.nan],
            "u": ["3b241101-e2bb-4255-8caf-4136c566a962", None],
            "dec": [1.25, 7],
        }
    )
    await write_frame(frame, "writes", session)
    assert tuple(_row(writes, "SELECT i, u, dec FROM writes WHERE k = 1")) == (
        3,
        uuid.UUID("3b241101-e2bb-4255-8caf-4136c566a962"),
        decimal.Decimal("1.25"),
    )
    assert tuple(_row(writes, "SELECT i, u, dec FROM writes WHERE k = 2")) == (
        None,
        None,
        decimal.Decimal("7"),
    )


async def test_quoted_and_mixed_case_names(session: Any, driver: Any) -> None:
    """Column and table names keep their case; quotes inside names are escaped."""
    driver.execute('TRUNCATE "MixedTable"')
    frame = pd.DataFrame(
        {
            "Key": [1, 1],
            "Clustering": [1, 2],
            "MixedCase": ["x", None],
            "has space": pd.array([10, None], dtype="Int32"),
            "lower": [5, 6],
            'quote"d': ["q", "r"],
        }
    )
    assert await write_frame(frame, '"MixedTable"', session) == 2
    assert await write_frame(frame.iloc[:1], f'{KEYSPACE}."MixedTable"', session) == 1
    assert await write_frame(frame.iloc[1:], '"MixedTable"', session, keyspace=KEYSPACE) == 1
    back = await read_cql('SELECT * FROM "MixedTable"', session)
    pd.testing.assert_frame_equal(
        back[list(frame.columns)],
        frame.astype(
            {
                "Key": "Int32",
                "Clustering": "Int32",
                "MixedCase": "string",
                "lower": "Int32",
                'quote"d': "string",
            }
        ),
    )
    with pytest.raises(WriteFrameError, match="mixedtable") as failure:
        await write_frame(frame, "MixedTable", session)  # unquoted names fold to lower case
    assert failure.value.rows_written == 0


async def test_ttl(session: Any, writes: Any) -> None:
    """ttl= applies a time to live to every cell written."""
    await write_frame(pd.DataFrame({"k": [1], "i": [1]}), "writes", session, ttl=3600)
    remaining = _row(writes, "SELECT TTL(i) AS ttl FROM writes WHERE k = 1").ttl
    assert 3500 < remaining <= 3600


async def test_many_rows_at_bounded_concurrency(session: Any, writes: Any) -> None:
    """Every row is written and counted, whatever the concurrency."""
    frame = pd.DataFrame({"k": range(3000), "i": range(3000)})
    assert await write_frame(frame, "writes", session, concurrency=16) == 3000
    assert _row(writes, "SELECT count(*) FROM writes")[0] == 3000
    assert await write_frame(frame.iloc[:0], "writes", session) == 0


async def test_unknown_column_names_it(session: Any, writes: Any) -> None:
    """A column the table lacks fails before any row is written, naming the column."""
    with pytest.raises(WriteFrameError, match=r"nope.*0 rows written") as failure:
        await write_frame(pd.DataFrame({"k": [1], "nope": [1]}), "writes", session)
    assert failure.value.rows_written == 0
    assert isinstance(failure.value, QueryError)


async def test_wrongly_typed_value_names_row_column_and_rows_written(
    session: Any, writes: Any
) -> None:
    """A value the column cannot take names the row label, position, column and progress."""
    frame = pd.DataFrame({"k": [1, 2, 3, 4], "i": [1, 2, "three", 4]}, index=["a", "b", "c", "d"])
    with pytest.raises(WriteFrameError) as failure:
        await write_frame(frame, "writes", session, concurrency=1)
    error = failure.value
    assert (error.row_label, error.row_position, error.column, error.rows_written) == (
        "c",
        2,
        "i",
        2,
    )
    assert "row 'c' (position 2), column 'i'" in str(error)
    assert "2 of 4 rows were written" in str(error)
    assert _row(writes, "SELECT count(*) FROM writes")[0] == 2

    with pytest.raises(WriteFrameError, match=r"row 'c' \(position 2\), column 'u'"):
        await write_frame(
            frame.assign(i=1, u=["3b241101-e2bb-4255-8caf-4136c566a962"] * 2 + ["x", None]),
            "writes",
            session,
        )


async def test_missing_keys_are_refused(session: Any, driver: Any, writes: Any) -> None:
    """A missing partition key is refused before sending; a missing clustering key by the server."""
    frame = pd.DataFrame({"k": pd.array([1, None], dtype="Int32"), "i": [1, 2]})
    with pytest.raises(
        WriteFrameError, match=r"position 1\), column 'k'.*partition key"
    ) as failure:
        await write_frame(frame, "writes", session, concurrency=1)
    assert failure.value.rows_written == 1

    mixed = pd.DataFrame({"Key": [1], "Clustering": pd.array([None], dtype="Int32")})
    with pytest.raises(WriteFrameError, match=r"row 0 \(position 0\).*Clustering"):
        await write_frame(mixed, '"MixedTable"', session)


async def test_bad_arguments(session: Any) -> None:
    """Arguments write_frame cannot use are ConfigurationErrors, raised before any I/O."""
    frame = pd.DataFrame({"k": [1]})
    for kwargs, message in [
        ({"concurrency": 0}, "concurrency"),
        ({"ttl": -1}, "ttl"),
        ({"missing": "skip"}, "missing"),
        ({"keyspace": "a.b"}, "keyspace"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            await write_frame(frame, "writes", session, **kwargs)
    for table in ("a.b.c", "bad name", '"unclosed', ""):
        with pytest.raises(ConfigurationError):
            await write_frame(frame, table, session)
    with pytest.raises(ConfigurationError, match="DataFrame"):
        await write_frame([1, 2], "writes", session)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="duplicate"):
        await write_frame(pd.DataFrame([[1, 2]], columns=["k", "k"]), "writes", session)
    with pytest.raises(ConfigurationError, match="no columns"):
        await write_frame(pd.DataFrame(), "writes", session)
