"""Opening, closing and tracking: fast closes, clear misuse errors, the registry, loops."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from _core_data import KEYSPACE, Data

import cassnb
from cassnb import (
    AsyncCluster,
    AsyncSession,
    ConfigurationError,
    ConnectionError,
    StreamConfig,
)
from cassnb._core.registry import CloseCounts, close_all, close_all_sync, open_counts


@pytest.fixture(autouse=True)
def no_default_session() -> Iterator[None]:
    cassnb.set_default_session(None)
    yield
    cassnb.set_default_session(None)


async def test_closing_takes_well_under_a_second(data: Data) -> None:
    cluster = AsyncCluster(data.contact_points)
    session = await cluster.connect(KEYSPACE)
    other = await cluster.connect()
    statement = await session.prepare("SELECT c FROM paged WHERE p = ?")
    await session.execute(statement, [0])
    stream = await session.execute_stream(
        "SELECT * FROM big", stream_config=StreamConfig(fetch_size=5000)
    )
    await stream.__anext__()
    pending = [asyncio.create_task(session.execute("SELECT * FROM big")) for _ in range(4)]
    await asyncio.sleep(0.02)

    started = time.perf_counter()
    await session.close()
    session_close = time.perf_counter() - started
    started = time.perf_counter()
    await cluster.shutdown()
    cluster_shutdown = time.perf_counter() - started
    print(
        f"\nsession.close() {session_close * 1000:.1f} ms, "
        f"cluster.shutdown() {cluster_shutdown * 1000:.1f} ms"
    )
    assert session_close < 1
    assert cluster_shutdown < 1
    assert stream.is_closed
    assert other.is_closed

    started = time.perf_counter()
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert time.perf_counter() - started < 1
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes), outcomes


async def test_use_after_close_is_a_clear_error(data: Data) -> None:
    cluster = AsyncCluster(data.contact_points)
    session = await cluster.connect(KEYSPACE)
    await session.close()
    await session.close()
    with pytest.raises(ConnectionError, match="session is closed"):
        await session.execute("SELECT * FROM kv")
    with pytest.raises(ConnectionError, match="session is closed"):
        await session.execute_stream("SELECT * FROM kv")
    with pytest.raises(ConnectionError, match="session is closed"):
        await session.prepare("SELECT * FROM kv")
    await cluster.shutdown()
    await cluster.shutdown()
    with pytest.raises(ConnectionError, match="shut down"):
        await cluster.connect()
    assert "closed" in repr(cluster)
    assert "closed" in repr(session)


async def test_cancelled_connect_leaves_no_session_behind(
    data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.collect()
    sessions_before = open_counts().sessions
    async with AsyncCluster(data.contact_points) as cluster:
        # Cancelled while the driver connects on its worker thread: the session it then
        # makes must be shut down, since nobody will receive it.
        entered = threading.Event()
        connect_blocking = cluster._connect_blocking

        def entering(keyspace: str | None) -> Any:
            entered.set()
            time.sleep(0.05)
            return connect_blocking(keyspace)

        monkeypatch.setattr(cluster, "_connect_blocking", entering)
        task = asyncio.create_task(_connect(cluster))
        await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        made: list[Any] = []
        for _ in range(500):
            made = list(cluster._cluster.sessions) if cluster._cluster is not None else []
            if made and all(driver_session.is_shutdown for driver_session in made):
                break
            await asyncio.sleep(0.01)
        assert made
        assert all(driver_session.is_shutdown for driver_session in made)
        assert open_counts().sessions == sessions_before


async def _connect(cluster: AsyncCluster) -> AsyncSession:
    return await cluster.connect(KEYSPACE)


def test_close_counts_read_well() -> None:
    assert str(CloseCounts(3, 1, 1)) == "closed 3 streams, 1 session, 1 cluster"
    assert str(CloseCounts(1, 2, 0)) == "closed 1 stream, 2 sessions, 0 clusters"


async def _open_everything(data: Data) -> tuple[AsyncCluster, AsyncSession, list[object]]:
    cluster = AsyncCluster(data.contact_points)
    session = await cluster.connect(KEYSPACE)
    config = StreamConfig(fetch_size=10)
    streams: list[object] = [
        await session.execute_stream("SELECT c FROM paged WHERE p = 0", stream_config=config)
        for _ in range(3)
    ]
    return cluster, session, streams


async def test_close_all_from_a_running_loop(data: Data, caplog: pytest.LogCaptureFixture) -> None:
    gc.collect()
    assert open_counts() == (0, 0, 0)
    cluster, session, streams = await _open_everything(data)
    assert open_counts() == (3, 1, 1)
    caplog.set_level(logging.INFO, logger="cassnb")
    started = time.perf_counter()
    counts = close_all_sync(timeout=2)
    elapsed = time.perf_counter() - started
    assert counts == (3, 1, 1)
    assert "closed 3 streams, 1 session, 1 cluster" in caplog.messages
    assert elapsed < 1
    assert session.is_closed
    assert cluster.is_closed
    assert open_counts() == (0, 0, 0)
    assert close_all_sync(timeout=1) == (0, 0, 0)
    del streams


async def test_close_all_awaited(data: Data) -> None:
    gc.collect()
    cluster, session, streams = await _open_everything(data)
    assert await close_all(timeout=2) == (3, 1, 1)
    assert session.is_closed
    assert cluster.is_closed
    del streams


def test_close_all_without_a_loop(data: Data) -> None:
    gc.collect()
    cluster, session, streams = asyncio.run(_open_everything(data))
    assert close_all_sync(timeout=2) == (3, 1, 1)
    assert session.is_closed
    assert cluster.is_closed
    del streams


def test_exit_closes_what_is_left_open(data: Data) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, logging
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        from cassnb import AsyncCluster, StreamConfig

        async def main():
            cluster = AsyncCluster({data.contact_points!r})
            session = await cluster.connect({KEYSPACE!r})
            stream = await session.execute_stream(
                "SELECT c FROM paged WHERE p = 0", stream_config=StreamConfig(fetch_size=10)
            )
            await stream.__anext__()
            return cluster, session, stream

        kept = asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore::ResourceWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "cassnb: closed 1 stream, 1 session, 1 cluster" in result.stderr


async def test_default_session(session: AsyncSession) -> None:
    with pytest.raises(ConfigurationError, match="no default session"):
        cassnb.get_default_session()
    cassnb.set_default_session(session)
    assert cassnb.get_default_session() is session
    with pytest.raises(ConfigurationError, match="AsyncSession"):
        cassnb.set_default_session("not a session")  # type: ignore[arg-type]
    await session.close()
    with pytest.raises(ConnectionError, match="default session is closed"):
        cassnb.get_default_session()
    cassnb.set_default_session(None)
    with pytest.raises(ConfigurationError):
        cassnb.get_default_session()


async def test_connect_and_queries_print_no_driver_warnings(
    data: Data, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with (
            AsyncCluster(data.contact_points) as cluster,
            cluster.connect(KEYSPACE) as session,
        ):
            await session.execute("SELECT * FROM kv LIMIT 3")
            # Preparing on a session with a keyspace draws a server warning, and so does an
            # aggregate over a whole table: both belong to the result, not to stderr.
            statement = await session.prepare("SELECT c FROM paged WHERE p = ?")
            await session.execute(statement, [0])
            counted = await session.execute("SELECT count(*) FROM kv")
            assert counted.warnings
            async with await session.execute_stream("SELECT c FROM paged WHERE p = 0") as stream:
                async for _row in stream:
                    pass
    noisy = [r for r in caplog.records if r.name.startswith("cassandra")]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert [str(w.message) for w in caught if "cassandra" in w.filename] == []


def test_one_session_from_several_loops_in_several_threads(data: Data) -> None:
    async def open_session() -> tuple[AsyncCluster, AsyncSession]:
        cluster = AsyncCluster(data.contact_points)
        return cluster, await cluster.connect(KEYSPACE)

    cluster, session = asyncio.run(open_session())
    results: dict[str, object] = {}

    async def work(name: str) -> None:
        rows = await asyncio.gather(
            *(session.execute("SELECT c FROM paged WHERE p = 0 LIMIT 50") for _ in range(20))
        )
        config = StreamConfig(fetch_size=100)
        async with await session.execute_stream(
            "SELECT c FROM paged WHERE p = 0", stream_config=config
        ) as stream:
            streamed = [row.c async for row in stream]
        results[name] = (sum(len(r) for r in rows), len(streamed))

    def run_loop(name: str) -> None:
        try:
            asyncio.run(work(name))
        except BaseException as exc:
            results[name] = exc

    threads = [threading.Thread(target=run_loop, args=(f"t{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    asyncio.run(cluster.shutdown())
    assert results == {f"t{n}": (1000, 3000) for n in range(3)}


async def _settle() -> None:
    # An awaited result stays referenced until the awaiting task yields again.
    for _ in range(3):
        await asyncio.sleep(0)


async def _drop_a_session(cluster: AsyncCluster) -> object:
    session = await cluster.connect(KEYSPACE)
    driver_session = session._session
    del session
    await _settle()
    return driver_session


async def _drop_a_cluster(data: Data) -> object:
    cluster = AsyncCluster(data.contact_points)
    await (await cluster.connect()).close()
    driver_cluster = cluster._cluster
    del cluster
    await _settle()
    return driver_cluster


async def test_unclosed_session_and_cluster_warn_and_close(
    cluster: AsyncCluster, data: Data
) -> None:
    with pytest.warns(ResourceWarning, match="unclosed <AsyncSession"):
        driver_session: Any = await _drop_a_session(cluster)
    with pytest.warns(ResourceWarning, match="unclosed <AsyncCluster"):
        driver_cluster: Any = await _drop_a_cluster(data)
    for _ in range(200):
        if driver_session.is_shutdown and driver_cluster.is_shutdown:
            break
        await asyncio.sleep(0.01)
    assert driver_session.is_shutdown
    assert driver_cluster.is_shutdown


def test_a_cluster_that_never_connected_needs_no_shutdown() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        cluster = AsyncCluster(["127.0.0.1"])
        del cluster
        gc.collect()
