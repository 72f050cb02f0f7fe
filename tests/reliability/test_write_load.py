"""Load: many prepared writes at bounded concurrency, all present afterwards, memory flat."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from typing import Any

from _reliability import KEYSPACE, report, rss_mb, sized

from cassnb import AsyncSession, StreamConfig

ROWS = sized(20_000, 100_000)
#: Requests in flight at once: far more than a connection pool of a few connections with a
#: few hundred requests each would allow, all on the node's one connection.
IN_FLIGHT = 2_000
WARM_UP_ROWS = 4_000
#: How much the client's RSS may grow over the run, in MB, once warmed up.
RSS_GROWTH_LIMIT_MB = 40.0


class Sampler:
    """Watches the loop's lag, the client's RSS and the driver connections' in-flight count."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self.max_lag_s = 0.0
        self.max_rss_mb = 0.0
        self.max_in_flight_per_connection = 0
        self.stream_ids_per_connection = 0

    def _connections(self) -> list[Any]:
        pools = self._session._session._pools.values()
        return [pool._connection for pool in pools if pool._connection is not None]

    async def run(self) -> None:
        every = 0.02
        while True:
            began = time.monotonic()
            await asyncio.sleep(every)
            self.max_lag_s = max(self.max_lag_s, time.monotonic() - began - every)
            self.max_rss_mb = max(self.max_rss_mb, rss_mb())
            for connection in self._connections():
                self.max_in_flight_per_connection = max(
                    self.max_in_flight_per_connection, connection.in_flight
                )
                self.stream_ids_per_connection = connection.max_request_id + 1


async def _write(session: AsyncSession, run: str, keys: range, in_flight: int) -> int:
    """Write one row per key with ``in_flight`` workers; return the most in flight at once."""
    insert = await session.prepare(f"INSERT INTO {KEYSPACE}.writes (run, k, v) VALUES (?, ?, ?)")
    pending = iter(keys)
    busy = 0
    peak = 0

    async def worker() -> None:
        nonlocal busy, peak
        for k in pending:
            busy += 1
            peak = max(peak, busy)
            try:
                await session.execute(insert, (run, k, f"value {k}"), timeout=60)
            finally:
                busy -= 1

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return peak


async def _keys_written(session: AsyncSession, run: str) -> list[int]:
    select = await session.prepare(f"SELECT k FROM {KEYSPACE}.writes WHERE run = ?")
    keys: list[int] = []
    stream = await session.execute_stream(
        select, (run,), stream_config=StreamConfig(fetch_size=5_000), timeout=60
    )
    async with stream:
        async for page in stream.pages():
            keys.extend(row[0] for row in page)
    return keys


async def test_prepared_writes_at_bounded_concurrency_all_land(session: AsyncSession) -> None:
    run = uuid.uuid4().hex
    # The first thousands of requests grow the driver's and the loop's buffers once.
    await _write(session, f"{run}-warm-up", range(WARM_UP_ROWS), IN_FLIGHT)
    gc.collect()
    rss_start = rss_mb()

    sampler = Sampler(session)
    watching = asyncio.create_task(sampler.run())
    began = time.monotonic()
    try:
        peak = await _write(session, run, range(ROWS), IN_FLIGHT)
    finally:
        watching.cancel()
    elapsed = time.monotonic() - began
    gc.collect()
    rss_end = rss_mb()

    keys = await _keys_written(session, run)
    assert len(keys) == ROWS
    assert set(keys) == set(range(ROWS))
    report(
        "prepared writes",
        rows_checked=len(keys),
        in_flight=peak,
        max_in_flight_one_connection=sampler.max_in_flight_per_connection,
        stream_ids_per_connection=sampler.stream_ids_per_connection,
        writes_per_s=ROWS / elapsed,
        max_loop_lag_ms=sampler.max_lag_s * 1000,
        rss_start_mb=rss_start,
        rss_peak_mb=sampler.max_rss_mb,
        rss_end_mb=rss_end,
    )
    assert peak == IN_FLIGHT
    assert sampler.max_in_flight_per_connection > 1_000
    assert rss_end - rss_start < RSS_GROWTH_LIMIT_MB
