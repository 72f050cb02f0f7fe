"""Build ROWS pages by hand, with the driver's own serializers, and decode them both ways."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import struct
import uuid
from decimal import Decimal
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pyarrow as pa
from cassandra import cqltypes
from cassandra.util import Date, Duration, Time

from cassnb._driver.fast.pages import RawPage
from cassnb._frames.columnar import decode_page
from cassnb._frames.types import ColumnwiseDecoder, FrameSchema

PROTOCOL = 5
NO_METADATA = 0x0004


def cell(value: Any) -> bytes:
    """Return one [bytes] cell holding already serialized ``value`` (None for NULL)."""
    if value is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(value)) + value


def page_body(rows: list[list[bytes | None]], columns: int) -> bytes:
    """Return a ROWS body without metadata (the driver then takes the prepared metadata)."""
    out = [struct.pack(">iii", NO_METADATA, columns, len(rows))]
    for row in rows:
        out.extend(cell(value) for value in row)
    return b"".join(out)


def raw_page(types: list[type[Any]], rows: list[list[Any]]) -> RawPage:
    """Serialize ``rows`` of Python values with the driver and wrap them as a RawPage."""
    cells = [
        [None if v is None else t.serialize(v, PROTOCOL) for t, v in zip(types, row, strict=True)]
        for row in rows
    ]
    return raw_page_of_cells(types, cells)


def raw_page_of_cells(types: list[type[Any]], cells: list[list[bytes | None]]) -> RawPage:
    """Wrap already serialized cells as a RawPage with those column types."""
    metadata = [("ks", "tbl", f"c{i}", t) for i, t in enumerate(types)]
    body = page_body(cells, len(types))
    return RawPage(body, 0, 8, metadata, PROTOCOL, {}, metadata)


def both_ways(page: RawPage, backend: str) -> tuple[list[Any], list[Any]]:
    """Decode a page natively and with the driver plus the pure-Python decoder."""
    schema = FrameSchema.from_metadata(page.column_names, page.column_types, backend)  # type: ignore[arg-type]
    native = decode_page(page, schema)
    reference = ColumnwiseDecoder().decode(list(page), schema)
    return native, reference


def _arrow_equal(a: Any, b: Any) -> None:
    # Compared in Arrow itself: dates beyond Python's years 1-9999 cannot become objects.
    x = a.__arrow_array__().combine_chunks()
    y = b.__arrow_array__().combine_chunks()
    assert x.type == y.type, (x.type, y.type)
    assert x.is_null().equals(y.is_null())
    if pa.types.is_temporal(x.type):
        storage = pa.int32() if x.type == pa.date32() else pa.int64()
        x, y = x.view(storage), y.view(storage)
    if pa.types.is_floating(x.type):
        # NaN is a value: numpy's comparison puts NaN equal to NaN, Arrow's does not.
        present = x.is_valid().to_numpy(zero_copy_only=False)
        np.testing.assert_array_equal(
            x.to_numpy(zero_copy_only=False)[present], y.to_numpy(zero_copy_only=False)[present]
        )
    elif not x.equals(y):
        # Arrow's comparison puts NaN apart from NaN inside nested values too.
        assert same_value(x.to_pylist(), y.to_pylist()), (x, y)


def assert_same_columns(native: list[Any], reference: list[Any]) -> None:
    """Assert two decodings give equal arrays of equal dtypes."""
    assert len(native) == len(reference)
    for position, (a, b) in enumerate(zip(native, reference, strict=True)):
        assert type(a) is type(b), (position, type(a), type(b))
        assert a.dtype == b.dtype, (position, a.dtype, b.dtype)
        if isinstance(a.dtype, pd.ArrowDtype):
            _arrow_equal(a, b)
        elif pd.api.types.is_object_dtype(a.dtype):
            assert len(a) == len(b)
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                assert same_value(x, y), (position, i, x, y)
        else:
            pd.testing.assert_series_equal(pd.Series(a), pd.Series(b), check_exact=True)


def same_value(x: Any, y: Any) -> bool:
    """Deep equality of cell values of the same type, with NaN equal to NaN."""
    if isinstance(x, tuple) and isinstance(y, tuple):
        # A user type's namedtuple class is made anew for each result's metadata.
        if getattr(x, "_fields", None) != getattr(y, "_fields", None):
            return False
        return len(x) == len(y) and all(same_value(a, b) for a, b in zip(x, y, strict=True))
    if type(x) is not type(y):
        return False
    if isinstance(x, float):
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, list):
        return len(x) == len(y) and all(same_value(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, dict) or hasattr(x, "items"):
        return same_value(list(x.items()), list(y.items()))
    return bool(x == y)


# --- values per type, for hypothesis ----------------------------------------------------

_INT_RANGES = {
    "tinyint": 8,
    "smallint": 16,
    "int": 32,
    "bigint": 64,
}


def _ints(bits: int) -> st.SearchStrategy[int]:
    return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


_TIMESTAMPS = st.integers(-62_135_596_800_000, 253_402_300_799_999).map(
    lambda ms: dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)
)

VALUES: dict[str, st.SearchStrategy[Any]] = {
    **{name: _ints(bits) for name, bits in _INT_RANGES.items()},
    "counter": _ints(64),
    "float": st.floats(width=32, allow_nan=True, allow_infinity=True),
    "double": st.floats(allow_nan=True, allow_infinity=True),
    "boolean": st.booleans(),
    "text": st.text(),
    "varchar": st.text(),
    "ascii": st.text(st.characters(max_codepoint=127)),
    "blob": st.binary(),
    "timestamp": _TIMESTAMPS,
    "date": st.integers(-(2**31), 2**31 - 1).map(Date),
    "time": st.integers(0, 86_399_999_999_999).map(Time),
    "uuid": st.uuids(),
    "timeuuid": st.uuids(version=1),
    "varint": st.integers(-(2**100), 2**100),
    "decimal": st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: d.is_finite()
    ),
    "inet": st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda a: str(ipaddress.ip_address(a))),
    ),
    # Cassandra wants the three parts of one sign.
    "duration": st.tuples(
        st.sampled_from([1, -1]),
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**63 - 1),
    ).map(lambda t: Duration(t[0] * t[1], t[0] * t[2], t[0] * t[3])),
    "list<int>": st.lists(_ints(32), min_size=1, max_size=5),
    "set<text>": st.sets(st.text(max_size=5), min_size=1, max_size=4),
    "map<text, bigint>": st.dictionaries(st.text(max_size=5), _ints(64), min_size=1, max_size=4),
}

CQL_TYPES: dict[str, type[Any]] = {
    "tinyint": cqltypes.ByteType,
    "smallint": cqltypes.ShortType,
    "int": cqltypes.Int32Type,
    "bigint": cqltypes.LongType,
    "counter": cqltypes.CounterColumnType,
    "float": cqltypes.FloatType,
    "double": cqltypes.DoubleType,
    "boolean": cqltypes.BooleanType,
    "text": cqltypes.UTF8Type,
    "varchar": cqltypes.VarcharType,
    "ascii": cqltypes.AsciiType,
    "blob": cqltypes.BytesType,
    "timestamp": cqltypes.DateType,
    "date": cqltypes.SimpleDateType,
    "time": cqltypes.TimeType,
    "uuid": cqltypes.UUIDType,
    "timeuuid": cqltypes.TimeUUIDType,
    "varint": cqltypes.IntegerType,
    "decimal": cqltypes.DecimalType,
    "inet": cqltypes.InetAddressType,
    "duration": cqltypes.DurationType,
    "list<int>": cqltypes.ListType.apply_parameters([cqltypes.Int32Type]),
    "set<text>": cqltypes.SetType.apply_parameters([cqltypes.UTF8Type]),
    "map<text, bigint>": cqltypes.MapType.apply_parameters([cqltypes.UTF8Type, cqltypes.LongType]),
}

assert set(VALUES) == set(CQL_TYPES)

#: Values that need no hypothesis to be interesting.
EDGES: dict[str, list[Any]] = {
    "float": [math.nan, -0.0, math.inf],
    "double": [math.nan, -0.0, -math.inf, 5e-324],
    "text": ["", "é✓\U0001f600", "\x00"],
    "ascii": ["", "\x7f"],
    "blob": [b"", b"\x00"],
    "timestamp": [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999000)],
    "date": [Date(-(2**31)), Date(2**31 - 1), Date(0)],
    "uuid": [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)],
    "decimal": [Decimal("-0.000"), Decimal("1E+30")],
}
