"""The type table: CQL types to pandas dtypes, and driver values to typed pandas arrays.

Every column's dtype comes from the result metadata (the driver's ``cassandra.cqltypes``
classes), never from the values, so an all-NULL page, an empty result and a page of a
million rows give the same dtypes. docs/types.md documents the table; keep the two in step.

The page -> columns seam is :class:`PageDecoder`: one method that turns a page of rows into
one typed array per column. :class:`ColumnwiseDecoder` is the pure-Python implementation; a
compiled decoder can take its place without anything else changing.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Final, Literal, Protocol, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from cassandra import cqltypes

try:
    import pyarrow as pa
except ImportError:  # pyarrow is the optional "arrow" extra
    pa = None

__all__ = [
    "DTYPE_BACKENDS",
    "ColumnCodec",
    "ColumnwiseDecoder",
    "DtypeBackend",
    "FrameSchema",
    "PageDecoder",
    "column_codec",
    "cql_kind",
    "cql_type_name",
    "identity",
    "type_signature",
]

DtypeBackend: TypeAlias = Literal["numpy_nullable", "pyarrow"]
DTYPE_BACKENDS: Final[tuple[DtypeBackend, ...]] = ("numpy_nullable", "pyarrow")

#: A typed column: a pandas extension array or a 1-d numpy array.
Column: TypeAlias = "pd.api.extensions.ExtensionArray | np.ndarray[Any, Any]"
#: Turns a column's values as the driver returns them (None for NULL) into a typed array.
ToArray: TypeAlias = Callable[[Sequence[Any]], Column]
#: Turns one non-NULL driver value into what ``pyarrow.array`` accepts for its Arrow type.
ToArrow: TypeAlias = Callable[[Any], Any]

_NAT: Final = np.iinfo(np.int64).min
_SECONDS_PER_DAY: Final = 86_400
_EPOCH: Final = dt.datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class ColumnCodec:
    """How one CQL type becomes a pandas column."""

    cql_type: str
    dtype: Any
    na_value: Any
    to_array: ToArray

    def missing(self, rows: int) -> Column:
        """Return a column of ``rows`` NULLs."""
        return self.to_array([None] * rows)


def cql_type_name(cqltype: type[Any], *, user_type_fields: bool = False) -> str:
    """Return the CQL spelling of a driver type class, e.g. ``map<text, frozen<list<int>>>``.

    With ``user_type_fields``, a user type is spelled with its fields (``address<street
    text, ...>``), inside collections too (see :func:`type_signature`).
    """
    if issubclass(cqltype, cqltypes.UserType):
        if not user_type_fields:
            return str(cqltype.typename)
        fields = ", ".join(
            f"{name} {cql_type_name(sub, user_type_fields=True)}"
            for name, sub in zip(cqltype.fieldnames, cqltype.subtypes, strict=True)
        )
        return f"{cqltype.typename}<{fields}>"
    if issubclass(cqltype, cqltypes.VectorType):
        return f"vector<{cql_type_name(cqltype.subtype)}, {cqltype.vector_size}>"
    subtypes: Sequence[type[Any]] = getattr(cqltype, "subtypes", ())
    if issubclass(cqltype, cqltypes.ReversedType):
        return cql_type_name(subtypes[0], user_type_fields=user_type_fields)
    if issubclass(cqltype, cqltypes.FrozenType):
        return f"frozen<{cql_type_name(subtypes[0], user_type_fields=user_type_fields)}>"
    if subtypes:
        inner = ", ".join(cql_type_name(t, user_type_fields=user_type_fields) for t in subtypes)
        return f"{cqltype.typename}<{inner}>"
    return str(cqltype.typename)


def type_signature(cqltype: type[Any]) -> str:
    """Return what tells two types apart: the CQL spelling, with user types' fields in it.

    The driver makes a new class for a parameterized type every time it reads one, so
    types are compared by this, not by identity; a user type altered to have another
    field reads the same in CQL but is another type.
    """
    return cql_type_name(cqltype, user_type_fields=True)


def cql_kind(cqltype: type[Any]) -> tuple[str, type[Any]]:
    """Return the type table's key for a type, and the type with frozen/reversed unwrapped."""
    while issubclass(cqltype, (cqltypes.FrozenType, cqltypes.ReversedType)):
        cqltype = cqltype.subtypes[0]
    if issubclass(cqltype, cqltypes.UserType):
        return "udt", cqltype
    if issubclass(cqltype, cqltypes.VectorType):
        return "vector", cqltype
    if issubclass(cqltype, cqltypes.TupleType):
        return "tuple", cqltype
    return str(cqltype.typename), cqltype


# --- numpy_nullable builders -------------------------------------------------------------


def _null_mask(values: Sequence[Any]) -> npt.NDArray[np.bool_]:
    return np.fromiter(map(operator.is_, values, repeat(None)), dtype=bool, count=len(values))


def _objects(values: Sequence[Any]) -> Column:
    # fromiter never treats a list value as a nested dimension, unlike np.array.
    return np.fromiter(values, dtype=object, count=len(values))


def _small_ints(np_type: type[np.signedinteger[Any]]) -> ToArray:
    def to_array(values: Sequence[Any]) -> Column:
        try:
            data = np.array(values, dtype=np_type)
        except TypeError:
            # NULLs present: every 8-, 16- and 32-bit integer is exact in a double.
            floats = np.array(values, dtype=np.float64)
            mask = np.isnan(floats)
            floats[mask] = 0
            return pd.arrays.IntegerArray(floats.astype(np_type), mask)
        return pd.arrays.IntegerArray(data, np.zeros(len(data), dtype=bool))

    return to_array


def _int64s(values: Sequence[Any]) -> Column:
    try:
        data = np.array(values, dtype=np.int64)
    except TypeError:
        # A double would round values beyond 2**53, so fill NULLs in Python instead.
        mask = _null_mask(values)
        data = np.array([0 if v is None else v for v in values], dtype=np.int64)
        return pd.arrays.IntegerArray(data, mask)
    return pd.arrays.IntegerArray(data, np.zeros(len(data), dtype=bool))


def _floats(np_type: type[np.floating[Any]]) -> ToArray:
    def to_array(values: Sequence[Any]) -> Column:
        data = np.array(values, dtype=np.float64)
        nan = np.isnan(data)
        # NaN is a value Cassandra stores; only None is NULL.
        mask = _null_mask(values) if nan.any() else nan
        return pd.arrays.FloatingArray(data.astype(np_type, copy=False), mask)

    return to_array


def _booleans(values: Sequence[Any]) -> Column:
    data = np.array(values, dtype=np.float64)
    mask = np.isnan(data)
    return pd.arrays.BooleanArray(data == 1.0, mask)


def _strings(dtype: pd.StringDtype) -> ToArray:
    if dtype.storage == "pyarrow":

        def to_arrow_strings(values: Sequence[Any]) -> Column:
            return pd.arrays.ArrowStringArray(pa.array(values, type=pa.large_string()))

        return to_arrow_strings

    def to_python_strings(values: Sequence[Any]) -> Column:
        return pd.array(values, dtype=dtype)

    return to_python_strings


def _timestamp_millis(values: Sequence[Any]) -> pd.DatetimeIndex:
    # The driver returns naive UTC datetimes computed through a double, up to a microsecond
    # off the stored milliseconds: round to the nearest millisecond to recover them.
    # pandas parses the datetimes in C.
    return pd.DatetimeIndex(cast(list[Any], values)).round("ms").as_unit("ms")


def _timestamps(values: Sequence[Any]) -> Column:
    return _timestamp_millis(values).tz_localize("UTC").array


def _arrow_timestamps(values: Sequence[Any]) -> Column:
    millis = _timestamp_millis(values).to_numpy()
    arrow = pa.array(millis, type=pa.timestamp("ms", tz="UTC"), from_pandas=True)
    return pd.arrays.ArrowExtensionArray(arrow)


def _millis(value: dt.datetime) -> int:
    """Return the nearest whole millisecond since the epoch of a naive UTC datetime."""
    delta = value - _EPOCH
    micros = (delta.days * _SECONDS_PER_DAY + delta.seconds) * 1_000_000 + delta.microseconds
    return (micros + 500) // 1000


def _int_scaled(attribute: str, scale: int, dtype: str) -> ToArray:
    get = operator.attrgetter(attribute)

    def to_array(values: Sequence[Any]) -> Column:
        mask = _null_mask(values)
        if mask.any():
            ticks = np.array([0 if v is None else get(v) for v in values], dtype=np.int64)
        else:
            ticks = np.fromiter(map(get, values), dtype=np.int64, count=len(values))
        if scale != 1:
            ticks *= scale
        ticks[mask] = _NAT
        return ticks.view(dtype)

    return to_array


_dates = _int_scaled("days_from_epoch", _SECONDS_PER_DAY, "datetime64[s]")
_times = _int_scaled("nanosecond_time", 1, "timedelta64[ns]")

_INT_TYPES: Final[dict[str, tuple[type[np.signedinteger[Any]], str]]] = {
    "tinyint": (np.int8, "Int8"),
    "smallint": (np.int16, "Int16"),
    "int": (np.int32, "Int32"),
    "bigint": (np.int64, "Int64"),
    "counter": (np.int64, "Int64"),
}
_STRING_TYPES: Final = frozenset({"ascii", "text", "varchar", "inet"})


def _numpy_codec(kind: str, name: str) -> ColumnCodec:
    if kind in _INT_TYPES:
        np_type, pd_name = _INT_TYPES[kind]
        to_array = _int64s if np_type is np.int64 else _small_ints(np_type)
        return ColumnCodec(name, pd.api.types.pandas_dtype(pd_name), pd.NA, to_array)
    if kind == "float":
        return ColumnCodec(name, pd.Float32Dtype(), pd.NA, _floats(np.float32))
    if kind == "double":
        return ColumnCodec(name, pd.Float64Dtype(), pd.NA, _floats(np.float64))
    if kind == "boolean":
        return ColumnCodec(name, pd.BooleanDtype(), pd.NA, _booleans)
    if kind in _STRING_TYPES:
        dtype = pd.StringDtype()
        return ColumnCodec(name, dtype, pd.NA, _strings(dtype))
    if kind == "timestamp":
        return ColumnCodec(name, pd.DatetimeTZDtype("ms", "UTC"), pd.NaT, _timestamps)
    if kind == "date":
        return ColumnCodec(name, np.dtype("datetime64[s]"), pd.NaT, _dates)
    if kind == "time":
        return ColumnCodec(name, np.dtype("timedelta64[ns]"), pd.NaT, _times)
    return ColumnCodec(name, np.dtype(object), None, _objects)


# --- pyarrow builders --------------------------------------------------------------------

_ARROW_SCALARS: Final[dict[str, Callable[[], Any]]] = {
    "tinyint": lambda: pa.int8(),
    "smallint": lambda: pa.int16(),
    "int": lambda: pa.int32(),
    "bigint": lambda: pa.int64(),
    "counter": lambda: pa.int64(),
    "float": lambda: pa.float32(),
    "double": lambda: pa.float64(),
    "boolean": lambda: pa.bool_(),
    "ascii": lambda: pa.string(),
    "text": lambda: pa.string(),
    "varchar": lambda: pa.string(),
    "inet": lambda: pa.string(),
    "blob": lambda: pa.binary(),
}


def _arrow_field(kind: str, cqltype: type[Any]) -> tuple[Any, ToArrow | None] | None:
    """Return the Arrow type of a CQL type and how to convert its values, or None if none fits."""
    if kind in _ARROW_SCALARS:
        return _ARROW_SCALARS[kind](), None
    if kind in ("uuid", "timeuuid"):
        # pandas cannot compare, sort or display Arrow's uuid extension type; text can.
        return pa.string(), str
    if kind == "timestamp":
        return pa.timestamp("ms", tz="UTC"), _millis
    if kind == "date":
        return pa.date32(), operator.attrgetter("days_from_epoch")
    if kind == "time":
        return pa.time64("ns"), operator.attrgetter("nanosecond_time")
    if kind in ("list", "set"):
        return _arrow_list(cqltype.subtypes[0], None)
    if kind == "vector":
        return _arrow_list(cqltype.subtype, int(cqltype.vector_size))
    if kind == "map":
        return _arrow_map(*cqltype.subtypes)
    if kind == "tuple":
        return _arrow_struct([str(i) for i in range(len(cqltype.subtypes))], cqltype.subtypes)
    if kind == "udt":
        return _arrow_struct(list(cqltype.fieldnames), cqltype.subtypes)
    # varint and decimal have no exact Arrow type; pandas cannot display Arrow's
    # month_day_nano_interval, the one that would fit duration.
    return None


def _arrow_of(cqltype: type[Any]) -> tuple[Any, ToArrow | None] | None:
    return _arrow_field(*cql_kind(cqltype))


def _arrow_list(subtype: type[Any], size: int | None) -> tuple[Any, ToArrow | None] | None:
    inner = _arrow_of(subtype)
    if inner is None:
        return None
    arrow_type = pa.list_(inner[0]) if size is None else pa.list_(inner[0], size)
    convert = inner[1]
    if convert is None:
        return arrow_type, None
    return arrow_type, lambda items: [convert(v) for v in items]


def _arrow_map(key_type: type[Any], value_type: type[Any]) -> tuple[Any, ToArrow | None] | None:
    key, value = _arrow_of(key_type), _arrow_of(value_type)
    if key is None or value is None:
        return None
    key_convert = key[1] or identity
    value_convert = value[1] or identity
    return pa.map_(key[0], value[0]), lambda mapping: [
        (key_convert(k), None if v is None else value_convert(v)) for k, v in mapping.items()
    ]


def _arrow_struct(
    names: list[str], subtypes: Sequence[type[Any]]
) -> tuple[Any, ToArrow | None] | None:
    fields = [_arrow_of(t) for t in subtypes]
    if any(f is None for f in fields):
        return None
    arrow_type = pa.struct([(n, f[0]) for n, f in zip(names, fields, strict=True) if f])
    converts = [f[1] or identity for f in fields if f]
    return arrow_type, lambda record: tuple(
        None if v is None else c(v) for c, v in zip(converts, record, strict=False)
    )


def identity(value: Any) -> Any:
    """Return ``value``: the converter of values that need none."""
    return value


def _arrow_codec(kind: str, cqltype: type[Any], name: str) -> ColumnCodec:
    if kind == "timestamp":
        return ColumnCodec(
            name, pd.ArrowDtype(pa.timestamp("ms", tz="UTC")), pd.NA, _arrow_timestamps
        )
    spec = _arrow_field(kind, cqltype)
    if spec is None:
        return ColumnCodec(name, np.dtype(object), None, _objects)
    arrow_type, convert = spec

    def to_array(values: Sequence[Any]) -> Column:
        if convert is not None:
            values = [None if v is None else convert(v) for v in values]
        return pd.arrays.ArrowExtensionArray(pa.array(values, type=arrow_type))

    return ColumnCodec(name, pd.ArrowDtype(arrow_type), pd.NA, to_array)


def column_codec(cqltype: type[Any], dtype_backend: DtypeBackend) -> ColumnCodec:
    """Return the codec of a driver type class for a dtype backend."""
    kind, unwrapped = cql_kind(cqltype)
    name = cql_type_name(cqltype)
    if dtype_backend == "numpy_nullable":
        return _numpy_codec(kind, name)
    if dtype_backend == "pyarrow":
        if pa is None:
            raise ImportError('dtype_backend="pyarrow" needs pyarrow: pip install "cassnb[arrow]"')
        return _arrow_codec(kind, unwrapped, name)
    raise ValueError(f"dtype_backend must be one of {DTYPE_BACKENDS}, not {dtype_backend!r}")


# --- the page -> columns seam ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameSchema:
    """The columns a frame is built from: names, positions in the row, and codecs.

    ``page_names`` and ``page_types`` are every column of the pages the schema decodes,
    when it was made from them: a page with other columns (the table changed between two
    pages) does not fit it (:meth:`matches`).
    """

    names: tuple[str, ...]
    positions: tuple[int, ...]
    codecs: tuple[ColumnCodec, ...]
    page_names: tuple[str, ...] | None = None
    page_types: tuple[Any, ...] | None = None

    @classmethod
    def from_metadata(
        cls,
        column_names: Sequence[str],
        column_types: Sequence[type[Any]],
        dtype_backend: DtypeBackend,
        positions: Sequence[int] | None = None,
    ) -> FrameSchema:
        """Build the schema of a result from its metadata, optionally keeping some positions."""
        keep = range(len(column_names)) if positions is None else positions
        return cls(
            names=tuple(column_names[p] for p in keep),
            positions=tuple(keep),
            codecs=tuple(column_codec(column_types[p], dtype_backend) for p in keep),
            page_names=tuple(column_names),
            page_types=tuple(column_types),
        )

    def matches(self, names: Sequence[str], types: Sequence[Any]) -> bool:
        """Whether a page with these columns is decoded with this schema.

        True when the schema was not made from a page's columns.
        """
        known = self.page_types
        if known is None:
            return True
        if len(types) != len(known) or tuple(names) != self.page_names:
            return False
        if tuple(types) == known:
            # The same classes: what every page of a read has unless the table changed.
            return True
        return all(
            new is old or type_signature(new) == type_signature(old)
            for new, old in zip(types, known, strict=True)
        )

    def empty_columns(self) -> list[Column]:
        """Return one empty typed array per column."""
        return [codec.to_array(()) for codec in self.codecs]


class PageDecoder(Protocol):
    """Turns a page of rows into one typed array per schema column, in schema order."""

    def decode(self, rows: Sequence[Sequence[Any]], schema: FrameSchema) -> list[Column]:
        """Decode ``rows`` into columns of the schema's dtypes, each ``len(rows)`` long."""
        ...


class ColumnwiseDecoder:
    """Transpose a page once, then build each column with vectorised numpy/pyarrow calls."""

    def decode(self, rows: Sequence[Sequence[Any]], schema: FrameSchema) -> list[Column]:
        """Decode ``rows`` into columns of the schema's dtypes, each ``len(rows)`` long."""
        if not rows:
            return schema.empty_columns()
        width = len(rows[0])
        if schema.positions == tuple(range(width)):
            columns: Sequence[Sequence[Any]] = list(zip(*rows, strict=True))
        else:
            columns = [[row[p] for row in rows] for p in schema.positions]
        return [
            codec.to_array(values) for codec, values in zip(schema.codecs, columns, strict=True)
        ]
