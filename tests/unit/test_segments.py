"""SegmentReader against segments made by the driver's own encoder, cut into any reads."""

from __future__ import annotations

import io
import socket
import struct

import pytest
from cassandra.connection import CrcMismatchException, ProtocolError, segment_codec_no_compression
from cassandra.segment import Segment
from hypothesis import given, settings
from hypothesis import strategies as st

from cassnb._driver.fast.connection import (
    _UNCOMPRESSED,
    ReadBuffer,
    SegmentReader,
    connection_class,
)

_FRAME_HEADER = struct.Struct(">BBhBi")
_RESPONSE_V5 = 0x80 | 5


def frame(stream: int, body: bytes, opcode: int = 0x08) -> bytes:
    """A v5 response frame: header, then body."""
    return _FRAME_HEADER.pack(_RESPONSE_V5, 0, stream, opcode, len(body)) + body


def segments(*frames: bytes) -> bytes:
    """The frames cut into segments as a v5 peer does: one each, several for a large one."""
    out = io.BytesIO()
    for message in frames:
        segment_codec_no_compression.encode(out, message)
    return out.getvalue()


def read_all(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    """Feed ``data`` to a reader in reads ending at ``cuts``; return (stream, body) per frame."""
    reader = SegmentReader()
    buffer = ReadBuffer()
    got = []
    start = 0
    for end in [*sorted(cuts), len(data)]:
        buffer.write(data[start:end])
        start = end
        frames = reader.read(buffer, "here")
        got += [(header.stream, body) for header, body in frames]
    assert buffer.tell() == 0, "every byte is used"
    assert reader.idle
    return got


def body(size: int, seed: int) -> bytes:
    return bytes((seed + i * 7) % 251 for i in range(size))


def test_one_frame_in_one_read() -> None:
    assert read_all(segments(frame(3, b"hello")), []) == [(3, b"hello")]


def test_several_frames_in_one_self_contained_segment() -> None:
    data = segments(frame(1, b"a") + frame(2, b"") + frame(3, b"ccc"))
    assert read_all(data, [7, 8, 20]) == [(1, b"a"), (2, b""), (3, b"ccc")]


def test_a_frame_larger_than_a_segment_then_a_small_one() -> None:
    big = body(3 * Segment.MAX_PAYLOAD_LENGTH + 1000, 5)
    data = segments(frame(7, big), frame(8, b"next"))
    assert read_all(data, [5, 70_000, 131_075, 300_000]) == [(7, big), (8, b"next")]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300_000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 1_300_000), max_size=12),
)
def test_any_reads_give_the_same_frames(sizes: list[int], cuts: list[int]) -> None:
    frames = [frame(stream, body(size, stream)) for stream, size in enumerate(sizes)]
    data = segments(*frames)
    got = read_all(data, [cut for cut in cuts if cut < len(data)])
    assert got == [(stream, body(size, stream)) for stream, size in enumerate(sizes)]


def test_the_unread_rest_is_kept_for_the_next_read() -> None:
    first, second = segments(frame(1, b"one")), segments(frame(2, body(200_000, 1)))
    reader = SegmentReader()
    buffer = ReadBuffer()
    buffer.write(first + second[:1000])
    frames = reader.read(buffer, "here")
    assert [(h.stream, b) for h, b in frames] == [(1, b"one")]
    # The unread bytes stay; the few read before them go once dropping them is worth a move.
    assert buffer.getvalue().endswith(second[:1000])
    assert buffer.tell() <= len(first) + 1000
    buffer.write(second[1000:])
    frames = reader.read(buffer, "here")
    assert [(h.stream, b) for h, b in frames] == [(2, body(200_000, 1))]
    assert buffer.tell() == 0


def test_the_bytes_of_a_frame_still_arriving_are_not_moved() -> None:
    data = segments(frame(1, b"x"), frame(2, body(600_000, 2)))
    moved = []

    class Counting(ReadBuffer):
        def drop(self, count: int) -> None:
            moved.append(self.size - count)
            super().drop(count)

    reader = SegmentReader()
    buffer = Counting()
    got = []
    for part in (data[:500_000], data[500_000:]):
        buffer.write(part)
        got += [(header.stream, bytes(b)) for header, b in reader.read(buffer, "here")]
    assert got == [(1, b"x"), (2, body(600_000, 2))]
    assert buffer.tell() == 0
    # Dropping the first frame would have moved the 500 KB of the second one.
    assert sum(moved) < 1000


def test_the_buffer_keeps_its_capacity_and_gives_back_a_huge_one() -> None:
    buffer = ReadBuffer(b"abc")
    capacity = len(buffer.data)
    buffer.write(b"def")
    buffer.drop(2)
    assert buffer.getvalue() == b"cdef" and len(buffer.data) == capacity
    buffer.write(bytes(20 * 1024 * 1024))
    buffer.drop(buffer.tell() - 10)
    assert buffer.tell() == 10 and len(buffer.data) == capacity


@pytest.mark.parametrize(
    ("position", "flip", "part"),
    [(10, 0xFF, "payload"), (0, 0x01, "header")],
    ids=["payload", "header"],
)
def test_a_corrupt_segment_is_refused(position: int, flip: int, part: str) -> None:
    data = bytearray(segments(frame(1, b"payload")))
    data[position] ^= flip
    buffer = ReadBuffer(bytes(data))
    with pytest.raises(CrcMismatchException, match=part):
        SegmentReader().read(buffer, "here")


def test_an_unknown_protocol_version_is_refused() -> None:
    message = bytearray(frame(1, b"x"))
    message[0] = 0x80 | 0x7E
    buffer = ReadBuffer(segments(bytes(message)))
    with pytest.raises(ProtocolError, match="protocol version"):
        SegmentReader().read(buffer, "here")


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=3 * Segment.MAX_PAYLOAD_LENGTH), st.integers(0, 250))
def test_requests_are_framed_as_the_driver_frames_them(size: int, seed: int) -> None:
    message = body(size, seed)
    ours, drivers = io.BytesIO(), io.BytesIO()
    _UNCOMPRESSED.encode(ours, message)
    segment_codec_no_compression.encode(drivers, message)
    assert ours.getvalue() == drivers.getvalue()


def test_the_connection_class_keeps_the_reactor() -> None:
    from cassandra.cluster import DefaultConnection

    cls = connection_class()
    assert issubclass(cls, DefaultConnection)
    assert cls.in_buffer_size > DefaultConnection.in_buffer_size
    assert connection_class() is cls


def test_the_buffer_reads_a_socket_straight_after_what_it_holds() -> None:
    data = segments(frame(1, b"a" * 300_000), frame(2, b"b"))
    left, right = socket.socketpair()
    with left, right:
        right.setblocking(False)
        buffer = ReadBuffer(b"")
        reader = SegmentReader()
        got: list[tuple[int, bytes]] = []
        sent = 0
        while sent < len(data):
            sent += left.send(data[sent : sent + 70_000])
            while True:
                try:
                    count = buffer.receive(right, 50_000)
                except BlockingIOError:
                    break
                assert count > 0
            got += [(header.stream, body) for header, body in reader.read(buffer, "here")]
        left.close()
        assert buffer.receive(right, 50_000) == 0  # the end of the stream
    assert got == [(1, b"a" * 300_000), (2, b"b")]
    assert buffer.tell() == 0


def test_the_libev_connection_reads_into_its_buffer() -> None:
    from cassandra.io.libevreactor import LibevConnection

    cls = connection_class(LibevConnection)
    assert cls.handle_read is not LibevConnection.handle_read
    assert issubclass(cls, LibevConnection)
