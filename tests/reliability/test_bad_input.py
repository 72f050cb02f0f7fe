"""Generated bad input through execute, prepare, execute_stream and %%cql cells.

Whatever goes in, a call ends in a result or a cassnb error (a ``CassandraError``
subclass), within a bound, and the session answers a healthy query afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _fuzz import (
    HEALTH_CHECK,
    SCHEMA,
    TYPED_INSERT,
    consistencies,
    fetch_sizes,
    parameters,
    statements,
    values,
)
from _reliability import FULL, report, sized
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cassnb import AsyncCluster, AsyncSession, CassandraError, ConnectionError, StreamConfig
from cassnb.local import ClusterInfo

EXAMPLES = sized(120, 1_000)
#: Longer than any request may take here: a call still running then counts as a hang.
HANG_S = 15.0
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # each call is bounded by HANG_S instead, under the suite's own load
    derandomize=not FULL,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
_HERE = Path(__file__).parent


class Harness:
    """One session on its own loop, shared by every generated example of a test."""

    def __init__(self, runner: asyncio.Runner, session: AsyncSession) -> None:
        self.runner = runner
        self.session = session
        self.outcomes: Counter[str] = Counter()
        self.loop_errors: list[dict[str, Any]] = []
        self.connection_errors: list[str] = []
        runner.get_loop().set_exception_handler(
            lambda _loop, context: self.loop_errors.append(context)
        )

    def check(self, call: Callable[[], Awaitable[object]]) -> None:
        """Run one call: a result or a cassnb error, then a healthy query."""

        async def bounded() -> str:
            try:
                await asyncio.wait_for(call(), HANG_S)
            except CassandraError as exc:
                if isinstance(exc, ConnectionError):
                    # Bad input is no connection failure: keep what was said, to look at.
                    self.connection_errors.append(f"{exc} (cause: {exc.__cause__!r})")
                return type(exc).__name__
            return "result"

        self.outcomes[self.runner.run(bounded())] += 1
        assert not self.connection_errors, self.connection_errors
        healthy = self.runner.run(asyncio.wait_for(self.session.execute(HEALTH_CHECK), HANG_S))
        assert healthy.one() is not None
        assert not self.loop_errors, self.loop_errors


async def _open(node: ClusterInfo) -> tuple[AsyncCluster, AsyncSession]:
    cluster = AsyncCluster(node.contact_points, node.port)
    session = await cluster.connect()
    for statement in SCHEMA:
        await session.execute(statement, timeout=60)
    return cluster, session


@pytest.fixture
def harness(rel_node: ClusterInfo) -> Iterator[Harness]:
    """A session on the plain node, driven from a loop of its own."""
    with asyncio.Runner() as runner:
        cluster, session = runner.run(_open(rel_node))
        try:
            yield Harness(runner, session)
        finally:
            runner.run(cluster.shutdown())


def test_execute_takes_any_statement_and_parameters(harness: Harness) -> None:
    session = harness.session

    @FUZZ_SETTINGS
    @given(statements, parameters, consistencies)
    def example(cql: str, params: Any, consistency: Any) -> None:
        harness.check(lambda: session.execute(cql, params, consistency=consistency, timeout=10))

    example()
    report("bad input: execute", examples=sum(harness.outcomes.values()), **harness.outcomes)


def test_prepare_and_bind_take_any_statement_and_parameters(harness: Harness) -> None:
    session = harness.session

    async def prepare_and_run(cql: str, params: Any) -> None:
        prepared = await session.prepare(cql)
        await session.execute(prepared, params, timeout=10)

    @FUZZ_SETTINGS
    @given(statements, parameters)
    def example(cql: str, params: Any) -> None:
        harness.check(lambda: prepare_and_run(cql, params))

    example()
    report("bad input: prepare", examples=sum(harness.outcomes.values()), **harness.outcomes)


def test_typed_markers_take_any_values(harness: Harness) -> None:
    session = harness.session
    typed = harness.runner.run(session.prepare(TYPED_INSERT))

    @FUZZ_SETTINGS
    @given(st.one_of(st.lists(values, min_size=12, max_size=12), parameters))
    def example(params: Any) -> None:
        harness.check(lambda: session.execute(typed, params, timeout=10))

    example()
    report("bad input: bind", examples=sum(harness.outcomes.values()), **harness.outcomes)


def test_execute_stream_takes_any_statement_and_parameters(harness: Harness) -> None:
    session = harness.session

    async def stream_some(cql: str, params: Any, fetch_size: int, prefetch: int) -> None:
        config = StreamConfig(fetch_size=fetch_size, prefetch=prefetch)
        stream = await session.execute_stream(cql, params, stream_config=config, timeout=10)
        async with stream:
            rows = 0
            async for _ in stream:
                rows += 1
                if rows >= 50:
                    break

    @FUZZ_SETTINGS
    @given(statements, parameters, fetch_sizes, st.integers(min_value=-1, max_value=3))
    def example(cql: str, params: Any, fetch_size: int, prefetch: int) -> None:
        harness.check(lambda: stream_some(cql, params, fetch_size, prefetch))

    example()
    report("bad input: stream", examples=sum(harness.outcomes.values()), **harness.outcomes)


def test_cql_cells_take_any_statement(rel_node: ClusterInfo) -> None:
    # IPython runs in a child process, so that its shell and display hooks stay out of
    # the rest of the test session.
    env = {
        **os.environ,
        "CASSNB_FUZZ_ADDRESS": rel_node.contact_points[0],
        "CASSNB_FUZZ_EXAMPLES": str(EXAMPLES),
        "CASSNB_FUZZ_HANG_S": str(HANG_S),
        "CASSNB_FUZZ_DERANDOMIZE": "0" if FULL else "1",
    }
    done = subprocess.run(
        [sys.executable, str(_HERE / "_magic_fuzz.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=EXAMPLES * HANG_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5_000:] + done.stderr[-5_000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    report("bad input: %%cql", examples=sum(outcomes.values()), **outcomes)
