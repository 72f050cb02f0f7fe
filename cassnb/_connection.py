"""The driver's connection, with a cheaper way from the socket to whole response frames.

From protocol v5 on, the server wraps every response frame in segments of at most 128 KiB,
each with a CRC24 of its header and a CRC32 of its payload. The driver reads sockets 4 KiB
at a time into one buffer and, for every segment, copies the payload into a second
buffer and the rest of the first buffer into a fresh one; a multi-MB result page goes
through thousands of small reads and a copy of the unread input per segment.

:class:`SegmentReader` checks the segments where they lie in the read buffer, notes where
their payloads are, and copies each frame body out once, when its last byte has arrived.
:func:`connection_class` returns the reactor class the driver would use, with that reader
and 64 KiB socket reads. Compressed segments (LZ4, when the ``lz4`` package is there) and
protocols before v5 keep the driver's own path.
"""

from __future__ import annotations

import functools
import io
import zlib
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
from cassandra.segment import CRC32_INITIAL, compute_crc24

__all__ = ["SegmentReader", "connection_class"]

#: Bytes read from the socket per call: a page arrives in tens of reads, not thousands.
READ_SIZE: Final = 64 * 1024
# An uncompressed segment: 3 bytes of header (payload length, self-contained flag), a
# CRC24 of them, the payload, and a CRC32 of the payload, all little-endian.
_SEGMENT_HEADER: Final = 6
_SEGMENT_TRAILER: Final = 4
_PAYLOAD_LENGTH_MASK: Final = 0x1FFFF
# A frame: version, flags, stream id, opcode, body length; big-endian.
_FRAME_HEADER: Final = 1 + frame_header_v3.size


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

    def read(self, buffer: io.BytesIO, endpoint: Any) -> tuple[list[tuple[Any, bytes]], io.BytesIO]:
        """Return the complete frames in ``buffer`` as ``(header, body)``, and the buffer
        the reactor should write to next (``buffer``, or a new one holding the rest).

        Raise ``CrcMismatchException`` or ``ProtocolError`` for corrupt input.
        """
        view = buffer.getbuffer()
        try:
            size = len(view)
            self._check_segments(view, size, endpoint)
            frames = self._frames(view)
            spans = self._spans
            keep = spans[0][0] if spans else self._next_segment
        finally:
            # Every slice of the view is gone by now, so the buffer can grow again.
            view.release()
        if keep >= size:
            self._spans.clear()
            self._next_segment = 0
            return frames, io.BytesIO()
        if keep == 0:
            return frames, buffer
        # Start a new buffer with the unread rest: the read bytes before it are freed.
        buffer.seek(keep)
        rest = io.BytesIO()
        rest.write(buffer.read())
        self._spans = deque((start - keep, end - keep) for start, end in self._spans)
        self._next_segment -= keep
        return frames, rest

    def _check_segments(self, view: memoryview, size: int, endpoint: Any) -> None:
        at = self._next_segment
        spans = self._spans
        while size - at >= _SEGMENT_HEADER:
            header = int.from_bytes(view[at : at + 3], "little")
            if compute_crc24(header, 3) != int.from_bytes(view[at + 3 : at + 6], "little"):
                raise CrcMismatchException(f"CRC mismatch on segment header {header:x}", endpoint)
            length = header & _PAYLOAD_LENGTH_MASK
            start = at + _SEGMENT_HEADER
            end = start + length
            if size - end < _SEGMENT_TRAILER:
                break
            expected = int.from_bytes(view[end : end + _SEGMENT_TRAILER], "little")
            if zlib.crc32(view[start:end], CRC32_INITIAL) != expected:
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

    def process_io_buffer(self) -> None:
        """Hand every complete frame in the read buffer to ``process_msg``."""
        reader = self._segments
        if reader is None:
            reader = self._segments = SegmentReader()
        io_buffer = self._io_buffer
        if (
            not self._is_checksumming_enabled
            or self._segment_codec is not segment_codec_no_compression
            or (
                reader.idle
                and (self._current_frame is not None or io_buffer._cql_frame_buffer.tell())
            )
        ):
            # Before v5 framing starts, with compression, or while the driver is halfway
            # through a frame it started before the switch.
            super().process_io_buffer()  # type: ignore[misc]
            return
        try:
            frames, io_buffer._io_buffer = reader.read(io_buffer._io_buffer, self.endpoint)
        except Exception as exc:
            self.defunct(exc)
            return
        for header, body in frames:
            self.process_msg(header, body)

    if TYPE_CHECKING:
        # The driver's Connection, which this class is mixed into, has these.
        def defunct(self, exc: BaseException) -> None: ...

        def process_msg(self, header: Any, body: bytes) -> None: ...


@functools.cache
def connection_class(base: type[Any] | None = None) -> type[Any]:
    """Return ``base`` (default: the reactor the driver picked) reading with SegmentReader."""
    base = DefaultConnection if base is None else base
    return type(base.__name__, (_SegmentReading, base), {"__module__": __name__})
