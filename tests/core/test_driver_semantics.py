"""Below the driver's public API, cassnb's reads do what the driver does: as many requests
as the plain driver under a statement's retry policy, page by page; a bound on how far a
read runs ahead of a loop that stopped; a timed-out request's stream id orphaned until the
node answers it.

Counted and injected at the driver's ``ResponseFuture``, which every request of both
goes through. Run with the fast path on and off (``CASSNB_FAST_PATH=0``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from _core_data import KEYSPACE, Data
from _keyspaces import load_once
from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster, ResponseFuture
from cassandra.policies import FallthroughRetryPolicy, RetryPolicy
from cassandra.protocol import ReadTimeoutErrorMessage
from cassandra.query import BatchStatement, BatchType, SimpleStatement

from cassnb import AsyncCluster, AsyncSession, QueryError, StreamConfig, read_cql
from cassnb._core import bridge
from cassnb._core.registry import open_counts
from cassnb.local import ClusterInfo

FETCH_SIZE = 20
TOMBSTONES = f"{KEYSPACE}.tombstoned"
WIDE = f"{KEYSPACE}.wide_rows"
#: Live rows before the tombstones: three pages.
LIVE_ROWS = 3 * FETCH_SIZE
#: Rows whose ten cells are all deleted: 101,000 tombstones, over the server's failure
#: threshold of 100,000 in one read.
DELETED_ROWS = 10_100


class Requests:
    """The requests sent for one query text, and its answers, some of them replaced."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        query_string: str,
        replace: Callable[[int, Any], Any] | None = None,
    ) -> None:
        self.sent = 0
        self.answers = 0
        self.hosts: list[Any] = []
        self._lock = threading.Lock()
        query, set_result = ResponseFuture._query, ResponseFuture._set_result

        def ours(future: ResponseFuture) -> bool:
            return getattr(future.query, "query_string", None) == query_string

        def counting_query(
            future: ResponseFuture, host: Any, message: Any = None, cb: Any = None
        ) -> Any:
            request_id = query(future, host, message, cb)
            if request_id is not None and message is None and ours(future):
                with self._lock:
                    self.sent += 1
            return request_id

        def answering(
            future: ResponseFuture, host: Any, connection: Any, pool: Any, response: Any
        ) -> Any:
            if ours(future):
                with self._lock:
                    self.answers += 1
                    self.hosts.append(host)
                    number = self.answers
                if replace is not None:
                    response = replace(number, response)
            return set_result(future, host, connection, pool, response)

        monkeypatch.setattr(ResponseFuture, "_query", counting_query)
        monkeypatch.setattr(ResponseFuture, "_set_result", answering)


def _plain_driver_read(data: Data, statement: SimpleStatement) -> tuple[int, str]:
    """Read every row with the plain driver; return the row count, or the error's type."""
    cluster = Cluster(data.contact_points, port=data.port, protocol_version=5)
    try:
        session = cluster.connect()
        try:
            return len(list(session.execute(statement))), ""
        except Exception as exc:
            return -1, type(exc).__name__
    finally:
        cluster.shutdown()


async def _cassnb_read(
    session: AsyncSession, statement: SimpleStatement, way: str
) -> tuple[int, str]:
    try:
        if way == "read_cql":
            frame = await read_cql(statement, session, fetch_size=FETCH_SIZE)
            return len(frame), ""
        stream = await session.execute_stream(
            statement, stream_config=StreamConfig(fetch_size=FETCH_SIZE)
        )
        async with stream:
            return len([row async for row in stream]), ""
    except QueryError as exc:
        # cassnb's error, with the driver's as its cause.
        return -1, type(exc.__cause__).__name__


async def _side_by_side(
    data: Data,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    policy: type[RetryPolicy],
    way: str,
    replace: Callable[[int, Any], Any] | None = None,
) -> tuple[Requests, tuple[int, str], Requests, tuple[int, str]]:
    """Read ``text`` under ``policy`` with the plain driver, then with cassnb ``way``;
    return each one's requests and outcome."""
    statement = SimpleStatement(text, fetch_size=FETCH_SIZE, retry_policy=policy())
    plain = Requests(monkeypatch, text, replace)
    expected = await asyncio.to_thread(_plain_driver_read, data, statement)
    monkeypatch.undo()
    ours = Requests(monkeypatch, text, replace)
    got = await _cassnb_read(session, statement, way)
    print(f"{policy.__name__}, {way}: driver {plain.sent} {expected}, cassnb {ours.sent} {got}")
    return plain, expected, ours, got


def _timeout_on_the_third_answer(number: int, response: Any) -> Any:
    if number != 3:
        return response
    # A coordinator that heard from its replica but got no data: RetryPolicy retries
    # that once on the same host; FallthroughRetryPolicy never retries.
    return ReadTimeoutErrorMessage(
        0x1200,
        "Operation timed out (injected)",
        {
            "consistency": ConsistencyLevel.ONE,
            "required_responses": 1,
            "received_responses": 1,
            "data_retrieved": False,
        },
    )


@pytest.mark.parametrize("way", ["async for", "read_cql"])
@pytest.mark.parametrize("policy", [RetryPolicy, FallthroughRetryPolicy])
async def test_a_page_error_is_retried_as_the_statements_policy_says(
    data: Data,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
    policy: type[RetryPolicy],
) -> None:
    text = f"SELECT p, c, v FROM {KEYSPACE}.paged WHERE p = 0 LIMIT 200"
    plain, expected, ours, got = await _side_by_side(
        data, session, monkeypatch, text, policy, way, _timeout_on_the_third_answer
    )
    assert got == expected
    assert ours.sent == plain.sent
    # Ten pages and the retry where the policy allows it; the third answer ends the read
    # where it does not.
    assert plain.sent > 10 if policy is RetryPolicy else plain.sent == 3


@pytest.fixture(scope="module")
def tombstoned(data: Data) -> Iterator[str]:
    """A partition whose three pages of rows are followed by 101,000 tombstones."""

    async def load() -> None:
        async with (
            AsyncCluster(data.contact_points, data.port) as cluster,
            cluster.connect(KEYSPACE) as session,
        ):
            columns = ", ".join(f"c{i} int" for i in range(10))
            await session.execute(f"DROP TABLE IF EXISTS {TOMBSTONES}")
            await session.execute(
                f"CREATE TABLE {TOMBSTONES} (p int, c int, {columns}, PRIMARY KEY (p, c))"
            )
            insert = await session.prepare(f"INSERT INTO {TOMBSTONES} (p, c, c0) VALUES (0, ?, ?)")
            for c in range(LIVE_ROWS):
                await session.execute(insert, (c, c))
            # An UPDATE writes no row marker: a row whose cells are all set to null is
            # ten tombstones and no live row.
            nulls = ", ".join(f"c{i} = null" for i in range(10))
            delete = await session.prepare(f"UPDATE {TOMBSTONES} SET {nulls} WHERE p = 0 AND c = ?")
            for first in range(LIVE_ROWS, LIVE_ROWS + DELETED_ROWS, 100):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for c in range(first, first + 100):
                    batch.add(delete, (c,))
                await session.execute_batch(batch)

    asyncio.run(load())
    yield TOMBSTONES

    async def drop() -> None:
        async with (
            AsyncCluster(data.contact_points, data.port) as cluster,
            cluster.connect() as session,
        ):
            await session.execute(f"DROP TABLE IF EXISTS {TOMBSTONES}")

    asyncio.run(drop())


@pytest.mark.parametrize("way", ["async for", "read_cql"])
@pytest.mark.parametrize("policy", [RetryPolicy, FallthroughRetryPolicy])
async def test_a_page_that_keeps_failing_costs_what_it_costs_the_driver(
    data: Data,
    session: AsyncSession,
    tombstoned: str,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
    policy: type[RetryPolicy],
) -> None:
    text = f"SELECT * FROM {tombstoned} WHERE p = 0"
    plain, expected, ours, got = await _side_by_side(data, session, monkeypatch, text, policy, way)
    # The fourth page meets the tombstones: the server fails the read.
    assert expected == (-1, "ReadFailure")
    assert got == expected
    assert ours.sent == plain.sent == 4


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def wide_rows(data: Data) -> str:
    """A table of 40 MB: 10,000 rows of a 4 KiB blob, loaded once."""

    async def load() -> None:
        async with (
            AsyncCluster(data.contact_points, data.port) as cluster,
            cluster.connect(KEYSPACE) as session,
        ):
            await session.execute(
                f"CREATE TABLE IF NOT EXISTS {WIDE} (p int, c int, b blob, PRIMARY KEY (p, c))"
            )
            rows = [(p, c, bytes([c % 256]) * 4096) for p in range(10) for c in range(1000)]
            await load_once(session, WIDE, ["p", "c", "b"], rows)

    asyncio.run(load())
    return WIDE


def test_a_read_whose_loop_stopped_fetches_no_more_than_its_bound(
    data: Data, wide_rows: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after Ctrl-C at a top-level await, or between run_until_complete calls."""
    text = f"SELECT p, c, b FROM {wide_rows}"
    requests = Requests(monkeypatch, text)
    loop = asyncio.new_event_loop()
    cluster = AsyncCluster(data.contact_points, data.port)
    session = loop.run_until_complete(cluster.connect(KEYSPACE))
    try:
        # Pages of 100 rows, 400 KiB each: 100 pages in all.
        task = loop.create_task(read_cql(text, session, fetch_size=100))
        # Run until the read is well under way, then stop the loop.
        deadline = time.monotonic() + 30
        while requests.sent < 8 and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.01))
        assert requests.sent >= 8 and not task.done()
        sent, rss = requests.sent, _rss()
        time.sleep(5)
        sent_meanwhile, grown = requests.sent - sent, _rss() - rss
        print(
            f"loop stopped 5 s: {sent_meanwhile} more requests (bound {bridge.AHEAD_PAGES} "
            f"pages, {bridge.AHEAD_BYTES / 2**20:.0f} MiB), RSS +{grown / 2**20:.1f} MiB"
        )
        # Without a bound, the rest of the 100 pages (some 36 MiB in wire form, as much
        # again decoded) arrive meanwhile.
        assert sent_meanwhile <= bridge.AHEAD_PAGES + 1
        assert grown < 24 * 2**20
        # A task that is abandoned closes its read: nothing more is asked for.
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        after_cancel = requests.sent
        time.sleep(0.5)
        assert requests.sent <= after_cancel + 1
        assert open_counts().streams == 0
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(cluster.shutdown())
        loop.close()


def _orphaned(session: AsyncSession) -> set[int]:
    ids: set[int] = set()
    for pool in session._session._pools.values():
        connection = getattr(pool, "_connection", None)
        if connection is not None:
            ids |= set(connection.orphaned_request_ids)
    return ids


async def _until_released(session: AsyncSession) -> None:
    """Wait until the node's late answers have given every orphaned id back."""
    deadline = time.monotonic() + 20
    while _orphaned(session) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert not _orphaned(session)


@pytest.fixture
async def frozen_node(node: ClusterInfo) -> AsyncIterator[Callable[[bool], None]]:
    """Freeze (True) and thaw (False) the node's JVM; always thawed after the test."""
    pid = node.nodes[0].pid
    assert pid is not None

    def stopped() -> bool:
        states = set()
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/stat") as stat:
                    states.add(stat.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
        return states <= {"T", "t"}

    def freeze(frozen: bool) -> None:
        os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)
        # The signal reaches every thread of the JVM a moment later: a request sent before
        # they all stopped could still be answered.
        deadline = time.monotonic() + 5
        while stopped() != frozen and time.monotonic() < deadline:
            time.sleep(0.001)
        assert stopped() == frozen

    try:
        yield freeze
    finally:
        freeze(False)


async def test_a_request_to_a_frozen_node_orphans_its_stream_id_until_the_node_answers(
    session: AsyncSession, frozen_node: Callable[[bool], None]
) -> None:
    query = f"SELECT p, c, v FROM {KEYSPACE}.paged WHERE p = 0 AND c < 5"
    assert len(await session.execute(query)) == 5
    frozen_node(True)
    began = time.monotonic()
    with pytest.raises(QueryError) as caught:
        await session.execute(query, timeout=1.0)
    timed_out_after = time.monotonic() - began
    # As the driver does: the id stays taken while the node may still answer it.
    orphaned = _orphaned(session)
    frozen_node(False)
    print(f"timed out after {timed_out_after:.2f} s; orphaned ids {sorted(orphaned)}")
    assert type(caught.value.__cause__).__name__ == "OperationTimedOut"
    assert timed_out_after < 5
    assert orphaned
    await _until_released(session)
    rows = await session.execute(query)
    assert [(row.p, row.c) for row in rows] == [(0, c) for c in range(5)]


async def test_a_later_page_from_a_frozen_node_times_out_and_its_id_is_orphaned(
    session: AsyncSession,
    frozen_node: Callable[[bool], None],
    cluster: AsyncCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not cluster.fast_path:
        pytest.skip("on the driver's public path only the first page's request is timed")
    query = f"SELECT p, c, v FROM {KEYSPACE}.paged WHERE p = 0"

    def freeze_after_the_fifth(number: int, response: Any) -> Any:
        # On the driver's thread, before the fifth page is taken: the next page's
        # request, asked for by that thread itself, goes to a frozen node.
        if number == 5:
            frozen_node(True)
        return response

    requests = Requests(monkeypatch, query, freeze_after_the_fifth)
    stream = await session.execute_stream(
        query, stream_config=StreamConfig(fetch_size=10), timeout=1.0
    )
    try:
        async with stream:
            with pytest.raises(QueryError) as caught:
                await stream.to_dataframe()
        orphaned = _orphaned(session)
    finally:
        frozen_node(False)
    assert requests.answers == 5, "the node answered after it was frozen"
    assert type(caught.value.__cause__).__name__ == "OperationTimedOut"
    assert orphaned
    await _until_released(session)
    rows = await session.execute(f"{query} AND c < 3")
    assert [row.c for row in rows] == [0, 1, 2]


async def test_a_stream_stopped_early_goes_on_after_the_last_page_it_handed_over(
    session: AsyncSession,
) -> None:
    query = f"SELECT p, c, v FROM {KEYSPACE}.paged WHERE p = 0"
    stream = await session.execute_stream(
        query, stream_config=StreamConfig(fetch_size=10, prefetch=3)
    )
    async with stream:
        pages = stream.pages()
        assert stream.paging_state is None
        for _ in range(2):
            await pages.__anext__()
        # Wait until pages after the second are fetched ahead of the consumer.
        deadline = time.monotonic() + 10
        while len(stream._state.buffer) < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert len(stream._state.buffer) == 3
        paging_state = stream.paging_state
    assert paging_state is not None
    rest = await session.execute_page(query, fetch_size=10, paging_state=paging_state)
    assert [row.c for row in rest] == list(range(20, 30))
