"""Fixtures for the native decoder against the node: tables, sessions, and a spy on the
compiled decoder. What the tests share besides fixtures lives in _native_node.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import _native_node as shared
import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import RoundRobinPolicy

from cassnb import local


@pytest.fixture(scope="session")
def driver(node: local.ClusterInfo) -> Iterator[Session]:
    """A plain driver session with the keyspace and tables in place."""
    cluster = Cluster(
        list(node.contact_points),
        port=node.port,
        protocol_version=5,
        execution_profiles={
            EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
        },
    )
    session = cluster.connect()
    for statement in shared.SCHEMA:
        session.execute(statement, timeout=60)
    session.set_keyspace(shared.KEYSPACE)
    try:
        yield session
    finally:
        cluster.shutdown()


@pytest.fixture(scope="session")
def remote(node: local.ClusterInfo, driver: Session) -> Iterator[shared.Remote]:
    """A cassnb session on the test keyspace, on a loop of its own."""
    from cassnb import AsyncCluster

    thread = shared.LoopThread()

    async def open_session() -> tuple[Any, Any]:
        cluster = AsyncCluster(list(node.contact_points), port=node.port)
        return cluster, await cluster.connect(shared.KEYSPACE)

    cluster, session = thread.run(open_session())
    try:
        yield shared.Remote(session, thread)
    finally:
        thread.run(session.close())
        thread.run(cluster.shutdown())
        thread.close()


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> shared.DecodeSpy:
    """Count what the compiled decoder decodes during a test."""
    return shared.DecodeSpy(monkeypatch)


@pytest.fixture(scope="session")
def reference(driver: Any) -> None:
    """The reference rows in partition 0 (the table is emptied first)."""
    driver.execute("TRUNCATE types", timeout=60)
    shared.insert_rows(driver, 0, [shared.ROWS[key] for key in sorted(shared.ROWS)])
