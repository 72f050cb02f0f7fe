"""Result pages kept as the server sent them, and decoded into columns in C.

A stream's requests go through :class:`ColumnarProtocolHandler`: the driver parses each
ROWS response's metadata as usual but leaves the rows as bytes, in a :class:`RawPage`.
Whoever iterates a RawPage gets the rows the driver would have made (its own decoder runs
then, once), so ``async for row in stream`` is unchanged. The frames path instead hands
the page to :class:`NativeDecoder`, which writes each column straight into numpy or Arrow
buffers with the compiled ``cassnb._native.columnar`` and builds the type table's arrays
from them; a type it has no buffer layout for is decoded by the driver's deserializers,
one column at a time, and built by the type table's own code.

Without the compiled module (no C compiler at install time, or ``CASSNB_NO_NATIVE=1``)
streams use the driver's ordinary handler and frames the pure-Python decoder; one line on
the ``cassnb`` logger says so. Requests other than streams never use this module.

This module imports neither numpy nor pandas until a page is decoded into columns, so the
core can start requests through it.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, overload

from cassandra.cluster import _NOT_SET, EXEC_PROFILE_DEFAULT, ResponseFuture, Session
from cassandra.protocol import RESULT_KIND_ROWS, ProtocolHandler, ResultMessage

from cassnb._errors import CassandraError

if TYPE_CHECKING:
    import numpy as np

    from cassnb._types import Column, ColumnCodec, FrameSchema, PageDecoder

__all__ = [
    "ColumnarProtocolHandler",
    "NativeDecoder",
    "RawPage",
    "decode_page",
    "native_available",
    "page_decoder",
    "start_request",
]

log = logging.getLogger("cassnb")

_ABI: Final = 1


def _load_native() -> ModuleType | None:
    if os.environ.get("CASSNB_NO_NATIVE", "") not in ("", "0"):
        log.info("native page decoder disabled by CASSNB_NO_NATIVE; frames are decoded in Python")
        return None
    try:
        from cassnb._native import columnar
    except ImportError as exc:
        log.warning(
            "native page decoder not available (%s); frames are decoded in Python, "
            "several times slower: reinstall cassnb with a C compiler present",
            exc,
        )
        return None
    if getattr(columnar, "ABI", None) != _ABI:  # pragma: no cover - a stale build
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


# --- raw pages ---------------------------------------------------------------------------

#: The driver's own RESULT message class (its Cython one when compiled).
_DriverResult: Final[type[Any]] = ProtocolHandler.message_types_by_opcode[ResultMessage.opcode]
_ROW_COUNT: Final = struct.Struct(">i")


def _driver_rows(
    body: bytes | bytearray,
    start: int,
    protocol_version: int,
    user_type_map: Any,
    result_metadata: Any,
) -> list[Any]:
    """Decode rows with the driver's own code, from a ROWS body whose metadata is at start."""
    message = _DriverResult(RESULT_KIND_ROWS)
    stream = io.BytesIO(body)
    stream.seek(start)
    message.recv_results_rows(stream, protocol_version, user_type_map, result_metadata, None)
    rows = message.parsed_rows
    if rows is None:
        # Its compiled parser reports some failures by leaving no rows at all.
        raise CassandraError("the driver could not decode a result page")
    return list(rows)


class RawPage(Sequence[Any]):
    """One ROWS page whose rows are still bytes: a sequence of rows, decoded when read.

    The frames path decodes it column by column instead (:class:`NativeDecoder`).
    """

    __slots__ = (
        "_body",
        "_count",
        "_meta_start",
        "_result_metadata",
        "_rows",
        "_rows_start",
        "_user_type_map",
        "column_metadata",
        "protocol_version",
        "source",
    )

    def __init__(
        self,
        body: bytes,
        meta_start: int,
        rows_start: int,
        column_metadata: list[tuple[Any, ...]],
        protocol_version: int,
        user_type_map: Any,
        result_metadata: Any,
        count: int | None = None,
    ) -> None:
        self._body = body
        self._meta_start = meta_start
        self._rows_start = rows_start
        self.column_metadata = column_metadata
        self.protocol_version = protocol_version
        self._user_type_map = user_type_map
        self._result_metadata = result_metadata
        if count is None:
            if len(body) - rows_start < 4:
                raise CassandraError("truncated result page: no row count")
            count = _ROW_COUNT.unpack_from(body, rows_start)[0]
            if count < 0:
                raise CassandraError(f"malformed result page: {count} rows")
        self._count: int = count
        self.source: _KeepRaw | None = None
        self._rows: list[Any] | None = None

    @property
    def body(self) -> bytes:
        """The RESULT body the page was read from."""
        return self._body

    @property
    def rows_start(self) -> int:
        """Where the row count starts in the body."""
        return self._rows_start

    @property
    def column_names(self) -> list[str]:
        """The page's column names."""
        return [column[2] for column in self.column_metadata]

    @property
    def column_types(self) -> list[Any]:
        """The driver's CQL type classes of the page's columns."""
        return [column[3] for column in self.column_metadata]

    def __len__(self) -> int:
        return self._count

    def _materialize(self) -> list[Any]:
        rows = self._rows
        if rows is None:
            source = self.source
            if source is not None:
                # Someone reads this request's rows: decode its next pages as they arrive,
                # on the driver's thread, as the driver itself does.
                source.rows_wanted = True
            try:
                rows = _driver_rows(
                    self._body,
                    self._meta_start,
                    self.protocol_version,
                    self._user_type_map,
                    self._result_metadata,
                )
            except CassandraError:
                raise
            except Exception as exc:
                raise CassandraError(f"could not decode a result page: {exc}") from exc
            del rows[self._count :]
            if source is not None:
                rows = source.row_factory(self.column_names, rows)
            self._rows = rows
        return rows

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice) and self._rows is None:
            start, stop, step = index.indices(self._count)
            if start == 0 and step == 1:
                # A prefix stays raw, so a truncated last page is still decoded in columns.
                return self._prefix(max(stop, 0))
        return self._materialize()[index]

    def _prefix(self, count: int) -> RawPage:
        page = RawPage(
            self._body,
            self._meta_start,
            self._rows_start,
            self.column_metadata,
            self.protocol_version,
            self._user_type_map,
            self._result_metadata,
            count,
        )
        page.source = self.source
        return page

    def __iter__(self) -> Iterator[Any]:
        return iter(self._materialize())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RawPage | list):
            return self._materialize() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RawPage {self._count} rows, {len(self.column_metadata)} columns>"


class _RawRowsResult(_DriverResult):  # type: ignore[misc]
    """A RESULT message whose ROWS are left as a RawPage."""

    def recv_results_rows(
        self,
        f: io.BytesIO,
        protocol_version: int,
        user_type_map: Any,
        result_metadata: Any,
        column_encryption_policy: Any,
    ) -> None:
        meta_start = f.tell()
        self.recv_results_metadata(f, user_type_map)
        column_metadata = self.column_metadata or result_metadata
        self.column_names = [column[2] for column in column_metadata]
        self.column_types = [column[3] for column in column_metadata]
        self.parsed_rows = RawPage(
            f.getvalue(),
            meta_start,
            f.tell(),
            list(column_metadata),
            protocol_version,
            user_type_map,
            result_metadata,
        )


class ColumnarProtocolHandler(ProtocolHandler):  # type: ignore[misc]
    """The driver's protocol handler, with ROWS results left raw as RawPage objects."""

    message_types_by_opcode: ClassVar[dict[int, type[Any]]] = {
        **ProtocolHandler.message_types_by_opcode,
        ResultMessage.opcode: _RawRowsResult,
    }


class _KeepRaw:
    """A request's row factory: it passes RawPages through until someone reads rows.

    From then on, each page is decoded into rows when it arrives, as without this module.
    """

    __slots__ = ("row_factory", "rows_wanted")

    def __init__(self, row_factory: Callable[[list[str], list[Any]], Any]) -> None:
        self.row_factory = row_factory
        self.rows_wanted = False

    def __call__(self, column_names: list[str], rows: Any) -> Any:
        if not isinstance(rows, RawPage):
            return self.row_factory(column_names, rows)
        rows.source = self
        if self.rows_wanted:
            return rows._materialize()
        return rows


def start_request(session: Session, statement: Any, *, timeout: Any = _NOT_SET) -> ResponseFuture:
    """Send ``statement`` like ``session.execute_async``, its ROWS pages arriving as RawPage.

    Falls back to ``execute_async`` itself when pages are not decoded natively, or when
    the session decodes results its own way (a column encryption policy).
    """
    if _native is None or session.client_protocol_handler is not ProtocolHandler:
        return session.execute_async(statement, timeout=timeout)
    # execute_async's own steps, with the handler and row factory set before sending.
    future = session._create_response_future(
        statement, None, False, {}, timeout, EXEC_PROFILE_DEFAULT, None, None
    )
    future._protocol_handler = ColumnarProtocolHandler
    future.row_factory = _KeepRaw(future.row_factory)
    session._on_request(future)
    future.send_request()
    return future


# --- columns -----------------------------------------------------------------------------


class _Plan:
    """How one result column is decoded: the C kind and what builds its array."""

    __slots__ = ("build", "kind", "wide")

    def __init__(self, kind: int, build: Callable[[_Decoded], Column], wide: bool) -> None:
        self.kind = kind
        self.build = build
        # Variable-length data with int64 offsets (Arrow's large types).
        self.wide = wide


class _Decoded:
    """One column's output of the C decoder, and what its builder needs to know."""

    __slots__ = ("buffers", "codec", "metadata", "nulls", "objects", "page", "rows")

    def __init__(
        self,
        rows: int,
        nulls: int,
        buffers: tuple[Any, ...] | None,
        objects: list[Any] | None,
        codec: ColumnCodec,
        metadata: tuple[Any, ...],
        page: RawPage,
    ) -> None:
        self.rows = rows
        self.nulls = nulls
        self.buffers = buffers
        self.objects = objects
        self.codec = codec
        self.metadata = metadata
        self.page = page


def _plans() -> tuple[
    dict[str, tuple[Any, int, Callable[[_Decoded], Column]]],
    dict[str, tuple[Any, int, Callable[[_Decoded], Column]]],
]:
    """Return, per CQL kind, (dtype, C kind, builder) for each dtype backend."""
    import numpy as np
    import pandas as pd

    c = _native
    assert c is not None
    nat = np.iinfo(np.int64).min

    def values(d: _Decoded) -> Any:
        assert d.buffers is not None
        return d.buffers[0]

    def mask(d: _Decoded) -> np.ndarray[Any, np.dtype[np.bool_]]:
        assert d.buffers is not None
        return d.buffers[-1].view(bool)  # type: ignore[no-any-return]

    def masked(array_type: Any) -> Callable[[_Decoded], Column]:
        def build(d: _Decoded) -> Column:
            return array_type(values(d), mask(d))  # type: ignore[no-any-return]

        return build

    def with_nat(d: _Decoded, ticks: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if d.nulls:
            ticks[mask(d)] = nat
        return ticks

    def timestamps(d: _Decoded) -> Column:
        millis = with_nat(d, values(d)).view("M8[ms]")
        return pd.DatetimeIndex(millis, copy=False).tz_localize("UTC").array

    def dates(d: _Decoded) -> Column:
        seconds = values(d).astype(np.int64) * 86_400
        return with_nat(d, seconds).view("M8[s]")

    def times(d: _Decoded) -> Column:
        return with_nat(d, values(d)).view("m8[ns]")

    def from_objects(d: _Decoded) -> Column:
        assert d.objects is not None
        return d.codec.to_array(d.objects)

    storage: Literal["python", "pyarrow"] = "python" if _pa() is None else "pyarrow"
    string_dtype = pd.StringDtype(storage, na_value=pd.NA)
    text_kind = c.K_UTF8 if string_dtype.storage == "pyarrow" else c.K_UTF8_OBJ
    ascii_kind = c.K_ASCII if string_dtype.storage == "pyarrow" else c.K_ASCII_OBJ
    text_build = _large_strings if string_dtype.storage == "pyarrow" else from_objects

    numpy_plans: dict[str, tuple[Any, int, Callable[[_Decoded], Column]]] = {
        "tinyint": (pd.Int8Dtype(), c.K_FIX1, masked(pd.arrays.IntegerArray)),
        "smallint": (pd.Int16Dtype(), c.K_FIX2, masked(pd.arrays.IntegerArray)),
        "int": (pd.Int32Dtype(), c.K_FIX4, masked(pd.arrays.IntegerArray)),
        "bigint": (pd.Int64Dtype(), c.K_FIX8, masked(pd.arrays.IntegerArray)),
        "counter": (pd.Int64Dtype(), c.K_FIX8, masked(pd.arrays.IntegerArray)),
        "float": (pd.Float32Dtype(), c.K_FIX4, masked(pd.arrays.FloatingArray)),
        "double": (pd.Float64Dtype(), c.K_FIX8, masked(pd.arrays.FloatingArray)),
        "boolean": (pd.BooleanDtype(), c.K_BOOL, masked(pd.arrays.BooleanArray)),
        "timestamp": (pd.DatetimeTZDtype("ms", "UTC"), c.K_FIX8, timestamps),
        "date": (np.dtype("datetime64[s]"), c.K_DATE, dates),
        "time": (np.dtype("timedelta64[ns]"), c.K_FIX8, times),
        "text": (string_dtype, text_kind, text_build),
        "varchar": (string_dtype, text_kind, text_build),
        "ascii": (string_dtype, ascii_kind, text_build),
        "blob": (np.dtype(object), c.K_BLOB_OBJ, from_objects),
        "uuid": (np.dtype(object), c.K_UUID_OBJ, from_objects),
        "timeuuid": (np.dtype(object), c.K_UUID_OBJ, from_objects),
    }
    pa = _pa()
    if pa is None:
        return numpy_plans, {}

    def arrow(d: _Decoded) -> Column:
        arrow_type = d.codec.dtype.pyarrow_dtype
        data = values(d)
        if arrow_type == pa.bool_():
            data = np.packbits(data, bitorder="little")
        array = pa.Array.from_buffers(
            arrow_type, d.rows, [_validity(d), pa.py_buffer(data)], null_count=d.nulls
        )
        return pd.arrays.ArrowExtensionArray(array)

    def arrow_varlen(d: _Decoded) -> Column:
        return pd.arrays.ArrowExtensionArray(_arrow_varlen(d, d.codec.dtype.pyarrow_dtype))

    arrow_plans: dict[str, tuple[Any, int, Callable[[_Decoded], Column]]] = {
        "tinyint": (pa.int8(), c.K_FIX1, arrow),
        "smallint": (pa.int16(), c.K_FIX2, arrow),
        "int": (pa.int32(), c.K_FIX4, arrow),
        "bigint": (pa.int64(), c.K_FIX8, arrow),
        "counter": (pa.int64(), c.K_FIX8, arrow),
        "float": (pa.float32(), c.K_FIX4, arrow),
        "double": (pa.float64(), c.K_FIX8, arrow),
        "boolean": (pa.bool_(), c.K_BOOL, arrow),
        "timestamp": (pa.timestamp("ms", tz="UTC"), c.K_FIX8, arrow),
        "date": (pa.date32(), c.K_DATE, arrow),
        "time": (pa.time64("ns"), c.K_FIX8, arrow),
        "text": (pa.string(), c.K_UTF8, arrow_varlen),
        "varchar": (pa.string(), c.K_UTF8, arrow_varlen),
        "ascii": (pa.string(), c.K_ASCII, arrow_varlen),
        "blob": (pa.binary(), c.K_BLOB, arrow_varlen),
        "uuid": (pa.string(), c.K_UUID_TEXT, arrow_varlen),
        "timeuuid": (pa.string(), c.K_UUID_TEXT, arrow_varlen),
    }
    return numpy_plans, {kind: (pd.ArrowDtype(t), k, b) for kind, (t, k, b) in arrow_plans.items()}


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError:
        return None
    return pyarrow


def _large_strings(d: _Decoded) -> Column:
    import pandas as pd

    return pd.arrays.ArrowStringArray(_arrow_varlen(d, _pa().large_string()))


def _validity(d: _Decoded) -> Any:
    if not d.nulls:
        return None
    import numpy as np

    assert d.buffers is not None
    present = d.buffers[-1] == 0
    return _pa().py_buffer(np.packbits(present, bitorder="little"))


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


def _driver_values(d: _Decoded) -> Column:
    assert d.buffers is not None
    try:
        rows = _driver_rows(
            d.buffers[0], 0, d.page.protocol_version, d.page._user_type_map, [d.metadata]
        )
    except Exception as exc:
        # The driver's deserializers fail in many ways on bytes that are not their type.
        raise ValueError(f"column {d.metadata[2]!r}: {exc}") from exc
    return d.codec.to_array([row[0] for row in rows])


_PLANS: tuple[dict[str, Any], dict[str, Any]] | None = None


def _plan(cqltype: Any, codec: ColumnCodec) -> _Plan:
    """Choose how a column is decoded: natively when its dtype is the one we build."""
    global _PLANS
    import pandas as pd

    from cassnb._types import cql_kind

    if _PLANS is None:
        _PLANS = _plans()
    numpy_plans, arrow_plans = _PLANS
    kind, unwrapped = cql_kind(cqltype)
    table = arrow_plans if isinstance(codec.dtype, pd.ArrowDtype) else numpy_plans
    entry = table.get(kind)
    # A type that allows empty values to mean something other than NULL, or a dtype the
    # type table has since changed, goes through the driver and the table's own builder.
    if (
        entry is not None
        and entry[0] == codec.dtype
        and not getattr(unwrapped, "support_empty_values", False)
    ):
        return _Plan(entry[1], entry[2], entry[2] is _large_strings)
    assert _native is not None
    return _Plan(_native.K_RAW, _driver_values, False)


def _allocate(plan: _Plan, rows: int, size: int) -> tuple[Any, ...] | None:
    import numpy as np

    c = _native
    assert c is not None
    kind = plan.kind
    if kind in (c.K_FIX1, c.K_FIX2, c.K_FIX4, c.K_FIX8, c.K_DATE):
        width = {c.K_FIX1: 1, c.K_FIX2: 2, c.K_FIX4: 4, c.K_FIX8: 8, c.K_DATE: 4}[kind]
        return np.empty(rows, dtype=f"i{width}"), np.empty(rows, dtype=np.uint8)
    if kind == c.K_BOOL:
        return np.empty(rows, dtype=bool), np.empty(rows, dtype=np.uint8)
    if kind == c.K_UUID:
        return np.empty((rows, 16), dtype=np.uint8), np.empty(rows, dtype=np.uint8)
    if kind in (c.K_UTF8, c.K_ASCII, c.K_BLOB, c.K_UUID_TEXT):
        return (
            np.empty(rows + 1, dtype=np.int64 if plan.wide else np.int32),
            np.empty(size, dtype=np.uint8),
            np.empty(rows, dtype=np.uint8),
        )
    if kind == c.K_RAW:
        return (bytearray(size),)
    return None


def _reinterpret(kind: int, cqltype: Any, buffers: tuple[Any, ...] | None) -> Any:
    """Give fixed-width values their numpy type (C wrote plain integers of that width)."""
    import numpy as np

    from cassnb._types import cql_kind

    c = _native
    assert c is not None
    if buffers is None or kind not in (c.K_FIX4, c.K_FIX8):
        return buffers
    name = cql_kind(cqltype)[0]
    if name == "float":
        return (buffers[0].view(np.float32), buffers[1])
    if name == "double":
        return (buffers[0].view(np.float64), buffers[1])
    return buffers


def decode_page(page: RawPage, schema: FrameSchema) -> list[Column]:
    """Decode a raw page into one array per schema column; raise ValueError if malformed."""
    c = _native
    if c is None:
        raise RuntimeError("the native page decoder is not available")
    metadata = page.column_metadata
    if schema.positions and max(schema.positions) >= len(metadata):
        raise ValueError(
            f"the page has {len(metadata)} columns; the frame wants column {max(schema.positions)}"
        )
    kinds = bytearray(len(metadata))
    plans: dict[int, _Plan] = {}
    for position, codec in zip(schema.positions, schema.codecs, strict=True):
        if position not in plans:
            plan = _plan(metadata[position][3], codec)
            plans[position] = plan
            kinds[position] = plan.kind
    kind_bytes = bytes(kinds)
    rows, _, sizes, nulls = c.scan(page.body, page.rows_start, kind_bytes, len(page))
    if rows != len(page):
        raise ValueError(f"the page holds {rows} rows, not {len(page)}")
    buffers = {p: _allocate(plans[p], rows, sizes[p]) for p in plans}
    outs = [buffers.get(p) for p in range(len(metadata))]
    objects = c.fill(page.body, page.rows_start, kind_bytes, rows, outs)
    arrays: list[Column] = []
    built: set[int] = set()
    for position, codec in zip(schema.positions, schema.codecs, strict=True):
        plan = plans[position]
        decoded = _Decoded(
            rows,
            nulls[position],
            _reinterpret(plan.kind, metadata[position][3], buffers[position]),
            objects[position],
            codec,
            metadata[position],
            page,
        )
        array = plan.build(decoded)
        if position in built:
            # The same result column twice: never let two frame columns share memory.
            array = array.copy()
        built.add(position)
        arrays.append(array)
    return arrays


class NativeDecoder:
    """Decode raw pages in C; hand pages of ready rows to a row-wise decoder."""

    def __init__(self, rows_decoder: PageDecoder) -> None:
        self._rows_decoder = rows_decoder

    def decode(self, rows: Sequence[Sequence[Any]], schema: FrameSchema) -> list[Column]:
        """Decode ``rows`` into columns of the schema's dtypes, each ``len(rows)`` long."""
        if not isinstance(rows, RawPage) or not rows:
            return self._rows_decoder.decode(rows, schema)
        try:
            return decode_page(rows, schema)
        except ValueError as exc:
            raise CassandraError(f"could not decode a result page: {exc}") from exc


def page_decoder(rows_decoder: PageDecoder) -> PageDecoder:
    """Return the native decoder in front of ``rows_decoder``, or it alone without one."""
    return rows_decoder if _native is None else NativeDecoder(rows_decoder)
