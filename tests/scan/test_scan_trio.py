"""read_table and to_dask on three nodes: every row once, and each range read from its owner.

The keyspace has replication factor 1, so each range lives on exactly one node; a range
sent anywhere else would still be answered (the coordinator forwards it), which is why
routing is checked on its own, from the query plans and from the coordinators.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pandas as pd
import pytest
from cassandra.metadata import Murmur3Token
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from scan_checks import assert_every_row_once, keys_of
from scan_data import ScanData, driver_cluster, skewed_keys

from cassnb import AsyncCluster, AsyncSession, read_cql
from cassnb._scan.dask import close_connections, to_dask
from cassnb._scan.ranges import RangeStatement, plan_scan, read_table, split_ring

pytestmark = pytest.mark.cluster3


class RecordingPolicy(TokenAwarePolicy):  # type: ignore[misc]
    """Token-aware routing that remembers, for each page of a range read, where it went first.

    Each plan records the first host and whether the range's owner was up then: the policy
    skips a replica it sees down (a loaded machine can mark a node down for a moment).
    """

    def __init__(self) -> None:
        super().__init__(DCAwareRoundRobinPolicy())
        self.plans: dict[int, tuple[RangeStatement, list[tuple[Any, bool]]]] = {}

    def make_query_plan(self, working_keyspace: Any = None, query: Any = None) -> Iterator[Any]:
        plan = super().make_query_plan(working_keyspace, query)
        first = next(plan, None)
        if isinstance(query, RangeStatement):
            owners = self._cluster_metadata.get_replicas(query.keyspace, query.routing_key)
            owner_up = bool(owners) and owners[0].is_up
            # The core copies a statement once per stream: one id per range.
            self.plans.setdefault(id(query), (query, []))[1].append((first, owner_up))
        if first is not None:
            yield first
        yield from plan


@pytest.fixture
async def recorded(trio_data: ScanData) -> AsyncIterator[tuple[AsyncSession, RecordingPolicy]]:
    """A session whose load-balancing policy records where range reads go."""
    policy = RecordingPolicy()
    async with (
        AsyncCluster(
            trio_data.contact_points, trio_data.port, load_balancing_policy=policy
        ) as cluster,
        cluster.connect(trio_data.keyspace) as session,
    ):
        yield session, policy


@pytest.mark.parametrize("splits", [None, 1, 5, 40])
async def test_skewed_table_every_row_once(
    trio_session: AsyncSession, trio_data: ScanData, splits: int | None
) -> None:
    """Huge and small partitions over three owners: each row once, as read_cql reads it."""
    frame = await read_table("skewed", trio_session, splits=splits)
    assert len(frame) == trio_data.skewed_rows
    await assert_every_row_once(trio_session, "skewed", frame, ["p", "c"])
    assert set(keys_of(frame, ["p", "c"])) == skewed_keys()


async def test_single_partition_and_empty_tables(
    trio_session: AsyncSession, trio_data: ScanData
) -> None:
    """One partition on one node, and no rows at all, both read exactly."""
    single = await read_table("single", trio_session)
    assert len(single) == trio_data.single_rows
    await assert_every_row_once(trio_session, "single", single, ["p", "c"])
    empty = await read_table("empty", trio_session)
    pd.testing.assert_frame_equal(empty, await read_cql("SELECT * FROM empty", trio_session))


async def test_keys_on_every_boundary_are_read_once(
    trio_session: AsyncSession, trio_data: ScanData
) -> None:
    """Keys on the three ring tokens, the split boundaries and the ring's ends: once each."""
    assert len(trio_data.ring) == 3
    tokens = await read_cql("SELECT t, token(k) AS tok FROM edges", trio_session)
    assert (tokens["t"] == tokens["tok"]).all()
    frame = await read_table("edges", trio_session, splits=8)
    await assert_every_row_once(trio_session, "edges", frame, ["k"])
    assert {bytes(k): int(t) for k, t in keys_of(frame, ["k", "t"])} == trio_data.edges


async def test_every_range_goes_first_to_its_owner(
    recorded: tuple[AsyncSession, RecordingPolicy], trio_data: ScanData
) -> None:
    """Through the core's streams, each range's query plan starts at the node that owns it."""
    session, policy = recorded
    frame = await read_table("skewed", session, splits=12)
    assert len(frame) == trio_data.skewed_rows
    ranges = split_ring(trio_data.ring, 12)
    statements = policy.plans.values()
    routed = sorted((s.token_range for s, _ in statements), key=lambda r: r.start)
    assert routed == ranges
    token_map = session.metadata.token_map
    owners, checked, pages = set(), 0, 0
    for statement, plans in statements:
        [owner] = token_map.get_replicas(
            trio_data.keyspace, Murmur3Token(statement.token_range.end)
        )
        # The whole range lives there, its first token as well as its last.
        start = Murmur3Token(statement.token_range.start + 1)
        assert token_map.get_replicas(trio_data.keyspace, start) == [owner]
        for first, owner_up in plans:
            pages += 1
            if owner_up:
                assert first == owner, statement.token_range
                checked += 1
                owners.add(owner.endpoint.address)
    assert checked >= 0.9 * pages
    assert owners == set(trio_data.contact_points)


async def test_the_coordinator_of_each_range_owns_it(
    trio_session: AsyncSession, trio_data: ScanData
) -> None:
    """Run on the driver itself, each range statement is coordinated by its one replica."""
    scan = await plan_scan(
        trio_session,
        trio_data.keyspace,
        "edges",
        columns=["t"],
        where=None,
        splits=8,
        dtype_backend="numpy_nullable",
    )
    policy = TokenAwarePolicy(DCAwareRoundRobinPolicy())
    cluster = driver_cluster(trio_data.contact_points, trio_data.port, policy)
    try:
        session = cluster.connect()
        prepared = session.prepare(scan.prepared.query_string)
        coordinated = 0
        for token_range in scan.ranges:
            result = session.execute(RangeStatement(prepared, token_range))
            [owner] = cluster.metadata.token_map.get_replicas(
                trio_data.keyspace, Murmur3Token(token_range.end)
            )
            # Hosts tried before the one that answered (a node may be marked down for a
            # moment on a loaded machine) come first: the first one tried is the owner.
            future = result.response_future
            assert next(iter(future._errors), future.coordinator_host) == owner, token_range
            coordinated += future.coordinator_host == owner
            assert all(token_range.start < row.t <= token_range.end for row in result)
        assert coordinated >= len(scan.ranges) // 2
    finally:
        cluster.shutdown()


def test_to_dask_groupby_on_three_nodes(trio_data: ScanData) -> None:
    """A dask groupby-agg over the three nodes equals pandas on the same rows."""
    try:
        frame = to_dask("skewed", trio_data.contact_points, keyspace=trio_data.keyspace)
        rows = frame.compute(scheduler="sync")
        assert len(rows) == trio_data.skewed_rows
        expected = rows.groupby("v").agg({"x": "max", "c": "sum"}).sort_index()
        result = (
            frame.groupby("v").agg({"x": "max", "c": "sum"}).compute(scheduler="threads")
        ).sort_index()
        pd.testing.assert_frame_equal(result, expected)
    finally:
        close_connections()
