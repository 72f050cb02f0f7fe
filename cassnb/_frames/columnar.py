"""Result pages still in wire form, decoded into columns in C.

On the fast path a stream's pages arrive as :class:`~cassnb._driver.WirePage`: the rows
still bytes. The frames path hands such a page to :class:`NativeDecoder`, which writes
each column straight into numpy or Arrow buffers with the compiled
``cassnb._frames._native.columnar`` and builds the type table's arrays from them; a type
it has no buffer layout for is decoded by the driver's deserializers, one column at a
time, and built by the type table's own code. Pages of rows (the driver's public API
only, or a read whose rows someone iterated) go to the pure-Python decoder.

Without the compiled module (no C compiler at install time, or ``CASSNB_NO_NATIVE=1``)
frames use the pure-Python decoder, which reads raw pages row by row; one line on the
``cassnb`` logger says so.

This module imports neither numpy nor pandas until a page is decoded into columns.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

from cassnb._core.errors import CassandraError
from cassnb._driver import Arrivals, WirePage

if TYPE_CHECKING:
    import numpy as np

    from cassnb._frames.types import Column, ColumnCodec, FrameSchema, PageDecoder

__all__ = [
    "NativeDecoder",
    "built",
    "decode_page",
    "join_adjacent",
    "native_available",
    "page_decoder",
]

log = logging.getLogger("cassnb")

_ABI: Final = 5


def _load_native() -> ModuleType | None:
    if os.environ.get("CASSNB_NO_NATIVE", "") not in ("", "0"):
        log.info("native page decoder disabled by CASSNB_NO_NATIVE; frames are decoded in Python")
        return None
    try:
        from cassnb._frames._native import columnar
    except ImportError as exc:
        log.warning(
            "native page decoder not available (%s); frames are decoded in Python, "
            "several times slower: reinstall cassnb with a C compiler present",
            exc,
        )
        return None
    if getattr(columnar, "ABI", None) != _ABI:
        log.warning(
            "native page decoder is a stale build (ABI %s, expected %s); frames are decoded "
            "in Python: rebuild with 'pip install -e .'",
            getattr(columnar, "ABI", None),
            _ABI,
        )
        return None
    return columnar


_native: Final = _load_native()


def native_available() -> bool:
    """Tell whether pages are decoded by the compiled decoder."""
    return _native is not None


# --- a read's decoding state ---------------------------------------------------------


class _ReadState:
    """What the decoder keeps for one read's pages (in its :class:`Arrivals`' consumer slot)."""

    __slots__ = ("ahead", "block", "joined", "runs", "slabs")

    def __init__(self) -> None:
        #: Where the read's pages take their column buffers (values, then NULL masks), by
        #: column position.
        self.slabs: dict[int, tuple[_Slab, _Slab]] = {}
        #: Where a joined read's object columns gather their pages, by column position.
        self.runs: dict[int, _ObjectRun] = {}
        #: Every page is joined into one frame: write each column's pages end to end.
        self.joined = False
        #: Where a joined read's fixed-width columns go (False: they cannot, go per page).
        self.block: _FixedBlock | bool | None = None
        #: The schema pages are decoded into on the driver's thread as they arrive.
        self.ahead: FrameSchema | None = None

    def decode_arrived(self, page: WirePage) -> None:
        """Decode a page as it arrives (on the driver's thread); never raise."""
        schema = self.ahead
        assert schema is not None
        try:
            page.decoded = (schema, decode_page(page, schema))
        except Exception as exc:  # raised where the page is read, on the loop
            page.decoded = (schema, exc)


def _state_of(source: Arrivals) -> _ReadState:
    state = source.consumer
    if state is None:
        state = source.consumer = _ReadState()
    assert isinstance(state, _ReadState)
    return state


def _decode_ahead(source: Arrivals, schema: FrameSchema) -> None:
    """Decode the read's next pages into ``schema``'s columns on the driver's thread.

    The loop then only collects them: their bytes are decoded on the thread that just
    received them, while they are still in its CPU's cache, and the loop wakes to nothing
    but bookkeeping.
    """
    state = _state_of(source)
    state.ahead = schema
    if source.on_arrival is None:
        source.on_arrival = state.decode_arrived


# --- columns -----------------------------------------------------------------------------


class _Decoded:
    """One column of a decoded page: the C decoder's output and what its builder needs."""

    __slots__ = ("buffers", "codec", "metadata", "nulls", "objects", "page", "rows")

    def __init__(
        self,
        rows: int,
        nulls: int,
        buffers: tuple[Any, ...] | None,
        objects: list[Any] | None,
        codec: ColumnCodec,
        metadata: tuple[Any, ...],
        page: WirePage | None,
    ) -> None:
        self.rows = rows
        self.nulls = nulls
        self.buffers = buffers
        self.objects = objects
        self.codec = codec
        self.metadata = metadata
        #: The page, for builders that decode its bytes again (None once they are done).
        self.page = page


Build: TypeAlias = "Callable[[_Decoded], Column]"


class _Plan:
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
        #: columns): a read that joins every page writes them end to end (_FixedBlock).
        self.joined = joined

    def typed(self, d: _Decoded) -> _Decoded:
        """Return ``d`` with raw (values, mask) bytes seen as this column's numpy types."""
        assert d.buffers is not None
        d.buffers = self._viewed(*d.buffers)
        return d

    def _take_fixed(self, rows: int, slabs: tuple[_Slab, _Slab]) -> tuple[Any, Any] | None:
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
        self, rows: int, size: int, slabs: tuple[_Slab, _Slab] | None
    ) -> tuple[Any, ...] | None:
        """Return the output buffers fill() writes this column into."""
        import numpy as np

        if slabs is not None and self.values is not None:
            taken = self._take_fixed(rows, slabs)
            if taken is not None:
                return self._viewed(*taken)
        elif slabs is not None and self.kind in _SCANNED and self.kind != _RAW:
            offset_type = np.dtype(np.int64 if self.wide else np.int32)
            offsets = slabs[0].take((rows + 1) * offset_type.itemsize)
            data = slabs[1].take(size)
            if offsets is not None and data is not None:
                # The NULL mask only serves to build the validity bitmap: the heap will do.
                return offsets.view(offset_type), data, np.empty(rows, np.bool_)
        buffers = _buffers(self.kind, rows, size, wide=self.wide)
        if buffers is not None and self.values is not None:
            return buffers[0].view(self.values), buffers[1]
        return buffers


class _Slab:
    """Buffers for one column's pages, cut one after another from anonymous mappings.

    A frame keeps each page's arrays until it joins them into one array per column. Page
    buffers from the C heap would stay in the process once freed (glibc keeps such
    medium blocks), so the join would need the frame's size a second time. Buffers cut
    from mappings give their memory back to the system when a joined column lets go of
    its pages. A mapping is released when every array cut from it is gone.
    """

    __slots__ = ("region", "used")

    def __init__(self) -> None:
        self.region: Any = None
        self.used = 0

    def take(self, nbytes: int) -> Any:
        """Return ``nbytes`` of fresh memory as uint8, or None to use the heap instead."""
        # Each buffer starts on a 64-byte boundary, as numpy and Arrow like them.
        step = (nbytes + 63) & ~63
        region = self.region
        if region is None or self.used + step > len(region):
            region = _mapping(max(step, _SLAB_BYTES))
            if region is None:
                return None
            self.region, self.used = region, 0
        start = self.used
        self.used = start + step
        return region[start : start + nbytes]


class _FixedBlock:
    """The fixed-width columns of a read whose pages all end up in one frame.

    Each column's values, and its NULL mask, go into one large reservation of address
    space (the kernel only backs what is written), and fill() writes every page right
    after the one before (its ``first_row``): a page costs no Python per fixed-width
    column, and joining the pages is a view of the rows written (:func:`join_adjacent`),
    with no copy and no second frame's worth of memory.
    """

    __slots__ = (
        "ahead_rows",
        "capacity",
        "codecs",
        "kinds",
        "mappings",
        "masks",
        "outs",
        "plans",
        "populated",
        "schema",
        "used",
        "values",
    )

    def __init__(self, layout: _Layout, positions: list[int]) -> None:
        self.schema = layout.schema
        self.kinds = layout.kinds
        self.plans = {position: layout.plans[position] for position in positions}
        self.codecs = dict(zip(layout.schema.positions, layout.schema.codecs, strict=True))
        widest = max(self.plans[position].values.itemsize for position in positions)
        #: Rows every column has room for, and rows backed with memory ahead at most.
        self.capacity = _RESERVED_BYTES // widest
        self.ahead_rows = _POPULATED_AHEAD // widest
        #: Rows written so far, and rows backed with memory ahead of the writes.
        self.used = 0
        self.populated = 0
        self.values: dict[int, Any] = {}
        self.masks: dict[int, Any] = {}
        #: Each column's values mapping, and where the values start in it.
        self.mappings: list[tuple[Any, int, int]] = []
        #: fill()'s outs with this block's columns in place; the others are set per page.
        self.outs: list[tuple[Any, ...] | None] = [None] * len(layout.kinds)

    @classmethod
    def reserve(cls, layout: _Layout) -> _FixedBlock | None:
        """Return a block for ``layout``'s fixed-width columns, or None (none, or no room)."""
        positions = [
            position
            for position, plan in layout.plans.items()
            if plan.joined and plan.values is not None
        ]
        if not positions:
            return None
        block = cls(layout, positions)
        for position in positions:
            width = block.plans[position].values.itemsize
            values = _reservation(block.capacity * width)
            mask = _reservation(block.capacity)
            if values is None or mask is None:
                return None
            block.values[position] = values[0]
            block.masks[position] = mask[0]
            block.mappings.append((values[1], values[2], width))
            # The mask is fresh zeroed memory: fill() writes only the NULLs (and its pages
            # are never backed for a column without them).
            block.outs[position] = (values[0], mask[0], True)
        return block

    def fits(self, layout: _Layout, rows: int) -> bool:
        """Whether a page of ``rows`` rows decoded with ``layout`` goes into this block."""
        return (
            layout.schema is self.schema
            and layout.kinds == self.kinds
            and self.used + rows <= self.capacity
        )

    def take(self, rows: int) -> int:
        """Make room for the next ``rows`` rows; return the first of them."""
        first = self.used
        self.used = end = first + rows
        if end > self.populated:
            # One call that backs the next rows with memory costs less than a page fault
            # for every 4 KiB of them while the decoder writes. Backing as many rows again
            # as the read has so far, up to a few hundred KiB of the widest column, keeps
            # both the calls and the memory backed beyond the last row few.
            ahead = end + min(max(end, _POPULATED_AHEAD_ROWS_MIN), self.ahead_rows)
            ahead = min(ahead, self.capacity)
            for mapping, skip, width in self.mappings:
                _populate(mapping, skip + self.populated * width, skip + ahead * width)
            self.populated = ahead
        return first

    def array(self, position: int, start: int, rows: int, nulls: int) -> Column:
        """Build the array of ``rows`` rows of a column from row ``start`` on: a view."""
        plan = self.plans[position]
        width = plan.values.itemsize
        decoded = _Decoded(
            rows,
            nulls,
            (
                self.values[position][start * width : (start + rows) * width],
                self.masks[position][start : start + rows],
            ),
            None,
            self.codecs[position],
            (),
            None,
        )
        return plan.build(plan.typed(decoded))


class _Piece:
    """A page's fixed-width column in a joined read: rows of its block."""

    __slots__ = ("block", "nulls", "position", "rows", "start")

    def __init__(
        self, block: _FixedBlock, position: int, start: int, rows: int, nulls: int
    ) -> None:
        self.block = block
        self.position = position
        self.start = start
        self.rows = rows
        self.nulls = nulls

    def __len__(self) -> int:
        return self.rows

    def array(self) -> Column:
        """Build this page's array alone (a view of the block)."""
        return self.block.array(self.position, self.start, self.rows, self.nulls)


def _reservation(nbytes: int) -> tuple[Any, Any, int] | None:
    """Reserve ``nbytes`` of address space for a column: its uint8 view, the mapping, and
    where the view starts in it; None if no mapping is left."""
    region = _mapping(nbytes + 4096, populate=False)
    if region is None:
        return None
    # Mappings start on page boundaries: start each column's data at another offset within
    # the page, or the same row of every column would fall in one set of the CPU cache,
    # which then keeps evicting them.
    _stagger[0] = skip = (_stagger[0] + 7 * 64) % 4096
    return region[skip : skip + nbytes], region.base.obj, skip


def _populate(mapping: Any, start: int, end: int) -> None:
    """Back bytes ``start`` to ``end`` of ``mapping`` with memory, if the kernel can."""
    if not _populating[0]:
        return
    first = start & ~4095
    try:
        mapping.madvise(_MADV_POPULATE_WRITE, first, end - first)
    except (OSError, AttributeError, ValueError):
        _populating[0] = False  # a kernel before 5.14


_MADV_POPULATE_WRITE: Final = 23
#: Rows a joined read backs with memory beyond those it writes, at least; and bytes of its
#: widest fixed-width column, at most: little beside a frame, however many columns it has.
_POPULATED_AHEAD_ROWS_MIN: Final = 4096
_POPULATED_AHEAD: Final = 256 * 1024
_populating = [True]
_SLAB_BYTES: Final = 256 * 1024
#: Address space reserved per column buffer of a joined read: pages of memory are only
#: used as rows are written, and a column that outgrows it goes on in a new reservation.
_RESERVED_BYTES: Final = 1 << 30
_stagger = [0]
#: Pages smaller than this stay on the heap: a mapping would cost more than it saves.
_SLAB_MIN_ROWS: Final = 1024
_MAPPINGS_MAX: Final = 16_384
_mappings = [0]


def _unmapped() -> None:
    _mappings[0] -= 1


def _mapping(nbytes: int, *, populate: bool = True) -> Any:
    """Return an anonymous mapping of ``nbytes`` as a uint8 array, or None if none is left."""
    import mmap

    import numpy as np

    # The kernel caps how many mappings a process has; stay far below it.
    if _mappings[0] >= _MAPPINGS_MAX:
        return None
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if populate:
        # Faulting the pages in with the mapping is cheaper than one fault per page later.
        flags |= getattr(mmap, "MAP_POPULATE", 0)
    try:
        mapping = mmap.mmap(-1, nbytes, flags=flags)
    except OSError:
        return None
    _mappings[0] += 1
    weakref.finalize(mapping, _unmapped)
    return np.frombuffer(mapping, np.uint8)


def _buffers(kind: int, rows: int, size: int, *, wide: bool = False) -> tuple[Any, ...] | None:
    """Return fill()'s output buffers for a column of a C kind: values as plain bytes."""
    import numpy as np

    width = _WIDTHS.get(kind)
    if width is not None:
        return np.empty(rows * width, np.uint8), np.empty(rows, np.bool_)
    if kind in _SCANNED and kind != _RAW:
        return (
            np.empty(rows + 1, np.int64 if wide else np.int32),
            np.empty(size, np.uint8),
            np.empty(rows, np.bool_),
        )
    if kind == _RAW:
        return (bytearray(size),)
    return None


_RAW: Final = -1 if _native is None else _native.K_RAW
#: Bytes per value of the fixed-width kinds.
_WIDTHS: Final[dict[int, int]] = (
    {}
    if _native is None
    else {
        _native.K_FIX1: 1,
        _native.K_FIX2: 2,
        _native.K_FIX4: 4,
        _native.K_FIX8: 8,
        _native.K_BOOL: 1,
        _native.K_DATE: 4,
        _native.K_DATE_SECONDS: 8,
        _native.K_UUID: 16,
    }
)
#: Kinds whose buffers are sized by a scan of the page first.
_SCANNED: Final = (
    frozenset()
    if _native is None
    else frozenset(
        {_native.K_UTF8, _native.K_ASCII, _native.K_BLOB, _native.K_UUID_TEXT, _native.K_RAW}
    )
)


def _plans() -> tuple[dict[str, tuple[Any, _Plan]], dict[str, tuple[Any, _Plan]]]:
    """Return, per CQL kind, (dtype, plan) for each dtype backend: what is decoded in C."""
    import numpy as np
    import pandas as pd

    c = _native
    assert c is not None
    nat = np.iinfo(np.int64).min

    def masked(array_type: Any) -> Build:
        def build(d: _Decoded) -> Column:
            assert d.buffers is not None
            return array_type(d.buffers[0], d.buffers[1])  # type: ignore[no-any-return]

        return build

    def ticks(d: _Decoded) -> np.ndarray[Any, Any]:
        """Return a column's int64 ticks, with NaT's where its NULLs are."""
        assert d.buffers is not None
        values: np.ndarray[Any, Any] = d.buffers[0]
        if d.nulls:
            values[d.buffers[1]] = nat
        return values

    utc_millis = pd.DatetimeTZDtype("ms", "UTC")

    def timestamps(d: _Decoded) -> Column:
        # Integers are read as instants in UTC: the array views them, where localizing
        # datetime64 values to UTC would copy them.
        return cast("Column", pd.array(ticks(d), dtype=utc_millis, copy=False))

    def dates(d: _Decoded) -> Column:
        # C writes seconds since the epoch, and NaT for NULL.
        assert d.buffers is not None
        return cast("Column", d.buffers[0].view("M8[s]"))

    def times(d: _Decoded) -> Column:
        return ticks(d).view("m8[ns]")

    def from_objects(d: _Decoded) -> Column:
        assert d.objects is not None
        return d.codec.to_array(d.objects)

    def fixed(kind: int, values: Any, build: Build) -> _Plan:
        # Every fixed-width array, Arrow's too (it wraps the values buffer), views the
        # buffers C writes: they come from slabs, and a joined read builds one array over
        # all its pages.
        return _Plan(kind, build, values=np.dtype(values), kept=True, joined=True)

    integers = masked(pd.arrays.IntegerArray)
    floats = masked(pd.arrays.FloatingArray)
    pyarrow = _pa() is not None
    storage: Literal["python", "pyarrow"] = "pyarrow" if pyarrow else "python"
    string_dtype = pd.StringDtype(storage, na_value=pd.NA)
    if pyarrow:
        text = _Plan(c.K_UTF8, _large_strings, wide=True, kept=True)
        ascii_text = _Plan(c.K_ASCII, _large_strings, wide=True, kept=True)
    else:
        text = _Plan(c.K_UTF8_OBJ, from_objects)
        ascii_text = _Plan(c.K_ASCII_OBJ, from_objects)
    objects = np.dtype(object)
    uuids = _Plan(c.K_UUID_OBJ, from_objects)
    numpy_plans: dict[str, tuple[Any, _Plan]] = {
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
        "blob": (objects, _Plan(c.K_BLOB_OBJ, from_objects)),
        "uuid": (objects, uuids),
        "timeuuid": (objects, uuids),
    }
    if not pyarrow:
        return numpy_plans, {}
    pa = _pa()

    def arrow(arrow_type: Any, kind: int, values: Any) -> tuple[Any, _Plan]:
        return pd.ArrowDtype(arrow_type), fixed(kind, values, _arrow_fixed)

    def arrow_varlen(arrow_type: Any, kind: int) -> tuple[Any, _Plan]:
        return pd.ArrowDtype(arrow_type), _Plan(kind, _arrow_strings, kept=True)

    arrow_plans: dict[str, tuple[Any, _Plan]] = {
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


def _validity(d: _Decoded) -> Any:
    if not d.nulls:
        return None
    import numpy as np

    assert d.buffers is not None
    return _pa().py_buffer(np.packbits(~d.buffers[-1], bitorder="little"))


def _arrow_fixed(d: _Decoded) -> Column:
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


def _arrow_varlen(d: _Decoded, arrow_type: Any) -> Any:
    assert d.buffers is not None
    offsets, data, _ = d.buffers
    pa = _pa()
    return pa.Array.from_buffers(
        arrow_type,
        d.rows,
        [_validity(d), pa.py_buffer(offsets), pa.py_buffer(data)],
        null_count=d.nulls,
    )


def _arrow_strings(d: _Decoded) -> Column:
    import pandas as pd

    return pd.arrays.ArrowExtensionArray(_arrow_varlen(d, d.codec.dtype.pyarrow_dtype))


def _large_strings(d: _Decoded) -> Column:
    import pandas as pd

    return pd.arrays.ArrowStringArray(_arrow_varlen(d, _pa().large_string()))


def _driver_values(d: _Decoded) -> Column:
    assert d.buffers is not None
    assert d.page is not None
    try:
        values = d.page.decode_cells(d.buffers[0], d.metadata)
    except Exception as exc:
        # The driver's deserializers fail in many ways on bytes that are not their type.
        raise ValueError(f"column {d.metadata[2]!r}: {exc}") from exc
    return d.codec.to_array(values)


_PLANS: tuple[dict[str, tuple[Any, _Plan]], dict[str, tuple[Any, _Plan]]] | None = None
_BY_DRIVER: Final = _Plan(_RAW, _driver_values)


def _plan(cqltype: Any, codec: ColumnCodec) -> _Plan:
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


class _Layout:
    """How a page's columns are decoded for one schema: kinds, and plans by position."""

    __slots__ = ("kinds", "plans", "scan", "schema")

    def __init__(self, schema: FrameSchema, types: Sequence[Any]) -> None:
        if schema.positions and max(schema.positions) >= len(types):
            raise ValueError(
                f"the page has {len(types)} columns; the frame wants column {max(schema.positions)}"
            )
        self.schema = schema
        self.plans: dict[int, _Plan] = {}
        kinds = bytearray(len(types))
        for position, codec in zip(schema.positions, schema.codecs, strict=True):
            if position not in self.plans:
                plan = _plan(types[position], codec)
                self.plans[position] = plan
                kinds[position] = plan.kind
        self.kinds = bytes(kinds)
        self.scan = any(plan.kind in _SCANNED for plan in self.plans.values())


#: Recent layouts by schema and column types: pages of one result share one.
_LAYOUTS: dict[tuple[int, tuple[str, ...]], _Layout] = {}
_MAX_LAYOUTS: Final = 64


def _layout(schema: FrameSchema, types: Sequence[Any]) -> _Layout:
    # A parameterized type is a new class on every page; its name says what it is.
    key = (id(schema), tuple(t.__name__ for t in types))
    layout = _LAYOUTS.get(key)
    if layout is None or layout.schema is not schema:
        layout = _Layout(schema, types)
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


def decode_page(page: WirePage, schema: FrameSchema) -> list[Column]:
    """Decode a raw page into one array per schema column; raise ValueError if malformed."""
    source = page.source
    if source is None:
        return _decode_page(page, schema)
    with source.claim(page):
        return _decode_page(page, schema)


def _decode_page(page: WirePage, schema: FrameSchema) -> list[Column]:
    import numpy as np

    c = _native
    if c is None:
        raise RuntimeError("the native page decoder is not available")
    metadata = page.column_metadata
    layout = _layout(schema, [column[3] for column in metadata])
    rows = len(page)
    body, start = page.body, page.rows_start
    if layout.scan:
        scanned, _, sizes = c.scan(body, start, layout.kinds, rows)
        if scanned != rows:
            raise ValueError(f"the page holds {scanned} rows, not {rows}")
    else:
        # Every cell takes 4 bytes at least: a row count beyond that is a lie, and would
        # allocate before fill() finds the page too short.
        if rows * 4 * len(metadata) > len(body) - start - 4:
            raise ValueError(f"truncated page: {rows} rows cannot fit in its bytes")
        sizes = None
    plans = layout.plans
    source = page.source
    state = None if source is None else _state_of(source)
    joined = state is not None and state.joined
    block = _block(state, layout, rows)
    if block is not None:
        first_row = block.take(rows)
        outs = block.outs.copy()
    else:
        first_row = 0
        outs = [None] * len(metadata)
    # Buffers the frame keeps come from slabs (see _Slab) for every page of a joined read,
    # the short last one too, and for the big pages of any other read.
    slabs = state.slabs if state is not None and (joined or rows >= _SLAB_MIN_ROWS) else None
    for position, plan in plans.items():
        if outs[position] is not None:
            continue  # in the block
        slab = None
        if slabs is not None and plan.kept:
            slab = slabs.get(position)
            if slab is None:
                slab = slabs[position] = (_Slab(), _Slab())
        outs[position] = plan.allocate(rows, 0 if sizes is None else sizes[position], slab)
    objects, nulls = c.fill(body, start, layout.kinds, rows, outs, first_row)
    arrays: list[Column] = []
    built: set[int] = set()
    for position, codec in zip(schema.positions, schema.codecs, strict=True):
        if block is not None and position in block.values:
            piece = _Piece(block, position, first_row, rows, nulls[position])
            if position in built:
                # The same result column twice: never let two frame columns share memory.
                arrays.append(piece.array().copy())
            else:
                # Built once for the whole frame by join_adjacent, not once per page.
                built.add(position)
                arrays.append(cast("Column", piece))
            continue
        plan = plans[position]
        decoded = _Decoded(
            rows,
            nulls[position],
            outs[position],
            objects[position],
            codec,
            metadata[position],
            page,
        )
        array = plan.build(decoded)
        if position in built:
            array = array.copy()
        elif joined and isinstance(array, np.ndarray) and array.dtype == object:
            assert state is not None
            run = state.runs.get(position)
            if run is None:
                run = state.runs[position] = _ObjectRun()
            array = cast("Column", _InRun(run, run.append(array), rows))
        built.add(position)
        arrays.append(array)
    return arrays


def _block(state: _ReadState | None, layout: _Layout, rows: int) -> _FixedBlock | None:
    """Return the block a joined read's page writes its fixed-width columns into, if any."""
    if state is None or not state.joined:
        return None
    block = state.block
    if block is None:
        block = state.block = _FixedBlock.reserve(layout) or False
    if block is False:
        return None
    assert isinstance(block, _FixedBlock)
    return block if block.fits(layout, rows) else None


class NativeDecoder:
    """Decode raw pages in C; hand pages of ready rows to a row-wise decoder."""

    def __init__(self, rows_decoder: PageDecoder) -> None:
        self._rows_decoder = rows_decoder

    def decode(self, rows: Sequence[Sequence[Any]], schema: FrameSchema) -> list[Column]:
        """Decode ``rows`` into columns of the schema's dtypes, each ``len(rows)`` long."""
        if not isinstance(rows, WirePage) or not rows:
            return self._rows_decoder.decode(rows, schema)
        try:
            decoded = rows.decoded
            if decoded is None or decoded[0] is not schema:
                return decode_page(rows, schema)
            rows.decoded = None
            columns: list[Column] | Exception = decoded[1]
            if isinstance(columns, Exception):
                raise columns
            return columns
        except ValueError as exc:
            raise CassandraError(f"could not decode a result page: {exc}") from exc

    def decode_for_join(
        self, rows: Sequence[Sequence[Any]], schema: FrameSchema, *, ahead: bool = False
    ) -> list[Column]:
        """Decode a page of a result whose pages are all joined into one frame.

        The result's fixed-width columns are then written end to end, so that
        :func:`join_adjacent` joins them without a copy. With ``ahead``, the result's next
        pages are decoded as they arrive (every page must then be read whole, in order).
        """
        source = rows.source if isinstance(rows, WirePage) else None
        if source is not None:
            _state_of(source).joined = True
        columns = self.decode(rows, schema)
        if ahead and source is not None:
            _decode_ahead(source, schema)
        return columns

    def decoded_ahead(self, rows: Sequence[Sequence[Any]]) -> bool:
        """Whether ``rows`` was decoded on the driver's thread when it arrived (every later
        page of its result then is too); ask before :meth:`decode` takes the columns."""
        return isinstance(rows, WirePage) and rows.decoded is not None


class _ObjectRun:
    """A joined read's object column: its pages' values one after another in one array.

    Kept as an array per page until the join, an object column would need its pointers
    twice at the end (the pages' arrays and the joined one), and the pages' memory, freed
    to the C heap, would stay in the process. This array instead grows in place as pages
    come (a large block is remapped, not copied) and is cut to its length at the join:
    the frame's column is this array.
    """

    __slots__ = ("used", "values")

    def __init__(self) -> None:
        self.values: np.ndarray[Any, Any] | None = None
        self.used = 0

    def append(self, page: np.ndarray[Any, Any]) -> int:
        """Copy a page's values after the others; return where they start."""
        import numpy as np

        start = self.used
        end = start + len(page)
        if self.values is None:
            self.values = np.empty(max(end, _RUN_FIRST_ROWS), object)
        elif end > len(self.values):
            # Growing by a quarter at a time keeps the room written ahead (numpy zeroes
            # what an object array grows by) to a quarter of the column at most.
            self.values.resize(max(end, len(self.values) * 5 // 4), refcheck=False)
        self.values[start:end] = page
        self.used = end
        return start

    def take(self) -> np.ndarray[Any, Any]:
        """Return the column, as long as its values: the run holds nothing more."""
        values = self.values
        assert values is not None
        self.values = None
        # No view of it has been handed out (a page's own array is a copy), so it may
        # be cut in place.
        values.resize(self.used, refcheck=False)
        return values


#: Rows a joined read's object column makes room for at first.
_RUN_FIRST_ROWS: Final = 1 << 16


class _InRun:
    """A page's object column in a joined read: where its values lie in the run."""

    __slots__ = ("rows", "run", "start")

    def __init__(self, run: _ObjectRun, start: int, rows: int) -> None:
        self.run = run
        self.start = start
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def array(self) -> Column:
        """Return this page's values as an array of their own."""
        values = self.run.values
        assert values is not None
        return cast("Column", values[self.start : self.start + self.rows].copy())


def _join_run(chunks: Sequence[Any]) -> Column | None:
    """Return the run that holds exactly ``chunks``, in order, else None."""
    run = chunks[0].run
    end = 0
    for chunk in chunks:
        if type(chunk) is not _InRun or chunk.run is not run or chunk.start != end:
            return None
        end += chunk.rows
    if end != run.used or run.values is None:
        return None
    return cast("Column", run.take())


def built(chunks: Sequence[Column]) -> list[Column]:
    """Return ``chunks`` with every page still pending built into its array."""
    return [
        chunk.array() if isinstance(chunk, _Piece | _InRun) else chunk
        for chunk in cast(Sequence[Any], chunks)
    ]


def _root(array: np.ndarray[Any, Any]) -> Any:
    """Return the array whose memory ``array`` views (itself if it owns its memory)."""
    import numpy as np

    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _adjacent(arrays: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any] | None:
    """Return one view of 1-d arrays that lie end to end in one buffer, else None."""
    import numpy as np

    first = arrays[0]
    root = _root(first)
    if root.dtype != np.uint8 or root.ndim != 1 or not root.flags.c_contiguous:
        return None
    start = end = first.__array_interface__["data"][0]
    for array in arrays:
        if (
            array.dtype != first.dtype
            or array.ndim != 1
            or not array.flags.c_contiguous
            or array.__array_interface__["data"][0] != end
            or _root(array) is not root
        ):
            return None
        end += array.nbytes
    offset = start - root.__array_interface__["data"][0]
    joined: np.ndarray[Any, Any] = root[offset : offset + end - start].view(first.dtype)
    return joined


def join_adjacent(chunks: Sequence[Column]) -> Column | None:
    """Join a column's pages without copying when they lie end to end; else return None.

    Pages decoded with ``decode_for_join`` do, for their fixed-width columns, which are
    still rows of a block then: their one array is built here. A single page is itself.
    """
    import numpy as np
    import pandas as pd

    first: Any = chunks[0]
    if isinstance(first, _InRun):
        return _join_run(cast(Sequence[Any], chunks))
    if isinstance(first, _Piece):
        return _join_pieces(cast(Sequence[Any], chunks))
    if any(isinstance(chunk, _Piece) for chunk in cast(Sequence[Any], chunks)):
        return None  # built into arrays first, then joined by a copy
    if len(chunks) == 1:
        return cast("Column", first)
    if isinstance(first, np.ndarray):
        return _adjacent(cast(Sequence[Any], chunks))
    masked = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)
    if not isinstance(first, masked) or any(type(chunk) is not type(first) for chunk in chunks):
        return None
    parts = cast(Sequence[Any], chunks)
    values = _adjacent([chunk._data for chunk in parts])
    mask = _adjacent([chunk._mask for chunk in parts]) if values is not None else None
    if values is None or mask is None:
        return None
    return type(first)(values, mask)


def _join_pieces(chunks: Sequence[Any]) -> Column | None:
    """Build one array over a column's pages when they are one run of rows of its block."""
    first: _Piece = chunks[0]
    block, position = first.block, first.position
    end = first.start
    nulls = 0
    for chunk in chunks:
        if (
            type(chunk) is not _Piece
            or chunk.block is not block
            or chunk.position != position
            or chunk.start != end
        ):
            return None
        end += chunk.rows
        nulls += chunk.nulls
    return block.array(position, first.start, end - first.start, nulls)


def page_decoder(rows_decoder: PageDecoder) -> PageDecoder:
    """Return the native decoder in front of ``rows_decoder``, or it alone without one."""
    return rows_decoder if _native is None else NativeDecoder(rows_decoder)
