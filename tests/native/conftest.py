"""Fixtures for the native decoder against the node: tables, sessions, and a switch that
runs the very same reads through the pure-Python path.

The Python path is what cassnb does without the compiled module: streams use the
driver's ordinary handler and frames the type table's ColumnwiseDecoder.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import RoundRobinPolicy

from cassnb import _columnar, _frames, local
from cassnb._types import ColumnwiseDecoder

T = TypeVar("T")

KEYSPACE = "cassnb_native_test"

#: Every CQL type of the type table: (column, CQL type).
TYPED_COLUMNS: list[tuple[str, str]] = [
    ("c_ascii", "ascii"),
    ("c_text", "text"),
    ("c_varchar", "varchar"),
    ("c_tinyint", "tinyint"),
    ("c_smallint", "smallint"),
    ("c_int", "int"),
    ("c_bigint", "bigint"),
    ("c_varint", "varint"),
    ("c_float", "float"),
    ("c_double", "double"),
    ("c_decimal", "decimal"),
    ("c_boolean", "boolean"),
    ("c_timestamp", "timestamp"),
    ("c_date", "date"),
    ("c_time", "time"),
    ("c_duration", "duration"),
    ("c_uuid", "uuid"),
    ("c_timeuuid", "timeuuid"),
    ("c_inet", "inet"),
    ("c_blob", "blob"),
    ("c_list", "list<int>"),
    ("c_set", "set<text>"),
    ("c_map", "map<text, bigint>"),
    ("c_tuple", "tuple<int, text, timestamp>"),
    ("c_frozen", "frozen<map<text, frozen<list<int>>>>"),
    ("c_nested", "list<frozen<set<date>>>"),
    ("c_udt", "point"),
    ("c_vector", "vector<float, 3>"),
]

SCHEMA = [
    f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    f'CREATE TYPE IF NOT EXISTS {KEYSPACE}.point (x int, "Label" text, tags frozen<list<text>>)',
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.types (p int, k int, "
    + ", ".join(f"{name} {cql}" for name, cql in TYPED_COLUMNS)
    + ", PRIMARY KEY (p, k))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.counters (k int PRIMARY KEY, c counter)",
]


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
    for statement in SCHEMA:
        session.execute(statement, timeout=60)
    session.set_keyspace(KEYSPACE)
    try:
        yield session
    finally:
        cluster.shutdown()


class LoopThread:
    """An event loop on its own thread, so that sync tests (hypothesis) can await on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        """Stop and close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


@dataclass
class Remote:
    """A cassnb session living on a LoopThread."""

    session: Any
    thread: LoopThread

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the session's loop and return its result."""
        return self.thread.run(coroutine, timeout)


@pytest.fixture(scope="session")
def remote(node: local.ClusterInfo, driver: Session) -> Iterator[Remote]:
    """A cassnb session on the test keyspace, on a loop of its own."""
    from cassnb import AsyncCluster

    thread = LoopThread()

    async def open_session() -> tuple[Any, Any]:
        cluster = AsyncCluster(list(node.contact_points), port=node.port)
        return cluster, await cluster.connect(KEYSPACE)

    cluster, session = thread.run(open_session())
    try:
        yield Remote(session, thread)
    finally:
        thread.run(session.close())
        thread.run(cluster.shutdown())
        thread.close()


@contextmanager
def python_path() -> Iterator[None]:
    """Run reads as cassnb does without the compiled decoder."""
    native, decoder = _columnar._native, _frames.page_decoder
    _columnar._native = None  # type: ignore[misc]
    _frames.page_decoder = ColumnwiseDecoder()
    try:
        yield
    finally:
        _columnar._native = native  # type: ignore[misc]
        _frames.page_decoder = decoder


class DecodeSpy:
    """Counts the pages and rows the compiled decoder decoded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pages = 0
        self.rows = 0
        original = _columnar.decode_page

        def spy(page: Any, schema: Any) -> Any:
            self.pages += 1
            self.rows += len(page)
            return original(page, schema)

        monkeypatch.setattr(_columnar, "decode_page", spy)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> DecodeSpy:
    """Count what the compiled decoder decodes during a test."""
    return DecodeSpy(monkeypatch)
