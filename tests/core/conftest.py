"""Fixtures for the core tests: a keyspace with shared tables, clusters and sessions.

The shared tables are created once per test session and loaded only when their row count
is not already right, so a rerun against a running node starts at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from _core_data import (
    BIG_PARTITIONS,
    BIG_ROWS_PER_PARTITION,
    KEYSPACE,
    PAGED_ROWS,
    SCHEMA,
    Data,
)
from _keyspaces import grid_rows, load_once, schema_session
from _loop_checks import no_loop_errors as no_loop_errors  # autouse for every test here

from cassnb import AsyncCluster, AsyncSession
from cassnb._core.registry import open_counts
from cassnb.local import ClusterInfo


async def _prepare_data(node: ClusterInfo) -> None:
    async with schema_session(node, SCHEMA) as session:
        await load_once(
            session,
            f"{KEYSPACE}.paged",
            ["p", "c", "v"],
            [(0, c, f"value {c}") for c in range(PAGED_ROWS)],
        )
        started = time.perf_counter()
        big = grid_rows(BIG_PARTITIONS, BIG_ROWS_PER_PARTITION)
        if await load_once(session, f"{KEYSPACE}.big", ["p", "c", "v"], big):
            print(f"loaded {len(big)} rows in {time.perf_counter() - started:.1f} s")


@pytest.fixture(scope="session")
def data(node: ClusterInfo) -> Data:
    """The keyspace ``cassnb_test`` (RF 1) and its shared tables, loaded once."""
    asyncio.run(_prepare_data(node))
    return Data(contact_points=node.contact_points, port=node.port)


@pytest.fixture
async def cluster(data: Data) -> AsyncIterator[AsyncCluster]:
    """A cluster on the plain node, shut down after the test."""
    async with AsyncCluster(data.contact_points, data.port) as cluster:
        yield cluster


@pytest.fixture
async def session(cluster: AsyncCluster) -> AsyncIterator[AsyncSession]:
    """A session on the test keyspace, closed after the test."""
    async with cluster.connect(KEYSPACE) as session:
        yield session


@pytest.fixture
def no_leftover_streams() -> Iterator[None]:
    """Fail a test that leaves a stream open."""
    yield
    assert open_counts().streams == 0
