"""Fixtures for the core tests: a keyspace with shared tables, clusters and sessions.

The shared tables are created once per test session and loaded only when their row count
is not already right, so a rerun against a running node starts at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _core_data import (
    BIG_PARTITIONS,
    BIG_ROWS,
    BIG_ROWS_PER_PARTITION,
    KEYSPACE,
    PAGED_ROWS,
    SCHEMA,
    Data,
    insert_concurrently,
)

from cassnb import AsyncCluster, AsyncSession
from cassnb._registry import open_counts
from cassnb.local import ClusterInfo


async def _count(session: AsyncSession, table: str) -> int:
    result = await session.execute(f"SELECT count(*) FROM {KEYSPACE}.{table}", timeout=60)
    row = result.one()
    assert row is not None
    return int(row[0])


async def _prepare_data(node: ClusterInfo) -> None:
    async with (
        AsyncCluster(node.contact_points, node.port) as cluster,
        cluster.connect() as session,
    ):
        for statement in SCHEMA:
            await session.execute(statement, timeout=60)
        if await _count(session, "paged") != PAGED_ROWS:
            await insert_concurrently(
                session,
                f"INSERT INTO {KEYSPACE}.paged (p, c, v) VALUES (?, ?, ?)",
                [(0, c, f"value {c}") for c in range(PAGED_ROWS)],
            )
        if await _count(session, "big") != BIG_ROWS:
            started = time.perf_counter()
            await insert_concurrently(
                session,
                f"INSERT INTO {KEYSPACE}.big (p, c, v) VALUES (?, ?, ?)",
                [
                    (p, c, f"row {p}-{c}")
                    for p in range(BIG_PARTITIONS)
                    for c in range(BIG_ROWS_PER_PARTITION)
                ],
            )
            print(f"loaded {BIG_ROWS} rows in {time.perf_counter() - started:.1f} s")


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


@pytest.fixture(autouse=True)
async def no_loop_errors() -> AsyncIterator[None]:
    """Fail a test when its loop's exception handler was called."""
    loop = asyncio.get_running_loop()
    caught: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: caught.append(context))
    yield
    loop.set_exception_handler(None)
    assert not caught, f"the loop's exception handler caught: {caught}"


@pytest.fixture
def no_leftover_streams() -> Iterator[None]:
    """Fail a test that leaves a stream open."""
    yield
    assert open_counts().streams == 0
