"""What the frames benchmarks share: their two tables, and how a read is measured.

Tables (loaded once with concurrent inserts, then reused):

- ``mixed`` (``frames_<rows>``): ten columns: int, bigint, double, text, timestamp,
  boolean, uuid, date, a NULL-heavy int (nine rows in ten NULL) and a list<int>.
- ``numeric`` (``numbers_<rows>``): ten numeric columns: int, bigint, smallint, tinyint,
  float, double, boolean, two more bigints and a NULL-heavy int.

A table holds one row count; a marker row written after a complete load, and a count,
tell a finished table from one a run left half-loaded.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import RoundRobinPolicy
from cassandra.query import UNSET_VALUE, SimpleStatement

KEYSPACE = "cassnb_bench"
_EPOCH_MS = 1_600_000_000_000
_CHUNK = 20_000
_PAGE = os.sysconf("SC_PAGE_SIZE")


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


# --- the tables ---------------------------------------------------------------------------


def mixed_row(i: int) -> tuple[Any, ...]:
    """Return row ``i`` of the mixed table: the same values on every load."""
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


def numeric_row(i: int) -> tuple[Any, ...]:
    """Return row ``i`` of the all-numeric table."""
    # NULL is left unset, not written: a written NULL is a tombstone, and the server then
    # warns about tombstones on every page.
    return (
        i,
        i * 1_000_003,
        i % 32_000,
        i % 120,
        i / 3,
        i / 7,
        i % 3 == 0,
        -i,
        i * i,
        i if i % 10 == 0 else UNSET_VALUE,
    )


@dataclass(frozen=True)
class _Table:
    prefix: str
    columns: str
    row: Callable[[int], tuple[Any, ...]]

    @property
    def names(self) -> list[str]:
        return [column.split()[0] for column in self.columns.split(", ")]


TABLES = {
    "mixed": _Table(
        "frames",
        "i int PRIMARY KEY, b bigint, d double, t text, ts timestamp, flag boolean, "
        "u uuid, dt date, sparse int, li list<int>",
        mixed_row,
    ),
    "numeric": _Table(
        "numbers",
        "i int PRIMARY KEY, b bigint, s smallint, t tinyint, f float, d double, flag boolean, "
        "b2 bigint, b3 bigint, sparse int",
        numeric_row,
    ),
}


def table_name(rows: int, table: str = "mixed") -> str:
    """Return the qualified name of the ``table`` kind that holds ``rows`` rows."""
    return f"{KEYSPACE}.{TABLES[table].prefix}_{rows}"


def _chunks(table: _Table, count: int) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, count, _CHUNK):
        yield [table.row(i) for i in range(start, min(start + _CHUNK, count))]


def _loaded(session: Session, name: str, rows: int) -> bool:
    marker = session.execute(f"SELECT rows FROM {KEYSPACE}.loaded WHERE name = %s", (name,)).one()
    if marker is None or marker.rows != rows:
        return False
    # Counted by paging through the keys: count(*) over a million rows can outlast the
    # server's own range-read timeout on a small machine.
    keys = session.execute(SimpleStatement(f"SELECT i FROM {name}", fetch_size=10_000))
    return sum(1 for _ in keys) == rows


def ensure_table(contact_points: list[str], port: int, rows: int, table: str = "mixed") -> str:
    """Create and load the ``table`` kind of ``rows`` rows unless a complete one exists."""
    spec = TABLES[table]
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
        name = table_name(rows, table)
        session.execute(f"CREATE TABLE IF NOT EXISTS {name} ({spec.columns})")
        if _loaded(session, name, rows):
            print(f"reusing {name} ({rows:,} rows)", flush=True)
            return name
        print(f"loading {rows:,} rows into {name} ...", flush=True)
        session.execute(f"TRUNCATE {name}")
        insert = session.prepare(
            f"INSERT INTO {name} ({', '.join(spec.names)}) "
            f"VALUES ({', '.join('?' for _ in spec.names)})"
        )
        started = time.monotonic()
        done = 0
        for chunk in _chunks(spec, rows):
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
        if not _loaded(session, name, rows):
            raise RuntimeError(f"{name} does not hold {rows:,} rows after loading")
        return name
    finally:
        cluster.shutdown()


# --- measuring a read -----------------------------------------------------------------------


def rss() -> int:
    """Return the process's resident memory now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def cpu() -> float:
    """Return the CPU time of the whole process (every thread), user + system, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def full_size(frame: pd.DataFrame) -> int:
    """Return the frame's size counting what object cells hold (a UUID's int, a list's items).

    ``memory_usage(deep=True)`` counts each object cell's own size only.
    """

    def cell(value: Any) -> int:
        size = sys.getsizeof(value)
        if isinstance(value, list | tuple | set):
            size += sum(cell(item) for item in value)
        elif isinstance(value, uuid.UUID):
            size += sys.getsizeof(value.int)
        return size

    total = 0
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        if column.dtype == object:
            total += column.array.nbytes + sum(cell(v) for v in column if v is not None)
        else:
            total += int(column.memory_usage(deep=True, index=False))
    return total


def _reset_peak_rss() -> bool:
    """Make the kernel count the peak RSS from now on; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _peak_rss() -> int:
    """Return the peak RSS since the last reset (since the start without one), in bytes."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Meter:
    """Measures a read from its creation (just before the read) to ``result``.

    CPU is the whole process's (driver threads included); peak RSS growth is the peak
    resident memory during the read minus the resident memory at its start. The peak is
    reset at the start where Linux allows it, so that importing and connecting, whose
    transient memory is given back before the read, do not count.
    """

    def __init__(self) -> None:
        gc.collect()
        self._rss_before = rss()
        _reset_peak_rss()
        self._cpu_before = cpu()
        self._started = time.perf_counter()

    def result(self, frame: pd.DataFrame | None = None, rows: int = 0) -> dict[str, Any]:
        """Return the measures, and the frame's sizes and dtypes when there is one."""
        wall = time.perf_counter() - self._started
        used = cpu() - self._cpu_before
        peak = _peak_rss()
        measures: dict[str, Any] = {
            "rows": rows if frame is None else len(frame),
            "cpu_s": used,
            "wall_s": wall,
            "rss_before": self._rss_before,
            "peak_growth": peak - self._rss_before,
        }
        if frame is not None:
            measures["deep"] = int(frame.memory_usage(deep=True).sum())
            measures["full"] = full_size(frame)
            measures["dtypes"] = sorted({str(dtype) for dtype in frame.dtypes})
        return measures
