"""The benchmark table: ten mixed columns, loaded once with concurrent inserts and reused.

A table holds one row count (``frames_<rows>``); a marker row written after a complete
load, and a count, tell a finished table from one a run left half-loaded.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import RoundRobinPolicy
from cassandra.query import SimpleStatement

KEYSPACE = "cassnb_bench"
COLUMNS = (
    "i int PRIMARY KEY, b bigint, d double, t text, ts timestamp, flag boolean, "
    "u uuid, dt date, sparse int, li list<int>"
)
_EPOCH_MS = 1_600_000_000_000
_CHUNK = 20_000


def connect(
    contact_points: list[str], port: int, *, timeout: float = 120.0, row_factory: Any = None
) -> Cluster:
    """Return a driver cluster with long request timeouts, and ``row_factory`` for its sessions."""
    options: dict[str, Any] = {} if row_factory is None else {"row_factory": row_factory}
    profile = ExecutionProfile(
        load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout, **options
    )
    return Cluster(
        contact_points,
        port=port,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )


def table_name(rows: int) -> str:
    """Return the qualified name of the table that holds ``rows`` rows."""
    return f"{KEYSPACE}.frames_{rows}"


def row(i: int) -> tuple[Any, ...]:
    """Return row ``i``: the same values on every load."""
    return (
        i,
        i * 1_000_003,
        i / 7,
        f"name-{i % 1000}-{i}",
        _EPOCH_MS + i * 1000,
        i % 2 == 0,
        uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % (1 << 128)),
        dt.date(1990, 1, 1) + dt.timedelta(days=i % 20_000),
        i if i % 10 == 0 else None,  # nine rows in ten are NULL
        [i, i + 1, i + 2],
    )


def _rows(count: int) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, count, _CHUNK):
        yield [row(i) for i in range(start, min(start + _CHUNK, count))]


def _loaded(session: Session, rows: int) -> bool:
    marker = session.execute(
        f"SELECT rows FROM {KEYSPACE}.loaded WHERE name = %s", (table_name(rows),)
    ).one()
    if marker is None or marker.rows != rows:
        return False
    # Counted by paging through the keys: count(*) over a million rows can outlast the
    # server's own range-read timeout on a small machine.
    keys = session.execute(SimpleStatement(f"SELECT i FROM {table_name(rows)}", fetch_size=10_000))
    return sum(1 for _ in keys) == rows


def ensure_table(contact_points: list[str], port: int, rows: int) -> str:
    """Create and load the table of ``rows`` rows unless a complete one exists; return it."""
    cluster = connect(contact_points, port)
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.loaded (name text PRIMARY KEY, rows int)"
        )
        name = table_name(rows)
        session.execute(f"CREATE TABLE IF NOT EXISTS {name} ({COLUMNS})")
        if _loaded(session, rows):
            print(f"reusing {name} ({rows:,} rows)", flush=True)
            return name
        print(f"loading {rows:,} rows into {name} ...", flush=True)
        session.execute(f"TRUNCATE {name}")
        insert = session.prepare(
            f"INSERT INTO {name} (i, b, d, t, ts, flag, u, dt, sparse, li) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        started = time.monotonic()
        done = 0
        for chunk in _rows(rows):
            for ok, result in execute_concurrent_with_args(
                session, insert, chunk, concurrency=256, raise_on_first_error=False
            ):
                if not ok:
                    raise RuntimeError(f"loading {name} failed: {result}")
            done += len(chunk)
            if done % 100_000 == 0 or done == rows:
                rate = done / (time.monotonic() - started)
                print(f"  {done:,} rows ({rate:,.0f} rows/s)", flush=True)
        session.execute(f"INSERT INTO {KEYSPACE}.loaded (name, rows) VALUES (%s, %s)", (name, rows))
        if not _loaded(session, rows):
            raise RuntimeError(f"{name} does not hold {rows:,} rows after loading")
        return name
    finally:
        cluster.shutdown()
