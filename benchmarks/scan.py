"""Read a whole table over three nodes: read_table (token ranges, concurrent) vs read_cql.

    python benchmarks/scan.py                  # 1,000,000 rows, loaded once, then reused
    python benchmarks/scan.py --rows 100000    # a quick check

The table lives in keyspace ``cassnb_scan_bench`` (replication factor 1, so each node owns
a third of the rows) on the local three-node cluster "trio", started here if it is not
running (and then stopped at the end). It is loaded once: a marker row records how many
rows a complete load wrote, and a later run with the same ``--rows`` reuses it.

Each way reads the table in its own fresh process, which connects first and is then
measured around the read alone:

- ``read_cql``: ``await read_cql("SELECT * FROM t", session)``, one stream, one
  coordinator, pages one after another (the next one fetched while this one decodes);
- ``read_table``: ``await read_table("t", session)``, the ring cut into ranges, each read
  from the node that owns it, several at once, joined into one frame.

For each: wall time; client CPU (user + sys of the whole process from ``getrusage``,
the driver's I/O thread included), split into the page -> columns decoder, the final
assembly of the frame, and the rest (the driver reading sockets and building rows, the
loop, the bridge); and server CPU (user + sys of the three JVMs, from psutil, over the
same interval), and the cores other processes kept busy meanwhile (the whole machine's
busy time from psutil, minus the child's and the servers'). Then the ratio of the wall
times, and an estimate of the ratio with the client on its own machine (see ``explain``).
``--no-native`` runs both ways with the pure-Python page decoder instead of the compiled
one; ``--repeat`` alternates the ways and keeps each one's fastest run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from cassnb import AsyncCluster, local, read_cql
from cassnb._scan.ranges import read_table

KEYSPACE = "cassnb_scan_bench"
TABLE = "rows"
ROWS_PER_PARTITION = 50
TRIO = ("trio", local.Options(nodes=3, address="127.0.0.11"))
WAYS = ("read_cql", "read_table")


# --- the table ---------------------------------------------------------------------------


def _rows(partition: int, count: int) -> Iterator[tuple[Any, ...]]:
    for c in range(count):
        n = partition * ROWS_PER_PARTITION + c
        yield partition, c, f"row {n} of the benchmark", n * 7919, n / 3, n * 1000


async def ensure_table(contact_points: list[str], rows: int) -> None:
    """Create and load the table unless a complete load of ``rows`` rows is recorded."""
    async with (
        AsyncCluster(contact_points) as cluster,
        cluster.connect() as session,
    ):
        await session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        await session.execute(
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.{TABLE} (p int, c int, v text, x bigint, "
            "d double, ts timestamp, PRIMARY KEY (p, c))"
        )
        await session.execute(
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.loaded (name text PRIMARY KEY, rows bigint)"
        )
        marker = (
            await session.execute(f"SELECT rows FROM {KEYSPACE}.loaded WHERE name = '{TABLE}'")
        ).one()
        if marker is not None and marker[0] == rows:
            print(f"reusing {KEYSPACE}.{TABLE}: {rows:,} rows", flush=True)
            return
        print(f"loading {rows:,} rows into {KEYSPACE}.{TABLE} ...", flush=True)
        started = time.perf_counter()
        await session.execute(f"TRUNCATE {KEYSPACE}.{TABLE}", timeout=120)
        insert = await session.prepare(
            f"INSERT INTO {KEYSPACE}.{TABLE} (p, c, v, x, d, ts) VALUES (?, ?, ?, ?, ?, ?)"
        )
        partitions = -(-rows // ROWS_PER_PARTITION)
        limit = asyncio.Semaphore(32)

        async def load(p: int) -> None:
            count = min(ROWS_PER_PARTITION, rows - p * ROWS_PER_PARTITION)
            async with limit:
                # One partition per unlogged batch: a single mutation on one node.
                batch = [(insert, row) for row in _rows(p, count)]
                await session.execute_batch(_unlogged(batch), timeout=60)

        await asyncio.gather(*(load(p) for p in range(partitions)))
        await session.execute(
            f"INSERT INTO {KEYSPACE}.loaded (name, rows) VALUES ('{TABLE}', {rows})"
        )
        print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)


def _unlogged(pairs: Sequence[tuple[Any, tuple[Any, ...]]]) -> Any:
    from cassandra.query import BatchStatement, BatchType

    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for statement, values in pairs:
        batch.add(statement, values)
    return batch


# --- one measured read, in a child process -----------------------------------------------


class _Timed:
    """Wraps a function and adds the CPU time of its calling thread to a total."""

    def __init__(self, function: Any) -> None:
        self.function = function
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.thread_time() - started


class _TimedDecoder:
    """The frames layer's page decoder, with the CPU time it spends counted."""

    def __init__(self, decoder: Any) -> None:
        self.inner = decoder
        self.decode = _Timed(decoder.decode)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(way: str, contact_points: list[str]) -> dict[str, Any]:
    """Read the table one way and return the measurements."""
    from cassnb._frames import read as _frames
    from cassnb._scan import ranges as _scan

    decoder = _TimedDecoder(_frames.page_decoder)
    _frames.page_decoder = decoder
    # read_cql joins pages with concat_chunks and frame_of; read_table with _scan._assemble
    # (which holds its own references to both, so it is not counted twice).
    concat, frame = _Timed(_frames.concat_chunks), _Timed(_frames.frame_of)
    assemble = _Timed(_scan._assemble)
    _frames.concat_chunks, _frames.frame_of = concat, frame
    _scan._assemble = assemble

    async def run() -> dict[str, Any]:
        async with (
            AsyncCluster(contact_points) as cluster,
            cluster.connect(KEYSPACE) as session,
        ):
            await session.execute("SELECT release_version FROM system.local")
            cpu, wall = _cpu(), time.perf_counter()
            if way == "read_cql":
                result = await read_cql(f"SELECT * FROM {TABLE}", session)
            else:
                result = await read_table(TABLE, session)
            wall, cpu = time.perf_counter() - wall, _cpu() - cpu
            return {
                "rows": float(len(result)),
                "wall": wall,
                "client_cpu": cpu,
                "decode": decoder.decode.seconds,
                "assemble": concat.seconds + frame.seconds + assemble.seconds,
                "decoder": type(decoder.inner).__name__,
            }

    return asyncio.run(run())


# --- the parent: runs each way in its own process and watches the JVMs -----------------


@dataclass
class Measure:
    """What one read cost."""

    way: str
    rows: int
    wall: float
    client_cpu: float
    decode: float
    assemble: float
    server_cpu: float
    decoder: str
    #: Cores that other processes on the machine kept busy, on average, meanwhile.
    others_cores: float

    @property
    def other(self) -> float:
        """Client CPU outside the decoder and the assembly: driver, loop, bridge."""
        return max(0.0, self.client_cpu - self.decode - self.assemble)


def _jvm_cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(way: str, contact_points: list[str], pids: Sequence[int]) -> Measure:
    """Run one way in a fresh process and return its costs, server CPU included."""
    command = [sys.executable, os.path.abspath(__file__), "--child", way]
    command += ["--contact-points", ",".join(contact_points)]
    # The servers' CPU over the child's whole life (connecting included) is close to their
    # CPU for the read: connecting costs the nodes a few milliseconds. Whatever else the
    # machine did meanwhile (other processes) is counted apart, as cores taken by others.
    before = (_jvm_cpu(pids), _busy_seconds(), _children_cpu(), time.perf_counter())
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate()
    after = (_jvm_cpu(pids), _busy_seconds(), _children_cpu(), time.perf_counter())
    if process.returncode != 0:
        raise SystemExit(f"{way} failed")
    server = after[0] - before[0]
    others = (after[1] - before[1]) - server - (after[2] - before[2])
    result = json.loads(out.strip().splitlines()[-1])
    return Measure(
        way=way,
        server_cpu=server,
        others_cores=max(0.0, others) / (after[3] - before[3]),
        **{**result, "rows": int(result["rows"])},
    )


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def explain(cql: Measure, table: Measure, nodes: int) -> list[str]:
    """Say where the time went, and estimate the ratio with the client on its own machine.

    Here the client, the nodes and other processes share the cores, so a read's wall time
    is at least its CPU (client + servers) divided by the cores others left it. With the
    client on its own machine and nothing else running, with C its client CPU, S its
    servers' CPU and K the cores:

    - read_table keeps several ranges in flight on every node, enough to fill the cores:
      about max(C, S / K). C does not shrink: one process decodes everything, and its
      threads share one interpreter lock.
    - read_cql asks for one page at a time from one coordinator; a page's server work is a
      chain (coordinator, owner, back) that overlaps little, and the client decodes while
      the next page is computed: between max(C, S / K) (if the servers' work overlapped
      perfectly) and max(C, S) (if it were one chain).

    With each node on its own K cores, read_table's server share becomes S / (nodes * K).
    """
    cores = _cores()
    lines = [f"this machine: {cores} cores, shared by the client, {nodes} nodes and others"]
    for m in (cql, table):
        busy = (m.client_cpu + m.server_cpu) / m.wall
        lines.append(
            f"{m.way}: servers {m.server_cpu:.2f} s CPU, client {m.client_cpu:.2f} s CPU "
            f"(decode {m.decode:.2f}, assembly {m.assemble:.2f}, driver and loop "
            f"{m.other:.2f}) in {m.wall:.2f} s: it kept {busy:.2f} cores busy, other "
            f"processes {m.others_cores:.2f}"
        )
    table_alone = max(table.client_cpu, table.server_cpu / cores)
    cql_low = max(cql.client_cpu, cql.server_cpu / cores)
    cql_high = max(cql.client_cpu, cql.server_cpu)
    lines.append(
        f"client on its own machine: read_table ~{table_alone:.2f} s, read_cql "
        f"{cql_low:.2f} to {cql_high:.2f} s: read_table {cql_low / table_alone:.1f}x to "
        f"{cql_high / table_alone:.1f}x faster"
    )
    spread = max(table.client_cpu, table.server_cpu / (nodes * cores))
    bound = "client" if table.client_cpu * nodes * cores >= table.server_cpu else "servers"
    lines.append(
        f"each node on its own {cores} cores too: read_table ~{spread:.2f} s (bound by the "
        f"{bound}): {cql_low / spread:.1f}x to {cql_high / spread:.1f}x faster than read_cql"
    )
    lines.append(
        f"servers' CPU per row: read_table {table.server_cpu / cql.server_cpu:.2f}x of "
        "read_cql's (each range is read on its owner; one coordinator forwards most ranges)"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table")
    parser.add_argument(
        "--no-native",
        action="store_true",
        help="decode pages with the pure-Python decoder (CASSNB_NO_NATIVE=1)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each way, alternating; the fastest counts"
    )
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--contact-points", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.contact_points.split(","))))
        return 0

    cluster, started = local.start(TRIO[1], TRIO[0])
    try:
        pids = [node.pid for node in cluster.nodes if node.pid is not None]
        contact_points = list(cluster.contact_points)
        asyncio.run(ensure_table(contact_points, args.rows))
        if args.no_native:
            os.environ["CASSNB_NO_NATIVE"] = "1"
        runs = [measure(way, contact_points, pids) for _ in range(args.repeat) for way in WAYS]
        results = {
            way: min((m for m in runs if m.way == way), key=lambda m: m.wall) for way in WAYS
        }
    finally:
        if started:
            local.stop(TRIO[0], quiet=True)
    cql, table = results["read_cql"], results["read_table"]

    decoder = "pure-Python" if args.no_native else "native (compiled, when built)"
    print(
        f"\n{args.rows:,} rows over {len(pids)} nodes, each way in its own process "
        f"(fastest of {args.repeat})"
    )
    print(f"page decoder: {decoder}; used: {cql.decoder}")
    print(
        f"{'way':<11} {'rows':>9} {'wall s':>7} {'client CPU s':>13} {'decode':>7} "
        f"{'assembly':>8} {'driver+loop':>11} {'server CPU s':>12}"
    )
    for m in results.values():
        print(
            f"{m.way:<11} {m.rows:>9,} {m.wall:>7.2f} {m.client_cpu:>13.2f} {m.decode:>7.2f} "
            f"{m.assemble:>8.2f} {m.other:>11.2f} {m.server_cpu:>12.2f}"
        )
    if cql.rows != table.rows:
        raise SystemExit(f"row counts differ: {cql.rows} vs {table.rows}")
    print(
        f"\nwall: read_table {table.wall:.2f} s vs read_cql {cql.wall:.2f} s: "
        f"{cql.wall / table.wall:.2f}x; client CPU {table.client_cpu / cql.client_cpu:.2f}x "
        "of read_cql's"
    )
    print("\n".join(explain(cql, table, len(pids))))
    print(json.dumps({way: asdict(m) for way, m in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
