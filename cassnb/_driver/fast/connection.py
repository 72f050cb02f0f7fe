"""The driver's connection, with a cheaper way from the socket to whole response frames.

From protocol v5 on, the server wraps every response frame in segments of at most 128 KiB,
each with a CRC24 of its header and a CRC32 of its payload. The driver reads sockets 4 KiB
at a time into one buffer and, for every segment, copies the payload into a second
buffer and the rest of the first buffer into a fresh one; a multi-MB result page goes
through thousands of small reads and a copy of the unread input per segment.

:class:`SegmentReader` checks the segments where they lie in the read buffer (a
:class:`ReadBuffer`, which keeps its capacity from frame to frame), notes where their
payloads are, and copies each frame body out once, when its last byte has arrived.
:func:`connection_class` returns the reactor class the driver would use, with that reader,
256 KiB socket reads (on the libev reactor, straight into that buffer), and requests
framed without the driver's bit-by-bit CRC24 (:class:`_UncompressedSegments`). Compressed
segments (LZ4, when the ``lz4`` package is there) and protocols before v5 keep the driver's
own path.
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from cassandra.cluster import DefaultConnection
from cassandra.connection import (
    PROTOCOL_VERSION_MASK,
    CrcMismatchException,
    ProtocolError,
    _Frame,
    frame_header_v3,
    segment_codec_no_compression,
)
from cassandra.protocol import ProtocolVersion
from cassandra.segment import CRC32_INITIAL, Segment, SegmentCodec, compute_crc24

try:
    # zlib-ng's CRC32 folds with carry-less multiplication where the CPU has it: more than
    # ten times the speed of zlib's, which would otherwise be a tenth of the CPU a page of
    # numbers costs. The same function, so zlib's serves where zlib-ng is not installed.
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - a platform without zlib-ng wheels
    from zlib import crc32

__all__ = ["ReadBuffer", "SegmentReader", "connection_class"]

#: Bytes read from the socket per call: a page arrives in a few reads, not thousands.
READ_SIZE: Final = 256 * 1024
# An uncompressed segment: 3 bytes of header (payload length, self-contained flag), a
# CRC24 of them, the payload, and a CRC32 of the payload, all little-endian.
_SEGMENT_HEADER: Final = 6
_SEGMENT_TRAILER: Final = 4
_PAYLOAD_LENGTH_MASK: Final = 0x1FFFF
# A frame: version, flags, stream id, opcode, body length; big-endian.
_FRAME_HEADER: Final = 1 + frame_header_v3.size


@functools.lru_cache(maxsize=1024)
def _header_crc(header: int) -> int:
    # The driver computes a segment header's CRC24 bit by bit in Python (a few µs); most
    # segments of a large result share one header (full length, not self-contained).
    return int(compute_crc24(header, 3))


class ReadBuffer:
    """A connection's read buffer, written by the reactor, read in place by SegmentReader.

    Unlike the driver's ``BytesIO``, which starts empty for every frame and grows by an
    eighth at a time, it keeps its capacity from one frame to the next.
    """

    __slots__ = ("data", "size")

    def __init__(self, initial: bytes = b"") -> None:
        self.data = bytearray(max(2 * READ_SIZE, len(initial)))
        self.data[: len(initial)] = initial
        #: How many bytes of ``data`` hold input.
        self.size = len(initial)

    def write(self, chunk: bytes) -> int:
        """Append ``chunk`` (as the reactors write into the driver's buffer)."""
        end = self.size + len(chunk)
        self._reserve(end)
        self.data[self.size : end] = chunk
        self.size = end
        return len(chunk)

    def receive(self, sock: socket.socket, count: int) -> int:
        """Read at most ``count`` bytes from ``sock`` straight after the held ones.

        Return how many arrived (0 at the end of the stream); ``sock.recv_into``'s errors
        pass through. Unlike ``write(sock.recv(count))``, no bytes object is made and
        copied for every read.
        """
        end = self.size + count
        self._reserve(end)
        with memoryview(self.data)[self.size : end] as free:
            received = sock.recv_into(free)
        self.size += received
        return received

    def _reserve(self, end: int) -> None:
        """Grow ``data`` to at least ``end`` bytes, at least doubling it."""
        if end > len(self.data):
            self.data.extend(bytes(max(end, 2 * len(self.data)) - len(self.data)))

    def tell(self) -> int:
        """Return how many bytes are held (the reactors' test for input)."""
        return self.size

    def getvalue(self) -> bytes:
        """Return the bytes held (the driver logs them when a frame cannot be decoded)."""
        return bytes(self.data[: self.size])

    def drop(self, count: int) -> None:
        """Forget the first ``count`` bytes, moving the rest to the front."""
        rest = self.size - count
        if rest:
            self.data[:rest] = self.data[count : self.size]
        self.size = rest
        if len(self.data) > _KEPT_CAPACITY and rest <= _KEPT_CAPACITY // 2:
            # A frame far larger than usual made it grow: give that memory back.
            del self.data[max(rest, 2 * READ_SIZE) :]


#: Capacity a read buffer keeps between frames; more is given back after a large frame.
_KEPT_CAPACITY: Final = 8 * 1024 * 1024


class SegmentReader:
    """Turns the uncompressed v5 segments of one connection's input into frames.

    The bytes stay where the reactor wrote them until a frame is complete: payloads are
    remembered as spans of the buffer, and a frame body is joined from its spans in one
    copy. Only the bytes after the last whole frame are kept for the next read.
    """

    __slots__ = ("_frame", "_next_segment", "_pending", "_spans")

    def __init__(self) -> None:
        #: ``(start, end)`` of checked payload bytes not yet handed out, in order.
        self._spans: deque[tuple[int, int]] = deque()
        #: How many bytes those spans hold.
        self._pending = 0
        #: Where the first segment not yet checked starts.
        self._next_segment = 0
        #: The header of a frame whose body has not fully arrived.
        self._frame: Any = None

    @property
    def idle(self) -> bool:
        """Whether nothing is held between reads (the driver's path may take over)."""
        return not self._spans and self._frame is None and self._next_segment == 0

    def read(self, buffer: ReadBuffer, endpoint: Any) -> list[tuple[Any, bytes]]:
        """Return the complete frames in ``buffer`` as ``(header, body)``, and drop their
        bytes from it.

        Raise ``CrcMismatchException`` or ``ProtocolError`` for corrupt input.
        """
        size = buffer.size
        view = memoryview(buffer.data)
        try:
            self._check_segments(view, size, endpoint)
            frames = self._frames(view)
        finally:
            # Every slice of the view is gone by now, so the buffer can grow again.
            view.release()
        spans = self._spans
        keep = spans[0][0] if spans else self._next_segment
        # The bytes of a frame still arriving stay where they were read: dropping the few
        # bytes before them would move all of the page that has arrived so far. Drop only
        # once what is let go is at least as much as what is moved; the buffer then holds
        # at most about twice the unread input.
        if keep and keep >= buffer.size - keep:
            buffer.drop(keep)
            self._spans = deque((start - keep, end - keep) for start, end in spans)
            self._next_segment -= keep
        return frames

    def _check_segments(self, view: memoryview, size: int, endpoint: Any) -> None:
        at = self._next_segment
        spans = self._spans
        while size - at >= _SEGMENT_HEADER:
            header = int.from_bytes(view[at : at + 3], "little")
            if _header_crc(header) != int.from_bytes(view[at + 3 : at + 6], "little"):
                raise CrcMismatchException(f"CRC mismatch on segment header {header:x}", endpoint)
            length = header & _PAYLOAD_LENGTH_MASK
            start = at + _SEGMENT_HEADER
            end = start + length
            if size - end < _SEGMENT_TRAILER:
                break
            expected = int.from_bytes(view[end : end + _SEGMENT_TRAILER], "little")
            if crc32(view[start:end], CRC32_INITIAL) != expected:
                raise CrcMismatchException("CRC mismatch on a segment payload", endpoint)
            if length:
                spans.append((start, end))
                self._pending += length
            at = end + _SEGMENT_TRAILER
        self._next_segment = at

    def _frames(self, view: memoryview) -> list[tuple[Any, bytes]]:
        frames: list[tuple[Any, bytes]] = []
        while True:
            frame = self._frame
            if frame is None:
                if self._pending < _FRAME_HEADER:
                    return frames
                frame = self._frame = _parse_frame_header(self._take(view, _FRAME_HEADER))
            body_length = frame.end_pos - frame.body_offset
            if self._pending < body_length:
                return frames
            frames.append((frame, self._take(view, body_length)))
            self._frame = None

    def _take(self, view: memoryview, count: int) -> bytes:
        """Return the next ``count`` payload bytes, which have all arrived."""
        spans = self._spans
        parts: list[memoryview] = []
        self._pending -= count
        while count:
            start, end = spans[0]
            if end - start <= count:
                spans.popleft()
            else:
                end = start + count
                spans[0] = (end, spans[0][1])
            parts.append(view[start:end])
            count -= end - start
        return b"".join(parts)


def _parse_frame_header(header: bytes) -> Any:
    version = header[0] & PROTOCOL_VERSION_MASK
    if version not in ProtocolVersion.SUPPORTED_VERSIONS:
        raise ProtocolError(
            f"This version of the driver does not support protocol version {version}"
        )
    flags, stream, opcode, body_length = frame_header_v3.unpack_from(header, 1)
    if body_length < 0:
        raise ProtocolError(f"Received negative body length: {body_length!r}")
    return _Frame(version, flags, stream, opcode, _FRAME_HEADER, _FRAME_HEADER + body_length)


class _UncompressedSegments(SegmentCodec):  # type: ignore[misc]
    """The driver's codec for uncompressed segments, writing a request's segment in one go.

    The driver frames each request (every page of a result is one) bit by bit in Python:
    the header's CRC24 alone takes several microseconds. A request that fits one segment
    is written here with the header CRC remembered and zlib-ng's CRC32; larger ones, and
    all reading, stay the driver's.
    """

    def encode(self, buffer: Any, msg: bytes) -> None:
        length = len(msg)
        if length > Segment.MAX_PAYLOAD_LENGTH:
            super().encode(buffer, msg)
            return
        header = length | _SELF_CONTAINED
        buffer.write(
            b"".join(
                (
                    header.to_bytes(3, "little"),
                    _header_crc(header).to_bytes(3, "little"),
                    msg,
                    crc32(msg, CRC32_INITIAL).to_bytes(_SEGMENT_TRAILER, "little"),
                )
            )
        )


#: The header flag of a segment that holds whole frames.
_SELF_CONTAINED: Final = 1 << SegmentCodec.FLAG_OFFSET
_UNCOMPRESSED: Final = _UncompressedSegments()


class _SegmentReading:
    """Mixed into a reactor's connection class: large reads, and a SegmentReader."""

    in_buffer_size = READ_SIZE

    _segments: SegmentReader | None = None
    # The driver's own state, declared for the type checker.
    _io_buffer: Any
    _current_frame: Any
    _is_checksumming_enabled: bool
    _segment_codec: Any
    endpoint: Any

    def _enable_checksumming(self) -> None:
        super()._enable_checksumming()  # type: ignore[misc]
        if self._segment_codec is segment_codec_no_compression:
            self._segment_codec = _UNCOMPRESSED

    def process_io_buffer(self) -> None:
        """Hand every complete frame in the read buffer to ``process_msg``."""
        reader = self._segments
        if reader is None:
            reader = self._segments = SegmentReader()
        io_buffer = self._io_buffer
        if (
            not self._is_checksumming_enabled
            or self._segment_codec is not _UNCOMPRESSED
            or (
                reader.idle
                and (self._current_frame is not None or io_buffer._cql_frame_buffer.tell())
            )
        ):
            # Before v5 framing starts, with compression, or while the driver is halfway
            # through a frame it started before the switch.
            super().process_io_buffer()  # type: ignore[misc]
            return
        buffer = io_buffer._io_buffer
        if not isinstance(buffer, ReadBuffer):
            # From now on the reactor writes into a ReadBuffer.
            buffer = io_buffer._io_buffer = ReadBuffer(buffer.getvalue())
        try:
            frames = reader.read(buffer, self.endpoint)
        except Exception as exc:
            self.defunct(exc)
            return
        for header, body in frames:
            self.process_msg(header, body)

    if TYPE_CHECKING:
        # The driver's Connection, which this class is mixed into, has these.
        def defunct(self, exc: BaseException) -> None: ...

        def process_msg(self, header: Any, body: bytes) -> None: ...


class _LibevReadingInto:
    """Mixed into the libev reactor's connection: the socket is read into the ReadBuffer.

    The reactor's own ``handle_read`` makes a bytes object per read and copies it into the
    buffer; for a page of several hundred KiB that is an allocation and a copy per read
    (about an eighth of the CPU of receiving an all-numeric page). TLS sockets, and a
    connection still on the driver's buffer, keep the reactor's way.
    """

    in_buffer_size: int
    _socket: Any
    _io_buffer: Any

    def handle_read(self, watcher: Any, revents: int, errno: int | None = None) -> None:
        buffer = self._io_buffer._io_buffer
        if (
            revents & _LIBEV_ERROR
            or not isinstance(buffer, ReadBuffer)
            or isinstance(self._socket, ssl.SSLSocket)
        ):
            super().handle_read(watcher, revents, errno)  # type: ignore[misc]
            return
        received = 0
        count = -1
        try:
            while True:
                count = buffer.receive(self._socket, self.in_buffer_size)
                received += count
                if count < self.in_buffer_size:
                    break
        except OSError as exc:
            if exc.errno not in _WOULD_BLOCK:
                self.defunct(exc)
                return
        if received:
            self.process_io_buffer()
        elif count == 0:
            # Readable, and the read found the end of the stream: the server closed it.
            self.close()

    if TYPE_CHECKING:

        def defunct(self, exc: BaseException) -> None: ...

        def process_io_buffer(self) -> None: ...

        def close(self) -> None: ...


try:
    from cassandra.io.libevreactor import NONBLOCKING as _WOULD_BLOCK
    from cassandra.io.libevreactor import LibevConnection as _LibevConnection
    from cassandra.io.libevreactor import libev as _libev

    _LIBEV_ERROR: int = _libev.EV_ERROR
except ImportError:  # the driver was built without its libev extension
    _LibevConnection = None
    _WOULD_BLOCK = frozenset()
    _LIBEV_ERROR = 0


@functools.cache
def connection_class(base: type[Any] | None = None) -> type[Any]:
    """Return ``base`` (default: the reactor the driver picked) reading with SegmentReader."""
    base = DefaultConnection if base is None else base
    mixins: tuple[type, ...] = (_SegmentReading,)
    if _LibevConnection is not None and issubclass(base, _LibevConnection):
        mixins = (_LibevReadingInto, *mixins)
    return type(base.__name__, (*mixins, base), {"__module__": __name__})
