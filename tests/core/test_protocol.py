"""Protocol v5 or nothing: refused at construction, negotiated at connect, checked after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _core_data import KEYSPACE, Data
from _simulacron import v4_node

from cassnb import AsyncCluster, ConfigurationError, ConnectionError


@pytest.fixture(scope="module")
def v4_only_server() -> Iterator[tuple[str, int]]:
    """A Simulacron node: a CQL server that speaks protocol v4 at most."""
    with v4_node() as address:
        yield address


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
    v4_only_server: tuple[str, int], protocol_version: int | None, says: str
) -> None:
    host, port = v4_only_server
    cluster = AsyncCluster([host], port, protocol_version=protocol_version, connect_timeout=2)
    try:
        with pytest.raises(ConnectionError) as caught:
            await cluster.connect()
    finally:
        await cluster.shutdown()
    message = str(caught.value)
    assert says in message
    assert "Cassandra 4.0" in message
