"""Fixtures for the magics: real kernels driven through jupyter_client, and test tables.

The tables live in keyspace ``cassnb_magics_test``; the million-row table is loaded once
and reused while its row count is right. What the tests share besides fixtures lives in
_magics_kernel.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _keyspaces import count_rows, schema_session

from cassnb import AsyncSession
from cassnb.local import ClusterInfo

from ._magics_kernel import EXTENSION, KEYSPACE, Kernel

MILLION = 1_000_000
MILLION_PARTITIONS = 1_000

SCHEMA = [
    f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.million (p int, c int, v int, PRIMARY KEY (p, c))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.flights "
    "(carrier text, month int, id int, dest text, delay double, "
    "PRIMARY KEY ((carrier, month), id))",
]

FLIGHTS = [
    ("AA", 1, i, dest, float(i % 7) * 1.5)
    for i, dest in enumerate(["JFK", "LAX", "ORD", "SFO", "SEA", "BOS", "MIA", "DEN"] * 5)
] + [("UA", 2, 100 + i, "IAH", None) for i in range(7)]


async def _load_million(session: AsyncSession) -> None:
    """Load 1,000 partitions of 1,000 rows with unlogged batches, many at a time."""
    insert = await session.prepare(f"INSERT INTO {KEYSPACE}.million (p, c, v) VALUES (?, ?, ?)")
    batches = [
        [(insert, (p, c, p * 1000 + c)) for c in range(start, start + 250)]
        for p in range(MILLION_PARTITIONS)
        for start in range(0, 1000, 250)
    ]
    limit = asyncio.Semaphore(32)

    async def send(batch: list[Any]) -> None:
        from cassandra.query import BatchStatement, BatchType

        statement = BatchStatement(batch_type=BatchType.UNLOGGED)
        for prepared, values in batch:
            statement.add(prepared, values)
        async with limit:
            await session.execute(statement, timeout=60)

    await asyncio.gather(*(send(batch) for batch in batches))


async def _prepare_tables(node: ClusterInfo) -> None:
    async with schema_session(node, SCHEMA) as session:
        insert = await session.prepare(
            f"INSERT INTO {KEYSPACE}.flights (carrier, month, id, dest, delay) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        for row in FLIGHTS:
            await session.execute(insert, row)
        if await count_rows(session, f"{KEYSPACE}.million", request_timeout=120) != MILLION:
            started = time.perf_counter()
            await _load_million(session)
            print(f"loaded {MILLION:,} rows in {time.perf_counter() - started:.1f} s")


@pytest.fixture(scope="session")
def tables(node: ClusterInfo) -> ClusterInfo:
    """The magics' keyspace with its flights table and million-row table in place."""
    asyncio.run(_prepare_tables(node))
    return node


@pytest.fixture(scope="module")
def kernel(tables: ClusterInfo) -> Iterator[Kernel]:
    """A kernel with the extension loaded and connected to the plain node's keyspace."""
    started = Kernel()
    try:
        started.ok(f"%load_ext {EXTENSION}")
        started.ok(f"%cql_connect {tables.contact_points[0]} --keyspace {KEYSPACE}")
        yield started
    finally:
        started.close()


@pytest.fixture
def fresh_kernel(tables: ClusterInfo) -> Iterator[Kernel]:
    """A kernel of its own, for tests that shut it down or count its resources."""
    started = Kernel()
    try:
        yield started
    finally:
        started.close()
