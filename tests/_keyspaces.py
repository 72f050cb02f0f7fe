"""Sessions on the test nodes, and each suite's keyspace kept there: its schema applied,
its tables loaded once.

Schemas create with IF NOT EXISTS and a table is loaded only when its row count is not
already right, so a rerun against a running node starts at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from cassnb import AsyncCluster, AsyncSession
from cassnb.local import ClusterInfo


@asynccontextmanager
async def connected(
    contact_points: Sequence[str], port: int, keyspace: str | None = None
) -> AsyncIterator[AsyncSession]:
    """Yield a session on ``keyspace``; close it and shut its cluster down afterwards."""
    async with (
        AsyncCluster(contact_points, port) as cluster,
        cluster.connect(keyspace) as session,
    ):
        yield session


@asynccontextmanager
async def schema_session(node: ClusterInfo, schema: Sequence[str]) -> AsyncIterator[AsyncSession]:
    """Run every statement of ``schema`` on ``node``, then yield the session."""
    async with connected(node.contact_points, node.port) as session:
        for statement in schema:
            await session.execute(statement, timeout=60)
        yield session


async def count_rows(session: AsyncSession, table: str, *, request_timeout: float = 60) -> int:
    """Count a table's rows on the server."""
    row = (await session.execute(f"SELECT count(*) FROM {table}", timeout=request_timeout)).one()
    assert row is not None
    return int(row[0])


def grid_rows(partitions: int, per_partition: int) -> list[tuple[int, int, str]]:
    """Return rows (p, c, "row p-c") of a (p int, c int, v text) table, p and c from 0."""
    return [(p, c, f"row {p}-{c}") for p in range(partitions) for c in range(per_partition)]


async def load_once(
    session: AsyncSession,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> bool:
    """Insert ``rows`` unless ``table`` already holds as many; return whether it loaded.

    The rows go through one prepared statement, at most 256 at a time.
    """
    if await count_rows(session, table) == len(rows):
        return False
    markers = ", ".join("?" for _ in columns)
    insert = await session.prepare(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({markers})")
    limit = asyncio.Semaphore(256)

    async def one(values: tuple[Any, ...]) -> None:
        async with limit:
            await session.execute(insert, values)

    await asyncio.gather(*(one(values) for values in rows))
    return True
