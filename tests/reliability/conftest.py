"""Fixtures for the reliability suite: a loop-error check and the single-node keyspace.

Every test runs against real nodes started (or reused) by the fixtures of
``tests/conftest.py``; the three-node scenarios carry the ``cluster3`` mark and run in
their own pytest session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cassnb import AsyncCluster
from cassnb.local import ClusterInfo

KEYSPACE = "cassnb_rel"

#: Rows in the table the stream scenarios read: 20 partitions of 250 rows.
STREAM_PARTITIONS = 20
STREAM_ROWS_PER_PARTITION = 250
STREAM_ROWS = STREAM_PARTITIONS * STREAM_ROWS_PER_PARTITION

_SCHEMA = [
    f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.stream_rows (p int, c int, v text, PRIMARY KEY (p, c))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.writes (run text, k int, v text, PRIMARY KEY (run, k))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.kv (k text PRIMARY KEY, v int)",
]


async def _prepare(node: ClusterInfo) -> None:
    async with AsyncCluster(node.contact_points, node.port) as cluster:
        session = await cluster.connect()
        for statement in _SCHEMA:
            await session.execute(statement, timeout=60)
        counted = await session.execute(f"SELECT count(*) FROM {KEYSPACE}.stream_rows")
        row = counted.one()
        if row is None or row[0] != STREAM_ROWS:
            insert = await session.prepare(
                f"INSERT INTO {KEYSPACE}.stream_rows (p, c, v) VALUES (?, ?, ?)"
            )
            limit = asyncio.Semaphore(256)

            async def one(p: int, c: int) -> None:
                async with limit:
                    await session.execute(insert, (p, c, f"row {p}-{c}"))

            await asyncio.gather(
                *(
                    one(p, c)
                    for p in range(STREAM_PARTITIONS)
                    for c in range(STREAM_ROWS_PER_PARTITION)
                )
            )
        await session.close()


@pytest.fixture(scope="session")
def rel_node(node: ClusterInfo) -> ClusterInfo:
    """The plain node, with the keyspace ``cassnb_rel`` and its tables loaded."""
    asyncio.run(_prepare(node))
    return node


@pytest.fixture(autouse=True)
async def no_loop_errors() -> AsyncIterator[None]:
    """Fail a test when its loop's exception handler was called."""
    loop = asyncio.get_running_loop()
    caught: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: caught.append(context))
    yield
    loop.set_exception_handler(None)
    assert not caught, f"the loop's exception handler caught: {caught}"
