"""Protocol v5 or nothing: refused at construction, negotiated at connect, checked after."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest
from _core_data import KEYSPACE, Data

from cassnb import AsyncCluster, ConfigurationError, ConnectionError

STUB_ADDRESS = "127.0.0.21"

_HEADER = struct.Struct(">BBhBi")
_ERROR, _STARTUP, _READY, _OPTIONS, _SUPPORTED = 0x00, 0x01, 0x02, 0x05, 0x06
_PROTOCOL_ERROR, _SERVER_ERROR = 0x000A, 0x0000


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _string_multimap(values: dict[str, list[str]]) -> bytes:
    body = struct.pack(">H", len(values))
    for key, items in values.items():
        body += _string(key) + struct.pack(">H", len(items)) + b"".join(map(_string, items))
    return body


def _frame(stream: int, opcode: int, body: bytes) -> bytes:
    return _HEADER.pack(0x84, 0, stream, opcode, len(body)) + body


def _error(stream: int, code: int, message: str) -> bytes:
    return _frame(stream, _ERROR, struct.pack(">i", code) + _string(message))


async def _serve_v4_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer like a server that speaks protocol v4 at most, and runs no queries."""
    try:
        while True:
            version, _flags, stream, opcode, length = _HEADER.unpack(
                await reader.readexactly(_HEADER.size)
            )
            await reader.readexactly(length)
            if version & 0x7F > 4:
                writer.write(
                    _error(
                        stream,
                        _PROTOCOL_ERROR,
                        f"Invalid or unsupported protocol version ({version & 0x7F}); "
                        "supported versions are (3/v3, 4/v4)",
                    )
                )
            elif opcode == _OPTIONS:
                supported = {"CQL_VERSION": ["3.4.5"], "COMPRESSION": []}
                writer.write(_frame(stream, _SUPPORTED, _string_multimap(supported)))
            elif opcode == _STARTUP:
                writer.write(_frame(stream, _READY, b""))
            else:
                writer.write(_error(stream, _SERVER_ERROR, "this stub runs no queries"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionResetError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def v4_only_server() -> AsyncIterator[int]:
    """A stub CQL server that only speaks protocol v4; yields its port."""
    server = await asyncio.start_server(_serve_v4_only, STUB_ADDRESS, 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_protocol_below_five_is_refused_at_construction(version: int) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AsyncCluster(["127.0.0.1"], protocol_version=version)
    assert str(caught.value).startswith(
        f"Protocol version {version} is not supported. cassnb requires CQL protocol v5 or higher"
    )


async def test_default_negotiates_protocol_five(data: Data) -> None:
    async with AsyncCluster(data.contact_points) as cluster, cluster.connect(KEYSPACE) as session:
        assert session.protocol_version == 5
        assert cluster.protocol_version == 5


async def test_explicit_protocol_five_works(data: Data) -> None:
    cluster = AsyncCluster(data.contact_points, protocol_version=5)
    async with cluster, cluster.connect() as session:
        assert session.protocol_version == 5


@pytest.mark.parametrize(
    ("protocol_version", "says"),
    [(None, "negotiated CQL protocol v4"), (5, "rejected CQL protocol v5")],
    ids=["negotiated", "explicit-v5"],
)
async def test_server_offering_only_v4_fails_connect(
    v4_only_server: int, protocol_version: int | None, says: str
) -> None:
    cluster = AsyncCluster(
        [STUB_ADDRESS], v4_only_server, protocol_version=protocol_version, connect_timeout=2
    )
    try:
        with pytest.raises(ConnectionError) as caught:
            await cluster.connect()
    finally:
        await cluster.shutdown()
    message = str(caught.value)
    assert says in message
    assert "Cassandra 4.0" in message
