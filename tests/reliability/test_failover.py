"""Three nodes, RF 3: a node killed mid-stream, restarted while idle, frozen; all of them down.

A stream survives its coordinator's death because the driver retries a page request that
failed on a broken connection on the next host of a fresh query plan, carrying the same
paging state; the server's paging state does not depend on the coordinator, so the
stream goes on from the row after the last one it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _reliability import eventually, report, sized
from cassandra import ReadTimeout
from cassandra.policies import RetryPolicy, WhiteListRoundRobinPolicy
from cassandra.query import BatchStatement, BatchType, SimpleStatement

from cassnb import (
    AsyncCluster,
    AsyncSession,
    ConnectionError,
    QueryTimeout,
    StreamConfig,
    local,
    read_cql,
)
from cassnb._driver.fast import reads as fast_reads

pytestmark = pytest.mark.cluster3

KEYSPACE = "cassnb_rel_failover"
ROWS = sized(50_000, 500_000)
ROWS_PER_PARTITION = 100
FETCH_SIZE = 1_000
TABLE = f"{KEYSPACE}.rows_{ROWS}"
#: How long a restarted node may take to serve queries again once it answers CQL.
BACK_IN_SERVICE_S = 10.0
COMMITLOG_SYNC_S = 11.0


async def _load(three_nodes: local.ClusterInfo) -> None:
    async with (
        AsyncCluster(three_nodes.contact_points, three_nodes.port) as cluster,
        cluster.connect() as session,
    ):
        await session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 3}",
            timeout=60,
        )
        await session.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (p int, c int, v text, PRIMARY KEY (p, c))",
            timeout=60,
        )
        # Written again on every run, at ALL: an earlier run's crashes may have left a
        # replica without some rows, and a read at ONE from it would miss them.
        began = time.monotonic()
        insert = await session.prepare(f"INSERT INTO {TABLE} (p, c, v) VALUES (?, ?, ?)")
        limit = asyncio.Semaphore(32)

        async def partition(p: int) -> None:
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for c in range(ROWS_PER_PARTITION):
                batch.add(insert, (p, c, f"row {p}-{c}"))
            async with limit:
                await session.execute_batch(batch, consistency="ALL", timeout=60)

        await asyncio.gather(*(partition(p) for p in range(ROWS // ROWS_PER_PARTITION)))
    loaded_s = time.monotonic() - began
    # The nodes sync their commit log every 10 s (commitlog_sync: periodic): a node killed
    # sooner would come back without the newest writes, as Cassandra documents.
    await asyncio.sleep(COMMITLOG_SYNC_S)
    report("failover data loaded", rows=ROWS, seconds=loaded_s, then_waited_s=COMMITLOG_SYNC_S)


@pytest.fixture(scope="module")
def loaded(three_nodes: local.ClusterInfo) -> local.ClusterInfo:
    """The three nodes, with every row of the RF 3 table on every replica."""
    asyncio.run(_load(three_nodes))
    return three_nodes


@pytest.fixture
async def session(loaded: local.ClusterInfo) -> AsyncIterator[AsyncSession]:
    """A session on the three nodes."""
    async with (
        AsyncCluster(loaded.contact_points, loaded.port) as cluster,
        cluster.connect() as session,
    ):
        yield session


def _node_index(three_nodes: local.ClusterInfo, address: str) -> int:
    return three_nodes.contact_points.index(address) + 1


async def _coordinator(session: AsyncSession) -> str:
    # Generous: the nodes are busy replaying and gossiping right after a restart.
    query = "SELECT broadcast_address FROM system.local"
    row = (await session.execute(query, timeout=10)).one()
    assert row is not None
    return str(row[0])


async def _first_cql_answer(addresses: list[str]) -> float:
    """Poll the nodes over CQL; return the moment the first of them answers."""
    while True:
        for address in addresses:
            try:
                await asyncio.to_thread(local.query_release_version, address, timeout=0.5)
            except OSError:
                continue
            return time.monotonic()
        await asyncio.sleep(0.1)


async def _restart(
    three_nodes: local.ClusterInfo,
    addresses: list[str],
    serving: Callable[[], Awaitable[bool]],
) -> dict[str, float]:
    """Start the missing nodes again; time the start, and the session's return to service.

    ``back_in_service_s`` counts from the moment the first of ``addresses`` answers CQL
    to the first time ``serving()`` is true, with no action on the session in between.
    """
    began = time.monotonic()
    starting = asyncio.create_task(
        asyncio.to_thread(local.start, three_nodes.options, three_nodes.name)
    )
    answering = asyncio.create_task(_first_cql_answer(addresses))
    try:
        await eventually(serving, within=240, every=0.2)
        served_at = time.monotonic()
        answered_at = await answering
        await starting
    finally:
        answering.cancel()
    return {
        "restart_s": time.monotonic() - began,
        "back_in_service_s": max(served_at - answered_at, 0.0),
    }


async def _restart_node(
    session: AsyncSession, three_nodes: local.ClusterInfo, index: int
) -> dict[str, float]:
    """Start one killed node again; it is back once it coordinates a query of the session."""
    address = three_nodes.contact_points[index - 1]

    async def coordinates_again() -> bool:
        # Round robin over the hosts the driver has up: three tries reach each once.
        answered = {await _coordinator(session) for _ in range(3)}
        return address in answered

    recovery = await _restart(three_nodes, [address], coordinates_again)
    await _wait_for_full_ring(session)
    return recovery


async def _wait_for_full_ring(session: AsyncSession) -> None:
    """Wait until reads at ALL succeed from every coordinator in turn."""
    probe = f"SELECT p FROM {TABLE} WHERE p = 0 LIMIT 1"

    async def all_replicas_up() -> bool:
        for _ in range(6):
            await session.execute(probe, consistency="ALL", timeout=5)
        return True

    await eventually(all_replicas_up, within=90, every=0.5)


class PatientRetryPolicy(RetryPolicy):
    """Retries a read the replicas (or its coordinator) did not answer in time, a few times.

    A coordinator sends to a replica just killed until it convicts it (some 10 to 20 s), so a
    read at QUORUM may time out meanwhile; the driver's RetryPolicy retries that only when
    enough replicas answered, and never twice. A user who wants such reads to wait for the
    ring to settle says so with a policy like this one, which the driver then applies to
    every page, as cassnb does.
    """

    def on_read_timeout(
        self, query: Any, consistency: Any, *args: Any, retry_num: int, **kwargs: Any
    ) -> Any:
        return (self.RETRY, consistency) if retry_num < 5 else (self.RETHROW, None)

    def on_request_error(self, query: Any, consistency: Any, error: Any, retry_num: int) -> Any:
        # A coordinator waiting on the killed replica lets the client's timeout expire
        # first; asked again, a coordinator that has convicted it answers.
        return (self.RETRY, None) if retry_num < 5 else (self.RETHROW, None)

    def on_unavailable(
        self, query: Any, consistency: Any, *args: Any, retry_num: int, **kwargs: Any
    ) -> Any:
        return (self.RETRY_NEXT_HOST, None) if retry_num < 5 else (self.RETHROW, None)


@pytest.mark.parametrize("consistency", ["ONE", "QUORUM"])
async def test_stream_survives_its_coordinator_being_killed(
    session: AsyncSession,
    three_nodes: local.ClusterInfo,
    consistency: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cassnb")
    seen: set[tuple[int, int]] = set()
    duplicates = 0
    killed: int | None = None
    in_flight_at_kill = False
    killed_at_row = 0
    requests: list[Any] = []  # the driver's futures: the first, and any resumed one
    began = time.monotonic()
    try:
        stream = await session.execute_stream(
            SimpleStatement(f"SELECT p, c FROM {TABLE}", retry_policy=PatientRetryPolicy()),
            stream_config=StreamConfig(fetch_size=FETCH_SIZE),
            consistency=consistency,
            timeout=30,
        )
        async with stream:
            async for page in stream.pages():
                feed = stream._state.feed
                if feed is not None and all(feed.read.response_future is not r for r in requests):
                    requests.append(feed.read.response_future)
                for p, c in page:
                    if (p, c) in seen:
                        duplicates += 1
                    seen.add((p, c))
                if killed is None and len(seen) >= ROWS // 2:
                    # The next page was requested as this one was handed over (prefetch):
                    # kill the node that request went to, while it is in flight.
                    assert feed is not None
                    in_flight_at_kill = stream._state.requesting
                    host = feed.read.response_future._current_host
                    killed = _node_index(three_nodes, host.endpoint.address)
                    await asyncio.to_thread(local.kill_node, three_nodes.name, killed)
                    killed_at_row = len(seen)
            rows_fetched = stream.rows_fetched
        elapsed = time.monotonic() - began
        expected = {
            (p, c) for p in range(ROWS // ROWS_PER_PARTITION) for c in range(ROWS_PER_PARTITION)
        }
        assert killed is not None
        assert duplicates == 0
        assert rows_fetched == ROWS
        assert seen == expected
        retries = sum(request._query_retries for request in requests)
        resumes = sum("asked again from its last page" in r.getMessage() for r in caplog.records)
        failed = {
            f"{host}: {type(error).__name__}" for r in requests for host, error in r._errors.items()
        }
    finally:
        if killed is not None:
            recovery = await _restart_node(session, three_nodes, killed)
    report(
        f"stream through a coordinator kill at {consistency}",
        rows_checked=len(seen),
        duplicates=duplicates,
        killed_node=killed,
        killed_at_row=killed_at_row,
        page_in_flight_at_kill=in_flight_at_kill,
        driver_retries=retries,
        stream_resumes=resumes,
        failures=sorted(failed),
        stream_s=elapsed,
        **recovery,
    )


async def test_a_whole_read_survives_its_coordinator_being_killed(
    session: AsyncSession, three_nodes: local.ClusterInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_cql's pages are asked for by the driver's thread, back to back, once they arrive
    decoded; a coordinator killed meanwhile loses no row and repeats none."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.current_thread()
    asked: list[Any] = []  # the requests the driver's thread asked a next page of
    reached = asyncio.Event()
    ask = fast_reads.start_next_page

    def spy(response_future: Any) -> None:
        if threading.current_thread() is not loop_thread:
            asked.append(response_future)
            if len(asked) == 50:
                loop.call_soon_threadsafe(reached.set)
        ask(response_future)

    monkeypatch.setattr(fast_reads, "start_next_page", spy)
    killed: int | None = None
    asked_at_kill = 0

    async def kill_the_coordinator() -> None:
        nonlocal killed, asked_at_kill
        await reached.wait()
        host = asked[-1]._current_host
        killed = _node_index(three_nodes, host.endpoint.address)
        await asyncio.to_thread(local.kill_node, three_nodes.name, killed)
        asked_at_kill = len(asked)

    began = time.monotonic()
    killer = asyncio.create_task(kill_the_coordinator())
    try:
        statement = SimpleStatement(f"SELECT p, c FROM {TABLE}", retry_policy=PatientRetryPolicy())
        frame = await read_cql(statement, session, fetch_size=100)
        elapsed = time.monotonic() - began
        assert killer.done() and killed is not None
        # The read went on after the kill, still asked for by the driver's thread.
        assert len(asked) > asked_at_kill
        assert len(frame) == ROWS
        assert not frame.duplicated(["p", "c"]).any()
        assert frame["p"].between(0, ROWS // ROWS_PER_PARTITION - 1).all()
        assert frame["c"].between(0, ROWS_PER_PARTITION - 1).all()
    finally:
        killer.cancel()
        if killed is not None:
            recovery = await _restart_node(session, three_nodes, killed)
    report(
        "whole read through a coordinator kill",
        rows=len(frame),
        killed_node=killed,
        pages_asked_by_driver_thread=len(asked),
        asked_at_kill=asked_at_kill,
        read_s=elapsed,
        **recovery,
    )


async def test_idle_session_uses_a_restarted_node_again(
    session: AsyncSession, three_nodes: local.ClusterInfo
) -> None:
    index = 2
    address = three_nodes.contact_points[index - 1]

    async def uses_every_node() -> bool:
        # A fresh session may still be opening its pools to nodes that were restarted a
        # moment ago: the scenario starts from a session that has used all three.
        answered = {await _coordinator(session) for _ in range(6)}
        return answered == set(three_nodes.contact_points)

    await eventually(uses_every_node, within=60, every=0.5)
    await asyncio.to_thread(local.kill_node, three_nodes.name, index)
    try:
        # The other two keep serving while it is down.
        answered = {await _coordinator(session) for _ in range(6)}
        assert address not in answered
        assert len(answered) == 2
    finally:
        recovery = await _restart_node(session, three_nodes, index)
    report("idle session, one node restarted", node=index, **recovery)
    assert recovery["back_in_service_s"] < BACK_IN_SERVICE_S


@contextlib.contextmanager
def _paused(three_nodes: local.ClusterInfo, index: int) -> Iterator[int]:
    """Freeze one node's JVM (SIGSTOP) and give its pid: its sockets stay open but it
    answers nothing."""
    info = local.status(three_nodes.name)
    assert info is not None
    pid = info.nodes[index - 1].pid
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # kill() returns before the kernel has stopped every thread of the JVM.
        deadline = time.monotonic() + 5.0
        while not _stopped(pid):
            assert time.monotonic() < deadline, f"node {index} (pid {pid}) did not stop"
            time.sleep(0.01)
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def _stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped (state T in /proc)."""
    try:
        stats = [(task / "stat").read_text() for task in Path(f"/proc/{pid}/task").iterdir()]
    except FileNotFoundError:  # a thread ended while being listed
        return False
    # The state follows the command name, which is in parentheses and may hold spaces.
    return all(stat.rsplit(")", 1)[1].split()[0] in ("T", "t") for stat in stats)


async def test_a_replica_that_stops_answering_gives_a_server_read_timeout(
    session: AsyncSession, three_nodes: local.ClusterInfo
) -> None:
    """A read at ALL whose third replica is frozen: the coordinator gives up after its own
    read timeout (read_request_timeout, 5 s) and says so; the client's timeout is longer."""
    coordinator, frozen = three_nodes.contact_points[0], 3
    statement = f"SELECT v FROM {TABLE} WHERE p = 0 AND c = 0"
    async with (
        AsyncCluster(
            [coordinator],
            three_nodes.port,
            load_balancing_policy=WhiteListRoundRobinPolicy([coordinator]),
        ) as cluster,
        cluster.connect() as pinned,
    ):
        row = (await pinned.execute(statement, consistency="ALL", timeout=10)).one()
        assert row is not None and row.v == "row 0-0"
        with _paused(three_nodes, frozen) as frozen_pid:
            began = time.monotonic()
            try:
                answer = await pinned.execute(statement, consistency="ALL", timeout=30)
            except QueryTimeout as exc:
                raised = exc
            else:
                pytest.fail(
                    f"a read at ALL with node {frozen} frozen gave {answer.all()!r} after "
                    f"{time.monotonic() - began:.2f} s (all its threads stopped: "
                    f"{_stopped(frozen_pid)})"
                )
            timed_out_s = time.monotonic() - began
        assert isinstance(raised.__cause__, ReadTimeout)
        assert "ALL" in str(raised)
        # Failure detection may lag behind the frozen node's return; reads at ONE do not wait.
        row = (await pinned.execute(statement, consistency="ONE", timeout=10)).one()
        assert row is not None and row.v == "row 0-0"
    await _wait_for_full_ring(session)
    report("server read timeout, one replica frozen", timed_out_s=timed_out_s)
    assert 3.0 < timed_out_s < 20.0


async def test_all_nodes_down_then_back(
    session: AsyncSession, three_nodes: local.ClusterInfo
) -> None:
    timeout = 5.0
    await asyncio.gather(
        *(
            asyncio.to_thread(local.kill_node, three_nodes.name, node.index)
            for node in three_nodes.nodes
        )
    )
    try:
        began = time.monotonic()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(
                session.execute("SELECT broadcast_address FROM system.local", timeout=timeout),
                timeout * 3,
            )
        query_failed_s = time.monotonic() - began

        began = time.monotonic()
        stream = await session.execute_stream(f"SELECT p FROM {TABLE}", timeout=timeout)
        async with stream:
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(stream.__anext__(), timeout * 3)
        stream_failed_s = time.monotonic() - began

        began = time.monotonic()
        async with AsyncCluster(
            three_nodes.contact_points, three_nodes.port, connect_timeout=timeout
        ) as fresh:
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(fresh.connect(), timeout * 3)
        connect_failed_s = time.monotonic() - began
    finally:
        everywhere = three_nodes.contact_points
        recovery = await _restart(three_nodes, everywhere, lambda: _answers(session))
    await _wait_for_full_ring(session)
    report(
        "all nodes down, then back",
        query_failed_s=query_failed_s,
        stream_failed_s=stream_failed_s,
        connect_failed_s=connect_failed_s,
        **recovery,
    )
    assert query_failed_s < timeout
    assert stream_failed_s < timeout
    assert connect_failed_s < timeout
    assert recovery["back_in_service_s"] < BACK_IN_SERVICE_S


async def _answers(session: AsyncSession) -> bool:
    await _coordinator(session)
    return True
