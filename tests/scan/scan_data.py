"""The scan tests' tables and rows, and loading them once with the plain driver.

Each ring (one node, three nodes) has its own keyspace, created with IF NOT EXISTS and
loaded only when a table's row count is not already right, so reruns start at once.

- ``skewed``: three huge partitions next to thousands of small ones, with NULLs and
  several column types;
- ``single``: one partition;
- ``empty``: no rows;
- ``edges``: blob keys made to hash exactly onto the ring's tokens, the boundaries that
  ``split_ring`` draws for ``EDGE_SPLITS``, one token either side of each, and the ends
  of the ring (including a key whose raw hash is -2**63, which Cassandra puts at 2**63-1).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cassandra import OperationTimedOut, ReadTimeout
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import RoundRobinPolicy

from cassnb._scan.ranges import MAX_TOKEN, MIN_TOKEN, routing_key, split_ring

NODE_KEYSPACE = "cassnb_scan_node"
TRIO_KEYSPACE = "cassnb_scan_trio"

#: Huge partitions: HUGE_ROWS rows in each of partitions 0 .. HUGE_PARTITIONS-1.
HUGE_PARTITIONS = 3
HUGE_ROWS = 4_000
#: Small partitions: p = HUGE_PARTITIONS .. + SMALL_PARTITIONS-1, with 1 to 3 rows each.
SMALL_PARTITIONS = 4_000
SINGLE_ROWS = 2_500
#: The split count whose range boundaries the edges table has keys on.
EDGE_SPLITS = 8

_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def _small_rows(p: int) -> int:
    return 1 + p % 3


SKEWED_ROWS = HUGE_PARTITIONS * HUGE_ROWS + sum(
    _small_rows(p) for p in range(HUGE_PARTITIONS, HUGE_PARTITIONS + SMALL_PARTITIONS)
)


def schema(keyspace: str, replication_factor: int) -> list[str]:
    """Return the DDL of a scan keyspace and its tables."""
    return [
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}",
        f"CREATE TABLE IF NOT EXISTS {keyspace}.skewed (p int, c int, v text, x bigint, "
        "d double, ts timestamp, u uuid, l list<int>, b blob, PRIMARY KEY (p, c))",
        f"CREATE TABLE IF NOT EXISTS {keyspace}.single (p int, c int, v text, PRIMARY KEY (p, c))",
        f"CREATE TABLE IF NOT EXISTS {keyspace}.empty (p int PRIMARY KEY, v text)",
        f"CREATE TABLE IF NOT EXISTS {keyspace}.edges (k blob PRIMARY KEY, t bigint)",
    ]


def skewed_rows() -> Iterator[tuple[Any, ...]]:
    """Yield the skewed table's rows: (p, c, v, x, d, ts, u, l, b)."""
    partitions = [(p, HUGE_ROWS) for p in range(HUGE_PARTITIONS)] + [
        (p, _small_rows(p)) for p in range(HUGE_PARTITIONS, HUGE_PARTITIONS + SMALL_PARTITIONS)
    ]
    for p, rows in partitions:
        for c in range(rows):
            n = p * 10_000 + c
            yield (
                p,
                c,
                f"v{p}-{c}" if n % 11 else None,
                n * 1_000_003 if n % 7 else None,
                n / 8 if n % 5 else None,
                _EPOCH + dt.timedelta(seconds=n),
                uuid.UUID(int=n),
                [c, p] if n % 4 else None,
                n.to_bytes(4, "big"),
            )


def single_rows() -> Iterator[tuple[int, int, str]]:
    """Yield the single-partition table's rows: (p, c, v)."""
    for c in range(SINGLE_ROWS):
        yield 7, c, f"only {c}"


def edge_tokens(ring: Iterable[int]) -> dict[bytes, int]:
    """Return the edge keys, each with the token Cassandra gives it."""
    ring = sorted(ring)
    points = {MIN_TOKEN + 1, MIN_TOKEN + 2, MAX_TOKEN - 1, MAX_TOKEN}
    for token_range in split_ring(ring, EDGE_SPLITS):
        points.update({token_range.end - 1, token_range.end, token_range.end + 1})
    for token in ring:
        points.update({token - 1, token, token + 1})
    keys = {routing_key(t): t for t in points if MIN_TOKEN < t <= MAX_TOKEN}
    # Murmur3 may hash a key to -2**63; Cassandra moves such a key to 2**63-1.
    keys[routing_key(MIN_TOKEN)] = MAX_TOKEN
    return keys


@dataclass(frozen=True)
class ScanData:
    """Where a ring's scan tables live, and what they hold."""

    contact_points: list[str]
    port: int
    keyspace: str
    ring: list[int]
    edges: dict[bytes, int]
    skewed_rows: int = SKEWED_ROWS
    single_rows: int = SINGLE_ROWS


def driver_cluster(contact_points: list[str], port: int, policy: Any = None) -> Cluster:
    """Return a plain driver cluster that spreads requests round robin unless told otherwise."""
    profile = ExecutionProfile(
        load_balancing_policy=policy or RoundRobinPolicy(), request_timeout=60
    )
    return Cluster(
        contact_points,
        port=port,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )


def count(session: Session, keyspace: str, table: str) -> int:
    """Count a table's rows, trying again if nodes just started are too slow to answer."""
    for attempt in range(3):
        try:
            return int(session.execute(f"SELECT count(*) FROM {keyspace}.{table}").one()[0])
        except (ReadTimeout, OperationTimedOut):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _fill(session: Session, cql: str, rows: Iterable[tuple[Any, ...]]) -> None:
    results = execute_concurrent_with_args(
        session, session.prepare(cql), list(rows), concurrency=64, raise_on_first_error=True
    )
    assert all(result.success for result in results)


def load(contact_points: list[str], port: int, keyspace: str, replication_factor: int) -> ScanData:
    """Create a scan keyspace and load whatever table is not complete; return where it is."""
    cluster = driver_cluster(contact_points, port)
    try:
        session = cluster.connect()
        for statement in schema(keyspace, replication_factor):
            session.execute(statement)
        cluster.control_connection.wait_for_schema_agreement()
        ring = sorted(int(token.value) for token in cluster.metadata.token_map.ring)
        edges = edge_tokens(ring)
        if count(session, keyspace, "skewed") != SKEWED_ROWS:
            _fill(
                session,
                f"INSERT INTO {keyspace}.skewed (p, c, v, x, d, ts, u, l, b) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                skewed_rows(),
            )
        if count(session, keyspace, "single") != SINGLE_ROWS:
            _fill(
                session, f"INSERT INTO {keyspace}.single (p, c, v) VALUES (?, ?, ?)", single_rows()
            )
        if count(session, keyspace, "empty") != 0:
            session.execute(f"TRUNCATE {keyspace}.empty")
        if count(session, keyspace, "edges") != len(edges):
            session.execute(f"TRUNCATE {keyspace}.edges")
            _fill(session, f"INSERT INTO {keyspace}.edges (k, t) VALUES (?, ?)", edges.items())
        return ScanData(list(contact_points), port, keyspace, ring, edges)
    finally:
        cluster.shutdown()


def skewed_keys() -> set[tuple[int, int]]:
    """Return the skewed table's primary keys."""
    return {(row[0], row[1]) for row in skewed_rows()}
