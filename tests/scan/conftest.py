"""Fixtures for the scan tests: the scan tables on one node and on three, and sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _keyspaces import connected
from scan_data import NODE_KEYSPACE, TRIO_KEYSPACE, ScanData, load

from cassnb import AsyncSession
from cassnb.local import ClusterInfo


@pytest.fixture(scope="session")
def node_data(node: ClusterInfo) -> ScanData:
    """The scan tables on the single node (replication factor 1), loaded once."""
    return load(list(node.contact_points), node.port, NODE_KEYSPACE, 1)


@pytest.fixture(scope="session")
def trio_data(three_nodes: ClusterInfo) -> ScanData:
    """The scan tables on the three nodes (replication factor 1: one owner per range)."""
    return load(list(three_nodes.contact_points), three_nodes.port, TRIO_KEYSPACE, 1)


@pytest.fixture
async def node_session(node_data: ScanData) -> AsyncIterator[AsyncSession]:
    """A session on the single node's scan keyspace."""
    async with connected(node_data.contact_points, node_data.port, node_data.keyspace) as session:
        yield session


@pytest.fixture
async def trio_session(trio_data: ScanData) -> AsyncIterator[AsyncSession]:
    """A session on the three nodes' scan keyspace."""
    async with connected(trio_data.contact_points, trio_data.port, trio_data.keyspace) as session:
        yield session
