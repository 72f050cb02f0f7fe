"""Client CPU and memory of read_cql with the native decoder, with the Python decoder, and of
the driver's pandas_factory recipe; each way in its own fresh process, on two tables.

    python benchmarks/frames_native.py                      # 1,000,000 rows per table
    python benchmarks/frames_native.py --rows 200000        # quicker
    python benchmarks/frames_native.py --profile mixed      # where the native read's time goes

Tables (loaded once, then reused):

- ``mixed``: the ten columns of benchmarks/frames.py: int, bigint, double, text, timestamp,
  boolean, uuid, date, a NULL-heavy int (nine rows in ten NULL) and a list<int>.
- ``numeric``: ten numeric columns: int, bigint, smallint, tinyint, float, double,
  boolean, two more bigints and a NULL-heavy int.

Ways: ``native`` is ``await read_cql("SELECT * FROM t", session)``; ``python`` is the same
with ``CASSNB_NO_NATIVE=1`` (the driver decodes rows, the type table builds the columns);
``pandas_factory`` is the driver's usual recipe, a row factory returning
``pd.DataFrame(rows, columns=colnames)``, paging with ``fetch_next_page()`` and one
``pd.concat``; ``pages only`` fetches the same pages through a cassnb stream and decodes
nothing: what the driver's network path costs, which bounds what any decoder can save.
All use the same page size (``--fetch-size``, 5,000 as read_cql).

Measured around the read only, in a process that has connected and read ten rows: client
CPU (user + sys of the whole process, driver threads included) per row; peak RSS growth
(``ru_maxrss`` minus the RSS before the read); the frame's ``memory_usage(deep=True)``,
and its full size, which also counts what object cells point to (a UUID's int, a list's
ints) that pandas leaves out.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _frames_table import KEYSPACE, connect, ensure_table

WAYS = ("native", "python", "pandas_factory", "pages only")
TABLES = ("mixed", "numeric")
#: What the native decoder must beat pandas_factory's CPU per row by, per table.
CPU_TARGETS = {"mixed": 3.0, "numeric": 10.0}
RSS_TARGET = 1.5
_PAGE = os.sysconf("SC_PAGE_SIZE")

NUMERIC_COLUMNS = (
    "i int PRIMARY KEY, b bigint, s smallint, t tinyint, f float, d double, flag boolean, "
    "b2 bigint, b3 bigint, sparse int"
)


# --- the all-numeric table ------------------------------------------------------------


def _numeric_row(i: int) -> tuple[Any, ...]:
    from cassandra.query import UNSET_VALUE

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


def _numeric_chunks(rows: int, size: int = 20_000) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, rows, size):
        yield [_numeric_row(i) for i in range(start, min(start + size, rows))]


def ensure_numeric_table(hosts: list[str], port: int, rows: int) -> str:
    """Create and load the all-numeric table of ``rows`` rows unless it is complete."""
    from cassandra.concurrent import execute_concurrent_with_args
    from cassandra.query import SimpleStatement

    name = f"{KEYSPACE}.numbers_{rows}"
    cluster = connect(hosts, port)
    try:
        session = cluster.connect()
        session.execute(f"CREATE TABLE IF NOT EXISTS {name} ({NUMERIC_COLUMNS})")
        marker = session.execute(
            f"SELECT rows FROM {KEYSPACE}.loaded WHERE name = %s", (name,)
        ).one()
        if marker is not None and marker.rows == rows:
            keys = session.execute(SimpleStatement(f"SELECT i FROM {name}", fetch_size=10_000))
            if sum(1 for _ in keys) == rows:
                print(f"reusing {name} ({rows:,} rows)", flush=True)
                return name
        print(f"loading {rows:,} rows into {name} ...", flush=True)
        session.execute(f"TRUNCATE {name}")
        insert = session.prepare(
            f"INSERT INTO {name} (i, b, s, t, f, d, flag, b2, b3, sparse) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        for chunk in _numeric_chunks(rows):
            for ok, result in execute_concurrent_with_args(
                session, insert, chunk, concurrency=64, raise_on_first_error=False
            ):
                if not ok:
                    raise RuntimeError(f"loading {name} failed: {result}")
        session.execute(f"INSERT INTO {KEYSPACE}.loaded (name, rows) VALUES (%s, %s)", (name, rows))
        return name
    finally:
        cluster.shutdown()


# --- one way, in its own process ------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _full_size(frame: pd.DataFrame) -> int:
    """The frame's size counting what object cells hold (a UUID's int, a list's items)."""

    def cell(value: Any) -> int:
        size = sys.getsizeof(value)
        if isinstance(value, list | tuple | set):
            size += sum(cell(item) for item in value)
        elif hasattr(value, "int") and type(value).__name__ == "UUID":
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


class _Meter:
    """Measures a read from its creation (just before the read) to ``result``."""

    def __init__(self) -> None:
        gc.collect()
        self._rss_before = _rss()
        self._cpu_before = _cpu()
        self._started = time.perf_counter()

    def result(self, frame: pd.DataFrame) -> dict[str, Any]:
        wall = time.perf_counter() - self._started
        cpu = _cpu() - self._cpu_before
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {
            "rows": len(frame),
            "cpu_s": cpu,
            "wall_s": wall,
            "peak_growth": peak - self._rss_before,
            "deep": int(frame.memory_usage(deep=True).sum()),
            "full": _full_size(frame),
            "dtypes": sorted({str(dtype) for dtype in frame.dtypes}),
        }


def _read_cql(host: str, port: int, table: str, fetch_size: int) -> dict[str, Any]:
    import cassnb

    async def run() -> dict[str, Any]:
        async with (
            cassnb.AsyncCluster([host], port=port) as cluster,
            await cluster.connect() as session,
        ):
            await cassnb.read_cql(f"SELECT * FROM {table} LIMIT 10", session)
            meter = _Meter()
            frame = await cassnb.read_cql(f"SELECT * FROM {table}", session, fetch_size=fetch_size)
            return meter.result(frame)

    return asyncio.run(run())


def _pandas_factory(host: str, port: int, table: str, fetch_size: int) -> dict[str, Any]:
    from cassandra.query import SimpleStatement

    def pandas_factory(colnames: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=colnames)

    cluster = connect([host], port, row_factory=pandas_factory)
    try:
        session = cluster.connect()
        session.execute(f"SELECT * FROM {table} LIMIT 10")

        meter = _Meter()
        statement = SimpleStatement(f"SELECT * FROM {table}", fetch_size=fetch_size)
        result = session.execute(statement)
        pages = [result._current_rows]
        while result.has_more_pages:
            result.fetch_next_page()
            pages.append(result._current_rows)
        return meter.result(pd.concat(pages, ignore_index=True))
    finally:
        cluster.shutdown()


def _pages_only(host: str, port: int, table: str, fetch_size: int) -> dict[str, Any]:
    import cassnb

    async def run() -> dict[str, Any]:
        async with (
            cassnb.AsyncCluster([host], port=port) as cluster,
            await cluster.connect() as session,
        ):
            await cassnb.read_cql(f"SELECT * FROM {table} LIMIT 10", session)
            rows = 0
            cpu_before, started = _cpu(), time.perf_counter()
            config = cassnb.StreamConfig(fetch_size=fetch_size)
            stream = await session.execute_stream(f"SELECT * FROM {table}", stream_config=config)
            async with stream:
                async for page in stream.pages():
                    rows += len(page)
            return {
                "rows": rows,
                "cpu_s": _cpu() - cpu_before,
                "wall_s": time.perf_counter() - started,
            }

    return asyncio.run(run())


def _run_way(way: str, host: str, port: int, table: str, fetch_size: int) -> dict[str, Any]:
    if way == "pages only":
        return _pages_only(host, port, table, fetch_size)
    if way == "pandas_factory":
        return _pandas_factory(host, port, table, fetch_size)
    from cassnb import _columnar

    if _columnar.native_available() != (way == "native"):
        raise SystemExit(f"{way}: the native decoder is {'' if way == 'python' else 'not '}on")
    return _read_cql(host, port, table, fetch_size)


def _in_subprocess(way: str, args: argparse.Namespace, table: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--run", way, "--table", table]
    command += ["--host", args.host, "--port", str(args.port), "--fetch-size", str(args.fetch_size)]
    environment = {**os.environ, "CASSNB_NO_NATIVE": "1" if way == "python" else ""}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"{way} on {table} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- report ---------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(runs[0])
    for key in ("cpu_s", "wall_s", "peak_growth"):
        if key in merged:
            merged[key] = statistics.median(run[key] for run in runs)
    return merged


def _report(results: dict[str, dict[str, dict[str, Any]]], repeat: int) -> None:
    mb = 1024 * 1024
    print()
    print(
        f"{'table':<9}{'way':<16}{'rows':>11}{'CPU us/row':>12}{'wall s':>8}{'peak +MB':>10}"
        f"{'deep MB':>9}{'full MB':>9}{'peak/deep':>11}{'peak/full':>11}"
    )
    for table, ways in results.items():
        for way, r in ways.items():
            line = f"{table:<9}{way:<16}{r['rows']:>11,}{r['cpu_s'] / r['rows'] * 1e6:>12.3f}"
            line += f"{r['wall_s']:>8.1f}"
            if "deep" in r:
                line += (
                    f"{r['peak_growth'] / mb:>10.0f}{r['deep'] / mb:>9.0f}{r['full'] / mb:>9.0f}"
                    f"{r['peak_growth'] / r['deep']:>11.2f}{r['peak_growth'] / r['full']:>11.2f}"
                )
            print(line)
    if repeat > 1:
        print(f"(median of {repeat} runs of each way, each run in a fresh process)")
    print()
    for table, ways in results.items():
        native, python, base = ways["native"], ways["python"], ways["pandas_factory"]
        floor = ways["pages only"]
        factor = base["cpu_s"] / native["cpu_s"]
        target = CPU_TARGETS[table]
        print(
            f"{table}: pandas_factory / native CPU per row = {factor:.1f}x "
            f"(target >= {target:.0f}x: {'met' if factor >= target else 'NOT met'}); "
            f"python / native = {python['cpu_s'] / native['cpu_s']:.1f}x; "
            f"pandas_factory / pages only = {base['cpu_s'] / floor['cpu_s']:.1f}x "
            "(what no decoder can beat)"
        )
        for label, size in (("deep", native["deep"]), ("full size", native["full"])):
            ratio = native["peak_growth"] / size
            print(
                f"{table}: native peak RSS growth / frame {label} = {ratio:.2f} "
                f"(target <= {RSS_TARGET}: {'met' if ratio <= RSS_TARGET else 'NOT met'})"
            )
        print(f"{table}: native dtypes: {', '.join(native['dtypes'])}")


def _profile(args: argparse.Namespace, table: str) -> None:
    import cassnb

    async def run() -> None:
        async with (
            cassnb.AsyncCluster([args.host], port=args.port) as cluster,
            await cluster.connect() as session,
        ):
            await cassnb.read_cql(f"SELECT * FROM {table} LIMIT 10", session)
            # The loop thread's CPU clock: time spent waiting for the driver is not counted.
            profiler = cProfile.Profile(time.thread_time)
            profiler.enable()
            await cassnb.read_cql(f"SELECT * FROM {table}", session, fetch_size=args.fetch_size)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(25)

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9042)
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    parser.add_argument("--fetch-size", type=int, default=5000, help="rows per page, every way")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way (median)")
    parser.add_argument("--profile", choices=TABLES, help="cProfile the native read instead")
    parser.add_argument("--run", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(_run_way(args.run, args.host, args.port, args.table, args.fetch_size)))
        return
    names = {}
    for table in args.tables if args.profile is None else [args.profile]:
        if table == "mixed":
            names[table] = ensure_table([args.host], args.port, args.rows)
        else:
            names[table] = ensure_numeric_table([args.host], args.port, args.rows)
    if args.profile is not None:
        _profile(args, names[args.profile])
        return
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {t: {w: [] for w in WAYS} for t in names}
    for round_number in range(args.repeat):
        for table, name in names.items():
            for way in WAYS:
                print(f"run {round_number + 1}/{args.repeat}: {table}: {way} ...", flush=True)
                runs[table][way].append(_in_subprocess(way, args, name))
    results = {t: {w: _median(r) for w, r in ways.items()} for t, ways in runs.items()}
    _report(results, args.repeat)


if __name__ == "__main__":
    main()
