"""Fixtures for the frames tests: a keyspace with one table per purpose, and sessions.

The tables are created once per test session with the plain driver, which is also what
the tests use to write reference values and to look at what a write left behind
(``writetime``, ``TTL``): the code under test never checks itself.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import RoundRobinPolicy
from cassandra.query import UNSET_VALUE
from frames_reference import KEYSPACE, ROWS, TYPED_COLUMNS

from cassnb import local

_SCHEMA = [
    f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    f"CREATE TYPE IF NOT EXISTS {KEYSPACE}.address "
    '(street text, "Zip" int, tags frozen<list<text>>)',
    *(
        f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.{table} (k int PRIMARY KEY, "
        + ", ".join(f"{name} {cql}" for name, cql in TYPED_COLUMNS)
        + ")"
        for table in ("types", "types_copy", "types_arrow_copy")
    ),
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.counters (k int PRIMARY KEY, c counter, c2 counter)",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.wide (p int, c int, v text, PRIMARY KEY (p, c))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.writes (k int PRIMARY KEY, i int, b bigint, "
    "d double, f float, t text, ts timestamp, dt date, tm time, du duration, u uuid, "
    "flag boolean, l list<int>, m map<text, int>, dec decimal)",
    f'CREATE TABLE IF NOT EXISTS {KEYSPACE}."MixedTable" '
    '("Key" int, "Clustering" int, "MixedCase" text, "has space" int, lower int, '
    '"quote""d" text, PRIMARY KEY ("Key", "Clustering"))',
]


_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every async test here on the session's loop, where the shared session lives."""
    for item in items:
        function = getattr(item, "function", None)
        if item.path.parent == _HERE and inspect.iscoroutinefunction(function):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"))


def _cluster(node: local.ClusterInfo) -> Cluster:
    return Cluster(
        list(node.contact_points),
        port=node.port,
        protocol_version=5,
        execution_profiles={
            EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
        },
    )


@pytest.fixture(scope="session")
def driver(node: local.ClusterInfo) -> Iterator[Session]:
    """A plain driver session with the frames keyspace and tables in place."""
    cluster = _cluster(node)
    session = cluster.connect()
    for statement in _SCHEMA:
        session.execute(statement)
    session.set_keyspace(KEYSPACE)
    try:
        yield session
    finally:
        cluster.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def session(node: local.ClusterInfo, driver: Session) -> AsyncIterator[Any]:
    """A cassnb session on the frames keyspace, shared by the whole test session."""
    from cassnb import AsyncCluster

    async with (
        AsyncCluster(list(node.contact_points), port=node.port) as cluster,
        await cluster.connect(KEYSPACE) as connected,
    ):
        yield connected


@pytest.fixture(scope="session")
def reference_rows(driver: Session) -> dict[int, dict[str, Any]]:
    """Write the reference rows into ``types`` with the plain driver, once."""
    names = [name for name, _ in TYPED_COLUMNS]
    insert = driver.prepare(
        f"INSERT INTO types (k, {', '.join(names)}) VALUES (?, {', '.join('?' for _ in names)})"
    )
    driver.execute("TRUNCATE types")
    for key, row in ROWS.items():
        driver.execute(insert, [key, *(row.get(name, UNSET_VALUE) for name in names)])
    return ROWS
