"""A stream asks for a page that timed out on the client again, from its last paging state,
on a fresh request, where the statement's retry policy says so, on the fast path and
through the driver's public API alike.

Small fakes stand in for the driver's session and ResponseFuture; the real scenario (a
node killed while a stream is half read) is in tests/reliability/test_failover.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import cassandra
import pytest
from cassandra.policies import FallthroughRetryPolicy, RetryPolicy

from cassnb import AsyncStreamingResultSet, QueryError, QueryTimeout, StreamConfig
from cassnb._driver import PublicRead, Read
from cassnb._driver.fast.reads import FastRead

Event = tuple[list[int], bytes | None] | BaseException


class FakeFuture:
    """Answers each page request with the next scripted page or error."""

    def __init__(
        self, session: FakeSession, events: list[Event], paging_state: bytes | None
    ) -> None:
        self.session = session
        self.query = "SELECT a FROM t"
        self.timeout = 7.0
        # What the driver's future keeps of the retry policy (the fast path reads them).
        self._retry_policy = session.policy
        self._query_retries = 0
        self._events = events
        self._col_names = ["a"]
        self._col_types: list[Any] = []
        self._warnings = None
        self._timer = None
        # As in the driver: the request's message carries the paging state it was sent
        # with; ``_paging_state`` is the one the last page that arrived carried.
        self.message = SimpleNamespace(paging_state=paging_state)
        self._paging_state: bytes | None = None
        self._callback: Callable[..., object] | None = None
        self._errback: Callable[..., object] | None = None
        self._callback_args: tuple[Any, ...] = ()
        self._errback_args: tuple[Any, ...] = ()

    @property
    def has_more_pages(self) -> bool:
        return self._paging_state is not None

    # The driver's public side, which PublicRead uses.
    warnings = None

    def result(self) -> SimpleNamespace:
        return SimpleNamespace(
            paging_state=self._paging_state,
            column_names=self._col_names,
            column_types=self._col_types,
        )

    def get_query_trace_ids(self) -> list[Any]:
        return []

    def add_callbacks(
        self,
        callback: Callable[..., object],
        errback: Callable[..., object],
        callback_args: tuple[Any, ...] = (),
        errback_args: tuple[Any, ...] = (),
    ) -> None:
        self._callback, self._errback = callback, errback
        self._callback_args, self._errback_args = callback_args, errback_args
        self._answer()

    def clear_callbacks(self) -> None:
        self._callback = self._errback = None

    def start_fetching_next_page(self) -> None:
        self.message.paging_state = self._paging_state
        self._answer()

    def _answer(self) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, self._events.pop(0))

    def _deliver(self, event: Event) -> None:
        if isinstance(event, BaseException):
            if self._errback is not None:
                self._errback(event, *self._errback_args)
            return
        rows, self._paging_state = event
        if self._callback is not None:
            self._callback(rows, *self._callback_args)


class FakeSession:
    """Hands out the scripted answers of each new request in turn."""

    def __init__(
        self, *requests: list[Event], policy: RetryPolicy | None = None, hosts_up: int = 3
    ) -> None:
        self._requests = list(requests)
        self.resumed_from: list[bytes | None] = []
        self.policy = policy or RetryPolicy()
        hosts = [SimpleNamespace(is_up=index < hosts_up) for index in range(4)]
        self.cluster = SimpleNamespace(metadata=SimpleNamespace(all_hosts=lambda: hosts))

    def get_execution_profile(self, name: object) -> SimpleNamespace:
        # The default profile's policy, which the public path asks for.
        return SimpleNamespace(retry_policy=self.policy)

    def first(self) -> FakeFuture:
        return FakeFuture(self, self._requests.pop(0), None)

    def execute_async(
        self,
        query: str,
        *,
        paging_state: bytes | None,
        timeout: float,
        trace: bool = False,
        custom_payload: dict[str, bytes] | None = None,
    ) -> FakeFuture:
        assert query == "SELECT a FROM t"
        assert timeout == 7.0
        assert not trace
        assert not custom_payload
        self.resumed_from.append(paging_state)
        return FakeFuture(self, self._requests.pop(0), paging_state)

    def read(self, way: str) -> Read:
        """The first request, read the fast path's way or the driver's public way."""
        if way == "fast":
            return FastRead(self.first())
        read = PublicRead(self, "SELECT a FROM t", timeout=7.0)
        # Sent like a resumed request, from no paging state: not a resume.
        assert self.resumed_from.pop(0) is None
        return read


def _read_timeout() -> cassandra.ReadTimeout:
    return cassandra.ReadTimeout(
        "replica did not answer", consistency=4, required_responses=2, received_responses=1
    )


def _client_timeout() -> cassandra.OperationTimedOut:
    return cassandra.OperationTimedOut("client-side timeout")


class CountingPolicy(RetryPolicy):
    """Retries a client-side timeout on the same host three times; notes the retry number
    it was asked with."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def on_request_error(
        self, query: Any, consistency: Any, error: Any, retry_num: int
    ) -> tuple[int, Any]:
        self.asked.append(retry_num)
        return (self.RETRY, None) if retry_num < 3 else (self.RETHROW, None)


@pytest.fixture(params=["fast", "public"])
def way(request: pytest.FixtureRequest) -> str:
    """The fast path's read, or the driver's public API only."""
    return str(request.param)


async def _rows(session: FakeSession, way: str) -> list[int]:
    stream = AsyncStreamingResultSet(session.read(way), config=StreamConfig(prefetch=0))
    async with stream:
        # A page that never comes would otherwise hang the test instead of failing it.
        async with asyncio.timeout(5):
            return [row async for row in stream]  # type: ignore[misc]


async def test_a_timed_out_page_is_asked_again_from_the_last_paging_state(way: str) -> None:
    session = FakeSession(
        [([1, 2], b"after-2"), ([3, 4], b"after-4"), _client_timeout()],
        [([5, 6], None)],
    )
    assert await _rows(session, way) == [1, 2, 3, 4, 5, 6]
    assert session.resumed_from == [b"after-4"]


async def test_a_timed_out_first_page_is_asked_again_from_the_start(way: str) -> None:
    session = FakeSession([_client_timeout()], [([1], None)])
    assert await _rows(session, way) == [1]
    assert session.resumed_from == [None]


async def test_each_resume_counts_as_one_of_the_policys_retries(way: str) -> None:
    policy = CountingPolicy()
    session = FakeSession(
        [([1], b"after-1"), _client_timeout()],
        [([2], b"after-2"), _client_timeout()],  # a page arrived: still counted
        [_client_timeout()],
        [_client_timeout()],
        policy=policy,
    )
    with pytest.raises(QueryTimeout):
        await _rows(session, way)
    assert policy.asked == [0, 1, 2, 3]
    assert session.resumed_from == [b"after-1", b"after-2", b"after-2"]


@pytest.mark.parametrize("hosts_up", [1, 2, 3])
async def test_the_default_policy_resumes_on_each_other_host_that_is_up(
    way: str, hosts_up: int
) -> None:
    # RetryPolicy retries on the next host, and the driver's retries end with its hosts.
    session = FakeSession(
        [([1], b"after-1"), _client_timeout()],
        [_client_timeout()],
        [_client_timeout()],
        hosts_up=hosts_up,
    )
    with pytest.raises(QueryTimeout):
        await _rows(session, way)
    assert session.resumed_from == [b"after-1"] * (hosts_up - 1)


async def test_a_policy_that_rethrows_is_never_resumed(way: str) -> None:
    session = FakeSession([([1], b"after-1"), _client_timeout()], policy=FallthroughRetryPolicy())
    with pytest.raises(QueryTimeout):
        await _rows(session, way)
    assert session.resumed_from == []


@pytest.mark.parametrize(
    "error",
    [
        _read_timeout(),
        cassandra.Unavailable("too few replicas", consistency=4),
        cassandra.ReadFailure("tombstones", consistency=1, required_responses=1),
    ],
    ids=["read timeout", "unavailable", "read failure"],
)
async def test_errors_the_driver_put_to_the_policy_are_not_asked_again(
    way: str, error: BaseException
) -> None:
    # The driver asks the policy about every error answer before it reports it (and
    # reports a read failure without retrying it): a second decision would retry twice.
    policy = CountingPolicy()
    session = FakeSession([([1], b"after-1"), error], policy=policy)
    with pytest.raises(QueryError):
        await _rows(session, way)
    assert session.resumed_from == [] and policy.asked == []


async def test_a_refused_request_is_not_asked_again(way: str) -> None:
    invalid = cassandra.InvalidRequest("unconfigured table t")
    session = FakeSession([([1], b"after-1"), invalid])
    with pytest.raises(QueryError, match="unconfigured table"):
        await _rows(session, way)
    assert session.resumed_from == []
