"""How each column of a page is decoded: the C decoder's kind, its buffers, its builder.

A plan per CQL type and dtype backend says which kind the compiled decoder writes a
column as, and how the type table's array is built from what it wrote; a type with no
buffer layout here is decoded by the driver's deserializers, one column at a time, and
built by the type table's own code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

from cassnb._core.errors import QueryError
from cassnb._driver import WirePage
from cassnb._frames.compiled import RAW, SCANNED, WIDTHS, native

if TYPE_CHECKING:
    import numpy as np

    from cassnb._frames.memory import Slab
    from cassnb._frames.types import Column, ColumnCodec

__all__ = ["Build", "Decoded", "Plan", "column_buffers", "plan_for"]


class Decoded:
    """One column of a decoded page: the C decoder's output and what its builder needs."""

    __slots__ = ("buffers", "codec", "metadata", "name", "nulls", "objects", "page", "rows")

    def __init__(
        self,
        rows: int,
        nulls: int,
        buffers: tuple[Any, ...] | None,
        objects: list[Any] | None,
        codec: ColumnCodec,
        metadata: tuple[Any, ...],
        page: WirePage | None,
        name: str | None = None,
    ) -> None:
        self.rows = rows
        self.nulls = nulls
        self.buffers = buffers
        self.objects = objects
        self.codec = codec
        self.metadata = metadata
        #: The column's name, for errors.
        self.name: str = name if name is not None else str(metadata[2]) if metadata else "?"
        #: The page, for builders that decode its bytes again (None once they are done).
        self.page = page


Build: TypeAlias = "Callable[[Decoded], Column]"


class Plan:
    """How one result column is decoded: the C kind, its buffers, what builds its array."""

    __slots__ = ("build", "joined", "kept", "kind", "values", "wide")

    def __init__(
        self,
        kind: int,
        build: Build,
        values: Any = None,
        wide: bool = False,
        kept: bool = False,
        joined: bool = False,
    ) -> None:
        self.kind = kind
        self.build = build
        #: numpy dtype of a fixed-width column's values (C writes their bits).
        self.values = values
        #: Variable-length data with int64 offsets (Arrow's large types).
        self.wide = wide
        #: The built array holds the buffers C writes (not a copy): they live as long as
        #: the frame, so they come from slabs.
        self.kept = kept
        #: Its pages' arrays are joined into one when a frame is joined (fixed-width
        #: columns): a read that joins every page writes them end to end (FixedBlock).
        self.joined = joined

    def typed(self, d: Decoded) -> Decoded:
        """Return ``d`` with raw (values, mask) bytes seen as this column's numpy types."""
        assert d.buffers is not None
        d.buffers = self._viewed(*d.buffers)
        return d

    def _take_fixed(self, rows: int, slabs: tuple[Slab, Slab]) -> tuple[Any, Any] | None:
        """Cut a page's raw values and NULL mask from the slabs, or None if one is out."""
        if self.values is None:
            return None
        values = slabs[0].take(rows * self.values.itemsize)
        mask = slabs[1].take(rows)
        if values is None or mask is None:
            return None
        return values, mask

    def _viewed(self, values: Any, mask: Any) -> tuple[Any, Any]:
        """See raw values and NULL-mask bytes as this column's numpy types."""
        import numpy as np

        return values.view(self.values), mask.view(np.bool_)

    def allocate(
        self, rows: int, size: int, slabs: tuple[Slab, Slab] | None
    ) -> tuple[Any, ...] | None:
        """Return the output buffers fill() writes this column into."""
        import numpy as np

        if slabs is not None and self.values is not None:
            taken = self._take_fixed(rows, slabs)
            if taken is not None:
                return self._viewed(*taken)
        elif slabs is not None and self.kind in SCANNED and self.kind != RAW:
            offset_type = np.dtype(np.int64 if self.wide else np.int32)
            offsets = slabs[0].take((rows + 1) * offset_type.itemsize)
            data = slabs[1].take(size)
            if offsets is not None and data is not None:
                # The NULL mask only serves to build the validity bitmap: the heap will do.
                return offsets.view(offset_type), data, np.empty(rows, np.bool_)
        buffers = column_buffers(self.kind, rows, size, wide=self.wide)
        if buffers is not None and self.values is not None:
            return buffers[0].view(self.values), buffers[1]
        return buffers


def column_buffers(
    kind: int, rows: int, size: int, *, wide: bool = False
) -> tuple[Any, ...] | None:
    """Return fill()'s output buffers for a column of a C kind: values as plain bytes."""
    import numpy as np

    width = WIDTHS.get(kind)
    if width is not None:
        return np.empty(rows * width, np.uint8), np.empty(rows, np.bool_)
    if kind in SCANNED and kind != RAW:
        return (
            np.empty(rows + 1, np.int64 if wide else np.int32),
            np.empty(size, np.uint8),
            np.empty(rows, np.bool_),
        )
    if kind == RAW:
        return (bytearray(size),)
    return None


def _plans() -> tuple[dict[str, tuple[Any, Plan]], dict[str, tuple[Any, Plan]]]:
    """Return, per CQL kind, (dtype, plan) for each dtype backend: what is decoded in C."""
    import numpy as np
    import pandas as pd

    c = native
    assert c is not None
    nat = np.iinfo(np.int64).min

    def masked(array_type: Any) -> Build:
        def build(d: Decoded) -> Column:
            assert d.buffers is not None
            return array_type(d.buffers[0], d.buffers[1])  # type: ignore[no-any-return]

        return build

    def ticks(d: Decoded) -> np.ndarray[Any, Any]:
        """Return a column's int64 ticks, with NaT's where its NULLs are."""
        assert d.buffers is not None
        values: np.ndarray[Any, Any] = d.buffers[0]
        if d.nulls:
            values[d.buffers[1]] = nat
        return values

    utc_millis = pd.DatetimeTZDtype("ms", "UTC")

    def timestamps(d: Decoded) -> Column:
        assert d.buffers is not None
        values, mask = d.buffers
        # The smallest bigint is a timestamp Cassandra stores, and NaT's bits: it would
        # read as NULL. The minimum first: no array is made unless it is there.
        if len(values) and values.min() == nat and (values[~mask] == nat).any():
            raise QueryError(
                f"column {d.name!r} holds the timestamp -9223372036854775808 ms, which "
                "datetime64[ms, UTC] can only hold as NaT (NULL): read it with "
                f'dtype_backend="pyarrow", or as a number with CAST({d.name} AS bigint)'
            )
        # Integers are read as instants in UTC: the array views them, where localizing
        # datetime64 values to UTC would copy them.
        return cast("Column", pd.array(ticks(d), dtype=utc_millis, copy=False))

    def dates(d: Decoded) -> Column:
        # C writes seconds since the epoch, and NaT for NULL.
        assert d.buffers is not None
        return cast("Column", d.buffers[0].view("M8[s]"))

    def times(d: Decoded) -> Column:
        return ticks(d).view("m8[ns]")

    def from_objects(d: Decoded) -> Column:
        assert d.objects is not None
        return d.codec.to_array(d.objects)

    def fixed(kind: int, values: Any, build: Build) -> Plan:
        # Every fixed-width array, Arrow's too (it wraps the values buffer), views the
        # buffers C writes: they come from slabs, and a joined read builds one array over
        # all its pages.
        return Plan(kind, build, values=np.dtype(values), kept=True, joined=True)

    integers = masked(pd.arrays.IntegerArray)
    floats = masked(pd.arrays.FloatingArray)
    pyarrow = _pa() is not None
    storage: Literal["python", "pyarrow"] = "pyarrow" if pyarrow else "python"
    string_dtype = pd.StringDtype(storage, na_value=pd.NA)
    if pyarrow:
        text = Plan(c.K_UTF8, _large_strings, wide=True, kept=True)
        ascii_text = Plan(c.K_ASCII, _large_strings, wide=True, kept=True)
    else:
        text = Plan(c.K_UTF8_OBJ, from_objects)
        ascii_text = Plan(c.K_ASCII_OBJ, from_objects)
    objects = np.dtype(object)
    uuids = Plan(c.K_UUID_OBJ, from_objects)
    numpy_plans: dict[str, tuple[Any, Plan]] = {
        "tinyint": (pd.Int8Dtype(), fixed(c.K_FIX1, np.int8, integers)),
        "smallint": (pd.Int16Dtype(), fixed(c.K_FIX2, np.int16, integers)),
        "int": (pd.Int32Dtype(), fixed(c.K_FIX4, np.int32, integers)),
        "bigint": (pd.Int64Dtype(), fixed(c.K_FIX8, np.int64, integers)),
        "counter": (pd.Int64Dtype(), fixed(c.K_FIX8, np.int64, integers)),
        "float": (pd.Float32Dtype(), fixed(c.K_FIX4, np.float32, floats)),
        "double": (pd.Float64Dtype(), fixed(c.K_FIX8, np.float64, floats)),
        "boolean": (
            pd.BooleanDtype(),
            fixed(c.K_BOOL, np.bool_, masked(pd.arrays.BooleanArray)),
        ),
        "timestamp": (utc_millis, fixed(c.K_FIX8, np.int64, timestamps)),
        "date": (np.dtype("datetime64[s]"), fixed(c.K_DATE_SECONDS, np.int64, dates)),
        "time": (np.dtype("timedelta64[ns]"), fixed(c.K_FIX8, np.int64, times)),
        "text": (string_dtype, text),
        "varchar": (string_dtype, text),
        "ascii": (string_dtype, ascii_text),
        "blob": (objects, Plan(c.K_BLOB_OBJ, from_objects)),
        "uuid": (objects, uuids),
        "timeuuid": (objects, uuids),
    }
    if not pyarrow:
        return numpy_plans, {}
    pa = _pa()

    def arrow(arrow_type: Any, kind: int, values: Any) -> tuple[Any, Plan]:
        return pd.ArrowDtype(arrow_type), fixed(kind, values, _arrow_fixed)

    def arrow_varlen(arrow_type: Any, kind: int) -> tuple[Any, Plan]:
        return pd.ArrowDtype(arrow_type), Plan(kind, _arrow_strings, kept=True)

    arrow_plans: dict[str, tuple[Any, Plan]] = {
        "tinyint": arrow(pa.int8(), c.K_FIX1, np.int8),
        "smallint": arrow(pa.int16(), c.K_FIX2, np.int16),
        "int": arrow(pa.int32(), c.K_FIX4, np.int32),
        "bigint": arrow(pa.int64(), c.K_FIX8, np.int64),
        "counter": arrow(pa.int64(), c.K_FIX8, np.int64),
        "float": arrow(pa.float32(), c.K_FIX4, np.float32),
        "double": arrow(pa.float64(), c.K_FIX8, np.float64),
        "boolean": arrow(pa.bool_(), c.K_BOOL, np.bool_),
        "timestamp": arrow(pa.timestamp("ms", tz="UTC"), c.K_FIX8, np.int64),
        "date": arrow(pa.date32(), c.K_DATE, np.int32),
        "time": arrow(pa.time64("ns"), c.K_FIX8, np.int64),
        "text": arrow_varlen(pa.string(), c.K_UTF8),
        "varchar": arrow_varlen(pa.string(), c.K_UTF8),
        "ascii": arrow_varlen(pa.string(), c.K_ASCII),
        "blob": arrow_varlen(pa.binary(), c.K_BLOB),
        "uuid": arrow_varlen(pa.string(), c.K_UUID_TEXT),
        "timeuuid": arrow_varlen(pa.string(), c.K_UUID_TEXT),
    }
    return numpy_plans, arrow_plans


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError:
        return None
    return pyarrow


def _validity(d: Decoded) -> Any:
    if not d.nulls:
        return None
    import numpy as np

    assert d.buffers is not None
    return _pa().py_buffer(np.packbits(~d.buffers[-1], bitorder="little"))


def _arrow_fixed(d: Decoded) -> Column:
    import numpy as np
    import pandas as pd

    assert d.buffers is not None
    pa = _pa()
    arrow_type = d.codec.dtype.pyarrow_dtype
    data = d.buffers[0]
    if arrow_type == pa.bool_():
        data = np.packbits(data, bitorder="little")
    array = pa.Array.from_buffers(
        arrow_type, d.rows, [_validity(d), pa.py_buffer(data)], null_count=d.nulls
    )
    return pd.arrays.ArrowExtensionArray(array)


def _arrow_varlen(d: Decoded, arrow_type: Any) -> Any:
    assert d.buffers is not None
    offsets, data, _ = d.buffers
    pa = _pa()
    return pa.Array.from_buffers(
        arrow_type,
        d.rows,
        [_validity(d), pa.py_buffer(offsets), pa.py_buffer(data)],
        null_count=d.nulls,
    )


def _arrow_strings(d: Decoded) -> Column:
    import pandas as pd

    return pd.arrays.ArrowExtensionArray(_arrow_varlen(d, d.codec.dtype.pyarrow_dtype))


def _large_strings(d: Decoded) -> Column:
    import pandas as pd

    return pd.arrays.ArrowStringArray(_arrow_varlen(d, _pa().large_string()))


def _driver_values(d: Decoded) -> Column:
    assert d.buffers is not None
    assert d.page is not None
    try:
        values = d.page.decode_cells(d.buffers[0], d.metadata)
    except Exception as exc:
        # The driver's deserializers fail in many ways on bytes that are not their type.
        raise ValueError(f"column {d.metadata[2]!r}: {exc}") from exc
    return d.codec.to_array(values)


_PLANS: tuple[dict[str, tuple[Any, Plan]], dict[str, tuple[Any, Plan]]] | None = None
_BY_DRIVER: Final = Plan(RAW, _driver_values)


def plan_for(cqltype: Any, codec: ColumnCodec) -> Plan:
    """Choose how a column is decoded: natively when its dtype is the one we build."""
    global _PLANS
    import pandas as pd

    from cassnb._frames.types import cql_kind

    if _PLANS is None:
        _PLANS = _plans()
    numpy_plans, arrow_plans = _PLANS
    kind, unwrapped = cql_kind(cqltype)
    entry = (arrow_plans if isinstance(codec.dtype, pd.ArrowDtype) else numpy_plans).get(kind)
    # A type whose empty values mean something else than NULL, or a dtype the type table
    # has since changed, goes through the driver and the type table's own builder.
    if (
        entry is None
        or entry[0] != codec.dtype
        or getattr(unwrapped, "support_empty_values", False)
    ):
        return _BY_DRIVER
    return entry[1]
