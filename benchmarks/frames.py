"""Read a table into pandas several ways, each in a fresh process, and compare the costs.

    python benchmarks/frames.py                          # both tables, 1,000,000 rows each
    python benchmarks/frames.py --rows 20000             # a quick check
    python benchmarks/frames.py --repeat 3               # median of three runs of each way
    python benchmarks/frames.py --profile numeric        # where read_cql's time goes

The tables, ``mixed`` (ten columns of every common kind, a uuid and a list<int> among
them) and ``numeric`` (ten numeric columns), are described in ``_frames_table.py``.

The ways, all with the same page size (``--fetch-size``, 5,000 as read_cql):

- ``read_cql``: ``await cassnb.read_cql("SELECT * FROM t", session)`` with the compiled
  page decoder (the run fails if it is not built).
- ``read_cql, pyarrow dtypes``: the same with ``dtype_backend="pyarrow"``: the uuid, text
  and list columns are Arrow arrays instead of Python objects.
- ``read_cql, Python decoder``: the same with ``CASSNB_NO_NATIVE=1``: the driver decodes
  rows and the type table's pure-Python decoder builds the columns.
- ``read_cql, fast path off``: the same with ``CASSNB_FAST_PATH=0``: the driver's public
  API only (docs/architecture.md), so the driver decodes rows, each page is a request of
  its own, and the pure-Python decoder builds the columns.
- ``pandas_factory``: the driver's usual recipe, a row factory returning
  ``pd.DataFrame(rows, columns=colnames)``, paging with ``fetch_next_page()`` and one
  ``pd.concat`` at the end. The baseline. Empty pages are left out of the concat: the
  server may end a result with one, whose untyped columns would turn every column of the
  frame to object (a slower, bigger frame that nobody would want).
- ``DataFrame(list(rows))``: the default row factory, every row in a list, then pandas.
- ``pages only``: the same pages through a cassnb stream, decoded into nothing: what
  reading the pages one by one from the loop costs. A whole read (``read_cql``) receives
  them another way (asking for each next page, and decoding it, on the driver's thread as
  it arrives), so it can cost less than this.

Measured around the read only, in a process that has connected and read ten rows: client
CPU (user + sys of the whole process, driver threads included) per row; wall time; peak
RSS growth (``ru_maxrss`` minus the RSS before the read); the frame's
``memory_usage(deep=True)``, and its full size, which also counts what object cells
point to (a UUID's int, a list's ints) that pandas leaves out. The summary sets the ratios
against the targets: read_cql at least 3x (mixed) and 10x (numeric) less CPU per row than
pandas_factory, and a peak RSS growth at most 1.5x the frame's deep size.

``--profile`` runs read_cql once under cProfile (each thread against its own CPU clock),
then decodes the result's first page again and again: back to back, and after waits like
those between pages in a whole read, which make the same work cost more.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _frames_table import TABLES, Meter, connect, ensure_table

READ_CQL = "read_cql"
ARROW = "read_cql, pyarrow dtypes"
PYTHON = "read_cql, Python decoder"
PUBLIC_API = "read_cql, fast path off"
BASELINE = "pandas_factory"
PAGES_ONLY = "pages only"
WAYS = (READ_CQL, ARROW, PYTHON, PUBLIC_API, BASELINE, "DataFrame(list(rows))", PAGES_ONLY)
#: How much less CPU per row than pandas_factory read_cql must use, per table.
CPU_TARGETS = {"mixed": 3.0, "numeric": 10.0}
#: Peak RSS growth of read_cql, at most, in frames' deep sizes.
RSS_TARGET = 1.5
#: Environment of a way's process: the Python decoder is read_cql with the compiled page
#: decoder turned off; the fast path off, read_cql with the driver's public API only.
_ENVIRONMENT = {PYTHON: {"CASSNB_NO_NATIVE": "1"}, PUBLIC_API: {"CASSNB_FAST_PATH": "0"}}


# --- one way, in its own process -----------------------------------------------------------


def _measured_in_cassnb(
    host: str, port: int, table: str, read: Callable[[Any, Meter], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Connect with cassnb, read ten rows of ``table``, then measure ``read(session, meter)``."""
    import cassnb

    async def run() -> dict[str, Any]:
        async with (
            cassnb.AsyncCluster([host], port=port) as cluster,
            await cluster.connect() as session,
        ):
            await cassnb.read_cql(f"SELECT * FROM {table} LIMIT 10", session)
            return await read(session, Meter())

    return asyncio.run(run())


def _read_cql(
    host: str,
    port: int,
    table: str,
    fetch_size: int,
    dtype_backend: Literal["numpy_nullable", "pyarrow"] = "numpy_nullable",
) -> dict[str, Any]:
    import cassnb

    async def read(session: Any, meter: Meter) -> dict[str, Any]:
        frame = await cassnb.read_cql(
            f"SELECT * FROM {table}", session, fetch_size=fetch_size, dtype_backend=dtype_backend
        )
        return meter.result(frame)

    return _measured_in_cassnb(host, port, table, read)


def _require_native() -> None:
    from cassnb._frames import columnar as _columnar

    if not _columnar.native_available():
        raise SystemExit("the compiled page decoder is not built: pip install -e . with a compiler")


def _native_read_cql(host: str, port: int, table: str, fetch_size: int) -> dict[str, Any]:
    _require_native()
    return _read_cql(host, port, table, fetch_size)


def _arrow_read_cql(host: str, port: int, table: str, fetch_size: int) -> dict[str, Any]:
    _require_native()
    return _read_cql(host, port, table, fetch_size, dtype_backend="pyarrow")


def _pandas_factory(host: str, port: int, table: str, fetch_size: int) -> dict[str, Any]:
    from cassandra.query import SimpleStatement

    def pandas_factory(colnames: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=colnames)

    cluster = connect([host], port, row_factory=pandas_factory)
    try:
        session = cluster.connect()
        session.execute(f"SELECT * FROM {table} LIMIT 10")
        meter = Meter()
        result = session.execute(SimpleStatement(f"SELECT * FROM {table}", fetch_size=fetch_size))
        pages = [result._current_rows]
        while result.has_more_pages:
            result.fetch_next_page()
            pages.append(result._current_rows)
        pages = [page for page in pages if len(page)] or pages[:1]
        return meter.result(pd.concat(pages, ignore_index=True))
    finally:
        cluster.shutdown()


def _dataframe_of_rows(host: str, port: int, table: str, fetch_size: int) -> dict[str, Any]:
    from cassandra.query import SimpleStatement

    cluster = connect([host], port)
    try:
        session = cluster.connect()
        session.execute(f"SELECT * FROM {table} LIMIT 10")
        meter = Meter()
        statement = SimpleStatement(f"SELECT * FROM {table}", fetch_size=fetch_size)
        return meter.result(pd.DataFrame(list(session.execute(statement))))
    finally:
        cluster.shutdown()


def _pages_only(host: str, port: int, table: str, fetch_size: int) -> dict[str, Any]:
    import cassnb

    async def read(session: Any, meter: Meter) -> dict[str, Any]:
        rows = 0
        config = cassnb.StreamConfig(fetch_size=fetch_size)
        stream = await session.execute_stream(f"SELECT * FROM {table}", stream_config=config)
        async with stream:
            async for page in stream.pages():
                rows += len(page)
        return meter.result(rows=rows)

    return _measured_in_cassnb(host, port, table, read)


_RUNNERS: dict[str, Callable[[str, int, str, int], dict[str, Any]]] = {
    READ_CQL: _native_read_cql,
    ARROW: _arrow_read_cql,
    PYTHON: _read_cql,
    PUBLIC_API: _read_cql,
    BASELINE: _pandas_factory,
    "DataFrame(list(rows))": _dataframe_of_rows,
    PAGES_ONLY: _pages_only,
}


def _in_subprocess(way: str, args: argparse.Namespace, table: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--run", way, "--table", table]
    command += ["--host", args.host, "--port", str(args.port), "--fetch-size", str(args.fetch_size)]
    environment = {
        **os.environ,
        "CASSNB_NO_NATIVE": "",
        "CASSNB_FAST_PATH": "",
        **_ENVIRONMENT.get(way, {}),
    }
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"{way} on {table} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- report --------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(runs[0])
    for key in ("cpu_s", "wall_s", "peak_growth", "rss_before"):
        merged[key] = statistics.median(run[key] for run in runs)
    return merged


def _report(results: dict[str, dict[str, dict[str, Any]]], repeat: int) -> None:
    mb = 1024 * 1024
    print()
    print(
        f"{'table':<9}{'way':<26}{'rows':>11}{'CPU us/row':>12}{'wall s':>8}{'peak +MB':>10}"
        f"{'deep MB':>9}{'full MB':>9}{'peak/deep':>11}{'peak/full':>11}"
    )
    for table, ways in results.items():
        for way, r in ways.items():
            line = f"{table:<9}{way:<26}{r['rows']:>11,}{r['cpu_s'] / r['rows'] * 1e6:>12.3f}"
            line += f"{r['wall_s']:>8.1f}{r['peak_growth'] / mb:>10.0f}"
            if "deep" in r:
                line += (
                    f"{r['deep'] / mb:>9.0f}{r['full'] / mb:>9.0f}"
                    f"{r['peak_growth'] / r['deep']:>11.2f}{r['peak_growth'] / r['full']:>11.2f}"
                )
            print(line)
    if repeat > 1:
        print(f"(median of {repeat} runs of each way, each run in a fresh process)")
    for table, ways in results.items():
        base = ways[BASELINE]
        print()
        print(f"{table}: CPU per row of pandas_factory / each way (higher is better):")
        for way, r in ways.items():
            if way != BASELINE:
                print(f"  {way:<26}{base['cpu_s'] / r['cpu_s']:>6.1f}x")
        ours = ways[READ_CQL]
        factor = base["cpu_s"] / ours["cpu_s"]
        target = CPU_TARGETS[table]
        print(
            f"{table}: read_cql uses {factor:.1f}x less CPU per row than pandas_factory "
            f"(target >= {target:.0f}x: {'met' if factor >= target else 'NOT met'})"
        )
        public = base["cpu_s"] / ways[PUBLIC_API]["cpu_s"]
        print(
            f"{table}: with the fast path off, read_cql uses {public:.1f}x less CPU per row "
            f"than pandas_factory; the fast path makes it {factor / public:.1f}x cheaper"
        )
        for way in (READ_CQL, ARROW):
            r = ways[way]
            ratio = r["peak_growth"] / r["deep"]
            print(
                f"{table}: {way} peak RSS growth = {ratio:.2f}x the frame's deep size "
                f"(target <= {RSS_TARGET}: {'met' if ratio <= RSS_TARGET else 'NOT met'}); "
                f"{r['peak_growth'] / r['full']:.2f}x its full size, which is "
                f"{r['full'] / r['deep']:.2f}x its deep size"
            )
        for way in (READ_CQL, BASELINE):
            print(f"{table}: {way} dtypes: {', '.join(ways[way]['dtypes'])}")


# --- profile -------------------------------------------------------------------------------


def _profile(args: argparse.Namespace, table: str) -> None:
    """cProfile read_cql on every thread, each against its own CPU clock, and print each.

    Run in a fresh process (``--run profile``): the driver's I/O thread is started by the
    first connection, and only threads started after this is set up are profiled.
    """
    import cassnb

    profiles: list[tuple[str, cProfile.Profile]] = []

    def start_in_new_thread(*_: Any) -> None:
        # The driver starts its I/O thread on connect: profile it from its first call.
        # cassnb's worker threads only wait for blocking driver calls during a read (and
        # cProfile would count their waiting), so they are left out.
        sys.setprofile(None)
        if threading.current_thread().name.startswith("cassnb_"):
            return
        profiler = cProfile.Profile(time.thread_time)
        profiles.append((threading.current_thread().name, profiler))
        profiler.enable()

    async def run() -> None:
        async with (
            cassnb.AsyncCluster([args.host], port=args.port) as cluster,
            await cluster.connect() as session,
        ):
            # The other threads' profiles also hold connecting and this warm-up: little.
            await cassnb.read_cql(f"SELECT * FROM {table} LIMIT 10", session)
            loop_thread = cProfile.Profile(time.thread_time)
            profiles.append(("asyncio loop", loop_thread))
            loop_thread.enable()
            await cassnb.read_cql(f"SELECT * FROM {table}", session, fetch_size=args.fetch_size)
            loop_thread.disable()
        for name, profiler in profiles:
            out = io.StringIO()
            try:
                stats = pstats.Stats(profiler, stream=out)
            except TypeError:  # a thread that ran no Python code
                continue
            # Set by Stats at run time; typeshed does not declare it.
            total: float = stats.total_tt  # type: ignore[attr-defined]
            if total > 0.01:
                print(f"=== thread {name}: {total:.3f} s of CPU")
                stats.sort_stats("tottime").print_stats(25)
                print(out.getvalue())

    threading.setprofile(start_in_new_thread)
    asyncio.run(run())
    threading.setprofile(None)
    _decoded_after_waits(*asyncio.run(_first_page(args, table)))


async def _first_page(args: argparse.Namespace, table: str) -> tuple[Any, Any]:
    """Return the first page of ``SELECT * FROM table`` (None if there is none), as the
    page decoder gets it, and the schema of a frame of it."""
    import cassnb
    from cassnb._frames.types import FrameSchema

    async with (
        cassnb.AsyncCluster([args.host], port=args.port) as cluster,
        await cluster.connect() as session,
    ):
        config = cassnb.StreamConfig(fetch_size=args.fetch_size, max_pages=1)
        stream = await session.execute_stream(f"SELECT * FROM {table}", stream_config=config)
        async with stream:
            pages = [page async for page in stream.pages()]
            names, types = stream.column_names or [], stream.column_types or []
    page = pages[0] if pages else None
    return page, FrameSchema.from_metadata(names, types, "numpy_nullable")


#: Waits before decoding a page again: none, and about what the local node takes to send
#: the next 5,000-row page while a whole read runs.
_WAITS_MS = (0, 5, 25)


def _decoded_after_waits(page: Any, schema: Any) -> None:
    """Decode ``page`` again and again, each time right after the one before and after a
    wait, and print the median CPU of one decode for each wait.

    A whole read decodes each page as it arrives, after its thread has waited for it: this
    shows how much of a page's CPU in situ the wait itself costs (caches and the CPU's own
    state go cold meanwhile), beside what the same work costs back to back.
    """
    from cassnb._frames import columnar as _columnar

    if not _columnar.native_available() or not page:
        print("=== no page decoded: the compiled page decoder is not built, or no rows")
        return
    medians: dict[int, float] = {}
    for wait_ms in _WAITS_MS:
        spent = []
        for _ in range(40):
            time.sleep(wait_ms / 1000)
            started = time.thread_time()
            _columnar.decode_page(page, schema)
            spent.append(time.thread_time() - started)
        medians[wait_ms] = statistics.median(spent)
    print(f"=== one page of {len(page):,} rows decoded, median CPU of 40 decodes:")
    for wait_ms, median in medians.items():
        cost = f"{median * 1e6:7.0f} us ({median / medians[0]:.1f}x back to back)"
        print(f"  after a wait of {wait_ms:3d} ms: {cost}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9042)
    parser.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    parser.add_argument("--fetch-size", type=int, default=5000, help="rows per page, every way")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way (median)")
    parser.add_argument("--profile", choices=list(TABLES), help="profile read_cql instead")
    parser.add_argument("--run", choices=[*WAYS, "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run == "profile":
        _profile(args, args.table)
        return
    if args.run:
        result = _RUNNERS[args.run](args.host, args.port, args.table, args.fetch_size)
        print(json.dumps(result))
        return
    tables = args.tables if args.profile is None else [args.profile]
    names = {table: ensure_table([args.host], args.port, args.rows, table) for table in tables}
    if args.profile is not None:
        command = [sys.executable, __file__, "--run", "profile", "--table", names[args.profile]]
        command += ["--host", args.host, "--port", str(args.port)]
        subprocess.run([*command, "--fetch-size", str(args.fetch_size)], check=True)
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
