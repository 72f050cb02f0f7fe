"""Requests whose ROWS pages stay in wire form, and the driver's decoding of them.

:func:`start_request` sends a statement as ``session.execute_async`` does, but with a
protocol handler that leaves each ROWS page's rows as bytes (a :class:`RawPage`) and a
row factory (an :class:`~cassnb._driver.wire.Arrivals`) that passes them on raw. Every
page of a query repeats its column specs, which the driver parses in Python each time:
here they are parsed once and reused while their bytes stay the same.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final, overload

from cassandra.cluster import _NOT_SET, EXEC_PROFILE_DEFAULT, ResponseFuture, Session
from cassandra.protocol import RESULT_KIND_ROWS, ProtocolHandler, ResultMessage

from cassnb._driver.wire import Arrivals, PageDecodeError, WirePage

__all__ = ["RawPage", "RawPagesHandler", "driver_rows", "start_request"]

#: The driver's own RESULT message class (its Cython one when compiled).
_DriverResult: Final[type[Any]] = ProtocolHandler.message_types_by_opcode[ResultMessage.opcode]
_INT: Final = struct.Struct(">i")


def driver_rows(
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
        raise PageDecodeError("the driver could not decode a result page")
    return list(rows)


class RawPage(WirePage):
    """A ROWS page as :class:`_RawRowsResult` reads it: the body, and where its rows start."""

    __slots__ = (
        "_body",
        "_count",
        "_meta_start",
        "_result_metadata",
        "_rows",
        "_rows_start",
        "_user_type_map",
        "column_metadata",
        "decoded",
        "protocol_version",
        "raw_pending",
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
                raise PageDecodeError("truncated result page: no row count")
            count = _INT.unpack_from(body, rows_start)[0]
            if count < 0:
                raise PageDecodeError(f"malformed result page: {count} rows")
        self._count: int = count
        self.source: Arrivals | None = None
        self._rows: list[Any] | None = None
        self.decoded: Any = None
        self.raw_pending = False

    @property
    def body(self) -> bytes:
        """The RESULT body the page was read from."""
        return self._body

    @property
    def rows_start(self) -> int:
        """Where the row count starts in the body."""
        return self._rows_start

    def __len__(self) -> int:
        return self._count

    def decode_cells(self, cells: bytes | bytearray, column: tuple[Any, ...]) -> list[Any]:
        """Decode a body of one-column rows of ``column``'s type with the driver's code.

        ``cells`` is a row count and that many cells, as a ROWS body without metadata
        lays them out; the values come back in order, None for NULL.
        """
        rows = driver_rows(cells, 0, self.protocol_version, self._user_type_map, [column])
        return [row[0] for row in rows]

    def materialize(self) -> list[Any]:
        """Return the page's rows, decoded by the driver once (and by its row factory)."""
        rows = self._rows
        if rows is None:
            source = self.source
            if source is not None:
                # Someone reads this request's rows: decode its next pages as they arrive,
                # on the driver's thread, as the driver itself does.
                source.rows_wanted = True
            try:
                rows = driver_rows(
                    self._body,
                    self._meta_start,
                    self.protocol_version,
                    self._user_type_map,
                    self._result_metadata,
                )
            except PageDecodeError:
                raise
            except Exception as exc:
                raise PageDecodeError(f"could not decode a result page: {exc}") from exc
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
        return self.materialize()[index]

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
        # The prefix is decoded instead of this page.
        page.raw_pending, self.raw_pending = self.raw_pending, False
        return page

    def __iter__(self) -> Iterator[Any]:
        return iter(self.materialize())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WirePage | list):
            return self.materialize() == list(other)
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
        _read_metadata(self, f, user_type_map)
        column_metadata = self.column_metadata or result_metadata or []
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


_SPECS_FLAGS: Final = ResultMessage._FLAGS_GLOBAL_TABLES_SPEC | ResultMessage._HAS_MORE_PAGES_FLAG
_FLAGS_AND_COUNT: Final = struct.Struct(">ii")


class _Specs:
    """The column specs of the last ROWS result read, as bytes and as the driver parsed them.

    Every page of a query repeats them, and the driver parses them in Python each time
    (tens of microseconds a page, more with parameterized types). A page whose specs are
    the same bytes, read with the same user types, takes the parsed ones.
    """

    __slots__ = ("columns", "header", "raw", "user_type_map")

    def __init__(
        self, header: tuple[int, int], raw: bytes, columns: list[Any], user_type_map: Any
    ) -> None:
        self.header = header
        self.raw = raw
        self.columns = columns
        self.user_type_map = user_type_map


_last_specs: _Specs | None = None


def _read_metadata(message: Any, f: io.BytesIO, user_type_map: Any) -> None:
    """Read a ROWS result's metadata into ``message``, as ``recv_results_metadata`` does."""
    global _last_specs
    start = f.tell()
    # The message's body itself (getbuffer() would copy it).
    value = f.getvalue()
    try:
        flags, count = _FLAGS_AND_COUNT.unpack_from(value, start)
        at = start + _FLAGS_AND_COUNT.size
        paging_state = None
        if flags & ResultMessage._HAS_MORE_PAGES_FLAG:
            (length,) = _INT.unpack_from(value, at)
            paging_state = value[at + 4 : at + 4 + length]
            at += 4 + length
            if length < 0:
                flags = -1
    except struct.error:
        flags = -1
    if flags < 0 or flags & ~_SPECS_FLAGS or at > len(value):
        # Too short or malformed (the driver's own reading says what is wrong), or no
        # metadata, a metadata id, continuous paging: the driver's way, uncached.
        message.recv_results_metadata(f, user_type_map)
        return
    header = (flags & ResultMessage._FLAGS_GLOBAL_TABLES_SPEC, count)
    known = _last_specs
    if (
        known is not None
        and known.header == header
        and known.user_type_map is user_type_map
        and value.startswith(known.raw, at)
    ):
        message.paging_state = paging_state
        message.column_metadata = list(known.columns)
        f.seek(at + len(known.raw))
        return
    message.recv_results_metadata(f, user_type_map)
    columns = message.column_metadata
    if all(_without_user_types(column[3]) for column in columns):
        # A user type's class may be registered between two pages: never reused.
        _last_specs = _Specs(header, value[at : f.tell()], list(columns), user_type_map)


def _without_user_types(cqltype: Any) -> bool:
    from cassandra.cqltypes import UserType

    if isinstance(cqltype, type) and issubclass(cqltype, UserType):
        return False
    return all(_without_user_types(sub) for sub in getattr(cqltype, "subtypes", ()))


class RawPagesHandler(ProtocolHandler):  # type: ignore[misc]
    """The driver's protocol handler, with ROWS results left raw as RawPage objects."""

    message_types_by_opcode: ClassVar[dict[int, type[Any]]] = {
        **ProtocolHandler.message_types_by_opcode,
        ResultMessage.opcode: _RawRowsResult,
    }


def start_request(
    session: Session,
    statement: Any,
    *,
    timeout: Any = _NOT_SET,
    paging_state: bytes | None = None,
    trace: bool = False,
    custom_payload: Mapping[str, bytes] | None = None,
) -> ResponseFuture:
    """Send ``statement`` like ``session.execute_async``, its ROWS pages arriving as RawPage.

    Falls back to ``execute_async`` itself when the session decodes results its own way
    (a column encryption policy).
    """
    if session.client_protocol_handler is not ProtocolHandler:
        return session.execute_async(
            statement,
            trace=trace,
            custom_payload=custom_payload,
            timeout=timeout,
            paging_state=paging_state,
        )
    # execute_async's own steps, with the handler and row factory set before sending.
    future = session._create_response_future(
        statement,
        None,
        trace,
        dict(custom_payload or {}),
        timeout,
        EXEC_PROFILE_DEFAULT,
        paging_state,
        None,
    )
    future._protocol_handler = RawPagesHandler
    future.row_factory = Arrivals(future.row_factory)
    session._on_request(future)
    future.send_request()
    return future
