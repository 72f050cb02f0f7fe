"""Fixtures for the reliability suite: a loop-error check, the single-node keyspace and a
session on it.

Every test runs against real nodes started (or reused) by the fixtures of
``tests/conftest.py``; the three-node scenarios carry the ``cluster3`` mark and run in
their own pytest session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from _keyspaces import connected, grid_rows, load_once, schema_session
from _loop_checks import no_loop_errors as no_loop_errors  # autouse for every test here
from _reliability import KEYSPACE, STREAM_PARTITIONS, STREAM_ROWS_PER_PARTITION

from cassnb import AsyncSession
from cassnb.local import ClusterInfo

_SCHEMA = [
    f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.stream_rows (p int, c int, v text, PRIMARY KEY (p, c))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.writes (run text, k int, v text, PRIMARY KEY (run, k))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.kv (k text PRIMARY KEY, v int)",
]


async def _prepare(node: ClusterInfo) -> None:
    async with schema_session(node, _SCHEMA) as session:
        rows = grid_rows(STREAM_PARTITIONS, STREAM_ROWS_PER_PARTITION)
        await load_once(session, f"{KEYSPACE}.stream_rows", ["p", "c", "v"], rows)


@pytest.fixture(scope="session")
def rel_node(node: ClusterInfo) -> ClusterInfo:
    """The plain node, with the keyspace ``cassnb_rel`` and its tables loaded."""
    asyncio.run(_prepare(node))
    return node


@pytest.fixture
async def session(rel_node: ClusterInfo) -> AsyncIterator[AsyncSession]:
    """A session on the reliability keyspace."""
    async with connected(rel_node.contact_points, rel_node.port, KEYSPACE) as session:
        yield session
