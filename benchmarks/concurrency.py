"""Throughput of prepared point reads: cassnb against the driver's own concurrent paths.

Run against a node (``python -m cassnb.local start``)::

    python benchmarks/concurrency.py [--requests 20000] [--in-flight 256] [--rounds 3]

Each path reads the same rows through one prepared statement with at most ``in_flight``
requests outstanding: cassnb with ``asyncio.gather`` and a semaphore, the driver's
``execute_concurrent_with_args``, and raw ``execute_async`` callbacks. The driver paths
use its fastest row factory (plain tuples); cassnb builds its ``Row`` objects. The best of
the rounds counts for each path.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import tuple_factory

from cassnb import AsyncCluster

KEYSPACE = "cassnb_bench"
KEYS = 1_000
SELECT = f"SELECT k, v FROM {KEYSPACE}.kv WHERE k = ?"


def keys(requests: int) -> list[tuple[int]]:
    return [(n % KEYS,) for n in range(requests)]


async def prepare_data(contact_points: list[str], port: int) -> None:
    async with AsyncCluster(contact_points, port) as cluster, cluster.connect() as session:
        await session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
            timeout=60,
        )
        await session.execute(
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.kv (k int PRIMARY KEY, v text)", timeout=60
        )
        count = (await session.execute(f"SELECT count(*) FROM {KEYSPACE}.kv")).one()
        if count is not None and count[0] == KEYS:
            return
        insert = await session.prepare(f"INSERT INTO {KEYSPACE}.kv (k, v) VALUES (?, ?)")
        limit = asyncio.Semaphore(256)

        async def one(key: int) -> None:
            async with limit:
                await session.execute(insert, [key, f"value {key:06d}"])

        await asyncio.gather(*(one(key) for key in range(KEYS)))


async def run_cassnb(contact_points: list[str], port: int, requests: int, in_flight: int) -> float:
    async with AsyncCluster(contact_points, port) as cluster, cluster.connect() as session:
        statement = await session.prepare(SELECT)
        limit = asyncio.Semaphore(in_flight)

        async def one(values: tuple[int]) -> None:
            async with limit:
                result = await session.execute(statement, values)
                assert len(result) == 1

        warm = keys(1_000)
        await asyncio.gather(*(one(values) for values in warm))
        work = keys(requests)
        started = time.perf_counter()
        await asyncio.gather(*(one(values) for values in work))
        return time.perf_counter() - started


def driver_session(contact_points: list[str], port: int) -> tuple[Cluster, Session]:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        row_factory=tuple_factory,
    )
    cluster = Cluster(
        contact_points,
        port=port,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    return cluster, cluster.connect()


def run_execute_concurrent(
    contact_points: list[str], port: int, requests: int, in_flight: int
) -> float:
    cluster, session = driver_session(contact_points, port)
    try:
        statement = session.prepare(SELECT)
        execute_concurrent_with_args(session, statement, keys(1_000), concurrency=in_flight)
        work = keys(requests)
        started = time.perf_counter()
        results = execute_concurrent_with_args(session, statement, work, concurrency=in_flight)
        elapsed = time.perf_counter() - started
        assert all(success for success, _ in results)
        return elapsed
    finally:
        cluster.shutdown()


def _callback_run(session: Session, statement: Any, work: list[tuple[int]], in_flight: int) -> None:
    """Keep ``in_flight`` requests going with execute_async callbacks until all are done."""
    lock = threading.Lock()
    done = threading.Event()
    position = 0
    finished = 0
    errors: list[BaseException] = []

    def launch() -> None:
        nonlocal position
        with lock:
            if position >= len(work):
                return
            values = work[position]
            position += 1
        future = session.execute_async(statement, values)
        future.add_callbacks(on_rows, on_error)

    def on_rows(_rows: Any) -> None:
        nonlocal finished
        with lock:
            finished += 1
            complete = finished == len(work)
        if complete:
            done.set()
        else:
            launch()

    def on_error(exc: BaseException) -> None:
        errors.append(exc)
        done.set()

    for _ in range(min(in_flight, len(work))):
        launch()
    done.wait()
    if errors:
        raise errors[0]


def run_execute_async(contact_points: list[str], port: int, requests: int, in_flight: int) -> float:
    cluster, session = driver_session(contact_points, port)
    try:
        statement = session.prepare(SELECT)
        _callback_run(session, statement, keys(1_000), in_flight)
        work = keys(requests)
        started = time.perf_counter()
        _callback_run(session, statement, work, in_flight)
        return time.perf_counter() - started
    finally:
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contact-points", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9042)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    points = options.contact_points.split(",")
    asyncio.run(prepare_data(points, options.port))

    paths: dict[str, Callable[[], float]] = {
        "cassnb (gather + semaphore)": lambda: asyncio.run(
            run_cassnb(points, options.port, options.requests, options.in_flight)
        ),
        "driver execute_concurrent_with_args": lambda: run_execute_concurrent(
            points, options.port, options.requests, options.in_flight
        ),
        "driver execute_async callbacks": lambda: run_execute_async(
            points, options.port, options.requests, options.in_flight
        ),
    }
    best: dict[str, float] = {}
    for _ in range(options.rounds):
        for name, run in paths.items():
            elapsed = run()
            best[name] = min(elapsed, best.get(name, elapsed))

    rates = {name: options.requests / elapsed for name, elapsed in best.items()}
    print(
        f"{options.requests:,} prepared point reads, at most {options.in_flight} in flight, "
        f"best of {options.rounds} rounds"
    )
    for name, rate in rates.items():
        print(f"  {name:<46} {rate:>9,.0f} requests/s")
    ours = rates["cassnb (gather + semaphore)"]
    driver = {name: rate for name, rate in rates.items() if name.startswith("driver")}
    for name, rate in driver.items():
        print(f"  {'cassnb / ' + name:<46} {ours / rate:>9.2f}x")
    print(f"  {'cassnb / best driver path':<46} {ours / max(driver.values()):>9.2f}x")


if __name__ == "__main__":
    main()
