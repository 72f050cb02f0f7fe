"""The type table against a real node: every CQL type, its dtype per backend, NULL and edges.

Reference rows are written with the plain driver; read_cql must return them under
Cassandra's semantics (an empty non-frozen collection is NULL, an empty string or blob is
a value, float is 32-bit), with dtypes taken from the metadata alone.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cassandra.util import Date
from frames_reference import TYPED_COLUMNS

from cassnb._frames.read import read_cql

#: What each column reads back as: numpy_nullable dtype, pyarrow dtype, NULL marker.
DTYPES: dict[str, tuple[str, str, str]] = {
    "c_ascii": ("string", "string[pyarrow]", "NA"),
    "c_text": ("string", "string[pyarrow]", "NA"),
    "c_varchar": ("string", "string[pyarrow]", "NA"),
    "c_tinyint": ("Int8", "int8[pyarrow]", "NA"),
    "c_smallint": ("Int16", "int16[pyarrow]", "NA"),
    "c_int": ("Int32", "int32[pyarrow]", "NA"),
    "c_bigint": ("Int64", "int64[pyarrow]", "NA"),
    "c_varint": ("object", "object", "None"),
    "c_float": ("Float32", "float[pyarrow]", "NA"),
    "c_double": ("Float64", "double[pyarrow]", "NA"),
    "c_decimal": ("object", "object", "None"),
    "c_boolean": ("boolean", "bool[pyarrow]", "NA"),
    "c_timestamp": ("datetime64[ms, UTC]", "timestamp[ms, tz=UTC][pyarrow]", "NaT"),
    "c_date": ("datetime64[s]", "date32[day][pyarrow]", "NaT"),
    "c_time": ("timedelta64[ns]", "time64[ns][pyarrow]", "NaT"),
    "c_duration": ("object", "object", "None"),
    "c_uuid": ("object", "string[pyarrow]", "None"),
    "c_timeuuid": ("object", "string[pyarrow]", "None"),
    "c_inet": ("string", "string[pyarrow]", "NA"),
    "c_blob": ("object", "binary[pyarrow]", "None"),
    "c_list": ("object", "list<item: int32>[pyarrow]", "None"),
    "c_set": ("object", "list<item: string>[pyarrow]", "None"),
    "c_map": ("object", "map<string, int64>[pyarrow]", "None"),
    "c_tuple": ("object", "struct<0: int32, 1: string, 2: timestamp[ms, tz=UTC]>[pyarrow]", "None"),
    "c_frozen": ("object", "map<string, list<item: int32>>[pyarrow]", "None"),
    "c_nested": ("object", "list<item: list<item: date32[day]>>[pyarrow]", "None"),
    "c_udt": (
        "object",
        "struct<street: string, Zip: int32, tags: list<item: string>>[pyarrow]",
        "None",
    ),
    "c_vector": ("object", "fixed_size_list<item: float>[3][pyarrow]", "None"),
}


def test_every_cql_type_is_covered() -> None:
    """The type test table names every CQL type, each with a column and a dtype row."""
    types = {cql.split("<")[0] for _, cql in TYPED_COLUMNS}
    assert types >= {
        "ascii", "text", "varchar", "tinyint", "smallint", "int", "bigint", "varint",
        "float", "double", "decimal", "boolean", "timestamp", "date", "time", "duration",
        "uuid", "timeuuid", "inet", "blob", "list", "set", "map", "tuple", "frozen",
        "address", "vector",
    }  # fmt: skip
    assert set(DTYPES) == {name for name, _ in TYPED_COLUMNS}


def _expected(column: str, value: Any) -> Any:
    """The numpy_nullable cell for a value written with the driver; None means NULL."""
    if value is None:
        return None
    if column in ("c_list", "c_set", "c_map") and not value:
        return None  # an empty non-frozen collection is no cell at all
    if column == "c_float":
        return np.float32(value)
    if column == "c_timestamp":
        return pd.Timestamp(value).as_unit("ms")
    if column == "c_date":
        days = value.days_from_epoch if isinstance(value, Date) else Date(value).days_from_epoch
        return pd.Timestamp(np.datetime64(days, "D").astype("datetime64[s]"))
    if column == "c_time":
        return pd.Timedelta(value.nanosecond_time, unit="ns")
    if column == "c_tuple":
        # Inside collections, tuples and UDTs the values are the driver's own objects.
        return tuple(v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v for v in value)
    return value


def _null_marker(value: Any) -> str:
    if value is pd.NA:
        return "NA"
    if value is pd.NaT:
        return "NaT"
    if value is None:
        return "None"
    return f"not NULL: {value!r}"


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float | np.floating) and math.isnan(expected):
        return isinstance(actual, float | np.floating) and math.isnan(actual)
    return bool(actual == expected)


async def test_numpy_nullable_values_and_dtypes(
    session: Any, reference_rows: dict[int, dict[str, Any]]
) -> None:
    """Each type reads back with its documented dtype, its value, and NULL as missing."""
    frame = await read_cql("SELECT * FROM types", session)
    frame = frame.set_index("k").sort_index()
    assert list(frame.index) == sorted(reference_rows)
    for column, (dtype, _, null) in DTYPES.items():
        assert str(frame[column].dtype) == dtype, column
        for key, row in reference_rows.items():
            actual = frame.at[key, column]
            expected = _expected(column, row.get(column))
            if expected is None:
                assert _null_marker(actual) == null, (column, key)
            else:
                assert _same(actual, expected), (column, key, actual, expected)


async def test_float_nan_is_a_value_and_null_is_missing(
    session: Any, reference_rows: dict[int, dict[str, Any]]
) -> None:
    """A stored NaN stays NaN (not NA); NULL is NA; neither becomes 0 or ''."""
    frame = (await read_cql("SELECT k, c_float, c_text FROM types", session)).set_index("k")
    assert math.isnan(frame.at[2, "c_float"])
    assert not frame["c_float"].isna()[2]  # NaN is data here, only NULL is missing
    assert frame["c_float"].isna()[0]
    assert frame.at[0, "c_float"] is pd.NA
    assert frame.at[0, "c_text"] is pd.NA
    assert frame.at[2, "c_text"] == ""


def _expected_arrow(column: str, value: Any) -> Any:
    """The pyarrow backend's cell (as pandas returns it) for a value written with the driver."""
    if value is None or (column in ("c_list", "c_set", "c_map") and not value):
        return None
    if column == "c_timestamp":
        return pd.Timestamp(value).as_unit("ms")
    if column == "c_time":
        return value.nanosecond_time  # compared as int64: Python's time has no nanoseconds
    if column in ("c_uuid", "c_timeuuid"):
        return str(value)
    if column == "c_set":
        return sorted(value)
    if column in ("c_map", "c_frozen"):
        return sorted(value.items())
    if column == "c_nested":
        return [sorted(inner) for inner in value]
    if column == "c_tuple":
        return {str(i): v for i, v in enumerate(value)}
    if column == "c_udt":
        return dict(zip(("street", "Zip", "tags"), value, strict=True))
    return value


async def test_pyarrow_values_and_dtypes(
    session: Any, reference_rows: dict[int, dict[str, Any]]
) -> None:
    """The pyarrow backend gives ArrowDtype columns (nested ones too) with values and NULLs."""
    keys = [0, 1, 2]  # pandas cannot turn Arrow dates beyond year 9999 into Python objects
    query = f"SELECT * FROM types WHERE k IN ({', '.join(map(str, keys))})"
    frame = (await read_cql(query, session, dtype_backend="pyarrow")).set_index("k").sort_index()
    assert {c: str(t) for c, t in frame.dtypes.items()} == {c: t[1] for c, t in DTYPES.items()}
    frame["c_time"] = frame["c_time"].astype("int64[pyarrow]")
    for column, (_, dtype, _) in DTYPES.items():
        for key in keys:
            actual = frame.at[key, column]
            expected = _expected_arrow(column, reference_rows[key].get(column))
            if expected is None:
                arrow_null = "None" if dtype == "object" else "NA"
                assert _null_marker(actual) == arrow_null, (column, key)
            else:
                assert _same(actual, expected), (column, key, actual, expected)


@pytest.mark.parametrize("dtype_backend", ["numpy_nullable", "pyarrow"])
async def test_dtypes_come_from_metadata_not_values(
    session: Any, reference_rows: dict[int, dict[str, Any]], dtype_backend: str
) -> None:
    """One page, one-row pages, an all-NULL page and no rows at all give the same dtypes."""
    query = "SELECT * FROM types WHERE k IN (0, 1, 2)"
    whole = await read_cql(query, session, dtype_backend=dtype_backend)
    row_by_row = await read_cql(query, session, fetch_size=1, dtype_backend=dtype_backend)
    all_null = await read_cql(
        "SELECT * FROM types WHERE k = 0", session, dtype_backend=dtype_backend
    )
    nothing = await read_cql(
        "SELECT * FROM types WHERE k = 999", session, dtype_backend=dtype_backend
    )
    pd.testing.assert_frame_equal(
        whole.sort_values("k", ignore_index=True), row_by_row.sort_values("k", ignore_index=True)
    )
    for frame in (row_by_row, all_null, nothing):
        pd.testing.assert_series_equal(frame.dtypes, whole.dtypes)
    assert len(nothing) == 0
    assert all_null.drop(columns="k").isna().all().all()


async def test_counter_columns(session: Any, driver: Any) -> None:
    """Counters read as Int64; a counter never incremented is NULL."""
    driver.execute("TRUNCATE counters")
    driver.execute("UPDATE counters SET c = c + 5 WHERE k = 1")
    driver.execute("UPDATE counters SET c = c - 7, c2 = c2 + 1 WHERE k = 2")
    frame = (await read_cql("SELECT * FROM counters", session)).set_index("k").sort_index()
    assert str(frame["c"].dtype) == "Int64"
    assert frame["c"].tolist() == [5, -7]
    assert frame.at[1, "c2"] is pd.NA
    arrow = await read_cql("SELECT c FROM counters", session, dtype_backend="pyarrow")
    assert str(arrow["c"].dtype) == "int64[pyarrow]"


def test_documented_table_matches_the_code() -> None:
    """docs/types.md states, for every scalar type, the dtypes this test table checks."""
    docs = (Path(__file__).parents[2] / "docs" / "types.md").read_text()
    for column, cql in TYPED_COLUMNS:
        if "<" in cql or cql == "address":
            continue
        numpy_dtype, arrow_dtype, null = DTYPES[column]
        arrow_null = "None" if arrow_dtype == "object" else "NA"
        line = next(
            (line for line in docs.splitlines() if re.match(rf"\|\s*`{cql}`\s*\|", line)), None
        )
        assert line is not None, f"docs/types.md has no row for {cql}"
        cells = [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        assert cells[1] == numpy_dtype, cql
        assert cells[2] == arrow_dtype, cql
        shown = {"NA": "<NA>", "NaT": "NaT", "None": "None"}
        nulls = [shown[null], shown[arrow_null]]
        documented = [marker.strip().strip("`") for marker in cells[3].split("/")]
        assert documented == (nulls[:1] if nulls[0] == nulls[1] else nulls), cql
