"""Read one table into pandas three ways, each in a fresh process, and compare the costs.

    python benchmarks/frames.py                 # 1,000,000 rows (loaded once, then reused)
    python benchmarks/frames.py --rows 20000    # a quick check

The ways:

- ``read_cql``: ``await cassnb.read_cql("SELECT * FROM t", session)``, with the compiled
  page decoder when it is built.
- ``read_cql, Python decoder``: the same with ``CASSNB_NO_NATIVE=1``: the driver decodes
  the rows and the type table's pure-Python decoder builds the columns.
- ``pandas_factory``: the driver's usual recipe, a row factory returning
  ``pd.DataFrame(rows, columns=colnames)``, paging with ``fetch_next_page()`` and one
  ``pd.concat`` at the end.
- ``DataFrame(list(rows))``: the default row factory, every row in a list, then pandas.

For each: client CPU time (user + sys of the whole process, driver threads included, from
``getrusage`` around the read) per row, wall time, peak RSS growth (``ru_maxrss`` minus
the RSS just before the read, in a process that has only connected) and the frame's
``memory_usage(deep=True)``. Every way uses the same page size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _frames_table import connect, ensure_table

WAYS = ("read_cql", "read_cql, Python decoder", "pandas_factory", "DataFrame(list(rows))")
#: Environment for a way's process: the Python decoder is read_cql with the compiled page
#: decoder turned off.
_ENVIRONMENT = {"read_cql, Python decoder": {"CASSNB_NO_NATIVE": "1"}}
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
            "rss_before": self._rss_before,
            "peak_growth": peak - self._rss_before,
            "deep": int(frame.memory_usage(deep=True).sum()),
            "dtypes": sorted({str(dtype) for dtype in frame.dtypes}),
        }


def _measure(read: Callable[[], pd.DataFrame]) -> dict[str, Any]:
    meter = _Meter()
    return meter.result(read())


def _read_cql(hosts: list[str], port: int, table: str, fetch_size: int) -> dict[str, Any]:
    import cassnb

    async def run() -> dict[str, Any]:
        async with (
            cassnb.AsyncCluster(hosts, port=port) as cluster,
            await cluster.connect() as session,
        ):
            await cassnb.read_cql(f"SELECT * FROM {table} LIMIT 10", session)
            meter = _Meter()
            frame = await cassnb.read_cql(f"SELECT * FROM {table}", session, fetch_size=fetch_size)
            return meter.result(frame)

    return asyncio.run(run())


def _pandas_factory(hosts: list[str], port: int, table: str, fetch_size: int) -> dict[str, Any]:
    from cassandra.query import SimpleStatement

    def pandas_factory(colnames: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=colnames)

    cluster = connect(hosts, port, row_factory=pandas_factory)
    try:
        session = cluster.connect()
        session.execute(f"SELECT * FROM {table} LIMIT 10")

        def read() -> pd.DataFrame:
            result = session.execute(
                SimpleStatement(f"SELECT * FROM {table}", fetch_size=fetch_size)
            )
            pages = [result._current_rows]
            while result.has_more_pages:
                result.fetch_next_page()
                pages.append(result._current_rows)
            return pd.concat(pages, ignore_index=True)

        return _measure(read)
    finally:
        cluster.shutdown()


def _dataframe_of_rows(hosts: list[str], port: int, table: str, fetch_size: int) -> dict[str, Any]:
    from cassandra.query import SimpleStatement

    cluster = connect(hosts, port)
    try:
        session = cluster.connect()
        session.execute(f"SELECT * FROM {table} LIMIT 10")

        def read() -> pd.DataFrame:
            statement = SimpleStatement(f"SELECT * FROM {table}", fetch_size=fetch_size)
            return pd.DataFrame(list(session.execute(statement)))

        return _measure(read)
    finally:
        cluster.shutdown()


_RUNNERS = {
    "read_cql": _read_cql,
    "read_cql, Python decoder": _read_cql,
    "pandas_factory": _pandas_factory,
    "DataFrame(list(rows))": _dataframe_of_rows,
}


def _in_subprocess(way: str, args: argparse.Namespace, table: str) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--run",
        way,
        "--table",
        table,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--fetch-size",
        str(args.fetch_size),
    ]
    environment = {**os.environ, **_ENVIRONMENT.get(way, {})}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"{way} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(runs[0])
    for key in ("cpu_s", "wall_s", "peak_growth", "rss_before"):
        merged[key] = statistics.median(run[key] for run in runs)
    return merged


def _report(results: dict[str, dict[str, Any]], repeat: int) -> None:
    mb = 1024 * 1024
    print()
    print(
        f"{'way':<24}{'rows':>10}{'CPU us/row':>12}{'wall s':>9}"
        f"{'peak RSS +MB':>14}{'frame MB':>10}{'peak/frame':>12}"
    )
    for way, result in results.items():
        rows = result["rows"]
        print(
            f"{way:<24}{rows:>10,}{result['cpu_s'] / rows * 1e6:>12.2f}{result['wall_s']:>9.2f}"
            f"{result['peak_growth'] / mb:>14.1f}{result['deep'] / mb:>10.1f}"
            f"{result['peak_growth'] / result['deep']:>12.2f}"
        )
    if repeat > 1:
        print(f"(median of {repeat} runs of each way, each run in a fresh process)")
    base = results["pandas_factory"]
    if base["dtypes"] == ["object"]:
        print(
            "(pandas_factory's frame is all object: its last page came back empty, and "
            "pd.concat with an empty untyped page turns every column to object)"
        )
    print()
    print("ratios to pandas_factory (lower is better):")
    for way, result in results.items():
        if way == "pandas_factory":
            continue
        print(
            f"  {way:<22} CPU/row x{result['cpu_s'] / base['cpu_s']:.2f}   "
            f"wall x{result['wall_s'] / base['wall_s']:.2f}   "
            f"peak RSS growth x{result['peak_growth'] / base['peak_growth']:.2f}   "
            f"frame x{result['deep'] / base['deep']:.2f}"
        )
    for way in ("read_cql", "read_cql, Python decoder"):
        ours = results[way]
        print(
            f"{way}: CPU/row <= pandas_factory's: "
            f"{'yes' if ours['cpu_s'] <= base['cpu_s'] else 'NO'}; peak RSS growth / frame = "
            f"{ours['peak_growth'] / ours['deep']:.2f} (target <= 2.5)"
        )
    print()
    for way, result in results.items():
        print(f"dtypes, {way}: {', '.join(result['dtypes'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9042)
    parser.add_argument("--fetch-size", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way (median)")
    parser.add_argument("--run", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        result = _RUNNERS[args.run]([args.host], args.port, args.table, args.fetch_size)
        print(json.dumps(result))
        return
    table = ensure_table([args.host], args.port, args.rows)
    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    for round_number in range(args.repeat):
        for way in WAYS:
            print(f"run {round_number + 1}/{args.repeat}: {way} ...", flush=True)
            runs[way].append(_in_subprocess(way, args, table))
    _report({way: _median(results) for way, results in runs.items()}, args.repeat)


if __name__ == "__main__":
    main()
