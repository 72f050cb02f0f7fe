"""On three nodes, each next page of a read goes where the load-balancing policy's query
plan says, as the driver sends it: a read asked ahead by the driver's thread included.

Run with the fast path on and off (``CASSNB_FAST_PATH=0``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from cassandra.cluster import ResponseFuture
from cassandra.policies import RoundRobinPolicy

from cassnb import AsyncCluster, StreamConfig, local, read_cql

pytestmark = pytest.mark.cluster3

KEYSPACE = "cassnb_plans"
ROWS = 200
FETCH_SIZE = 10


class Pinned(RoundRobinPolicy):
    """Puts one chosen node first in every query plan, the others after it."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def make_query_plan(self, working_keyspace: Any = None, query: Any = None) -> list[Any]:
        hosts = list(super().make_query_plan(working_keyspace, query))
        return sorted(hosts, key=lambda host: host.address != self.address)


class Coordinators:
    """The node that answered each page of one query, the plan moved after the fifth."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, query_string: str, policy: Pinned, to: str
    ) -> None:
        self.addresses: list[str] = []
        self._lock = threading.Lock()
        set_result = ResponseFuture._set_result

        def answering(
            future: ResponseFuture, host: Any, connection: Any, pool: Any, response: Any
        ) -> Any:
            if getattr(future.query, "query_string", None) == query_string:
                with self._lock:
                    self.addresses.append(host.address)
                    if len(self.addresses) == 5:
                        # Before the fifth page is taken, and the sixth asked for.
                        policy.address = to
            return set_result(future, host, connection, pool, response)

        monkeypatch.setattr(ResponseFuture, "_set_result", answering)


@pytest.fixture(scope="module")
def plans_table(three_nodes: local.ClusterInfo) -> str:
    async def load() -> None:
        async with (
            AsyncCluster(three_nodes.contact_points) as cluster,
            cluster.connect() as session,
        ):
            await session.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 3}"
            )
            await session.execute(
                f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.t (p int, c int, PRIMARY KEY (p, c))"
            )
            insert = await session.prepare(f"INSERT INTO {KEYSPACE}.t (p, c) VALUES (0, ?)")
            for c in range(ROWS):
                await session.execute(insert, (c,), consistency="ALL")

    asyncio.run(load())
    return f"{KEYSPACE}.t"


async def _until_every_node_serves(
    session: Any, policy: Pinned, addresses: list[str], within: float = 60.0
) -> None:
    """Wait until the driver counts every node up, in the policy and with a pool: a node
    restarted by an earlier test may not be yet, and the driver then sends its requests
    to the next node of the plan."""
    driver_session = session._session
    deadline = time.monotonic() + within
    while True:
        planned = {host.address for host in policy.make_query_plan()}
        pooled = {host.address for host in driver_session._pools}
        if planned >= set(addresses) and pooled >= set(addresses):
            return
        assert time.monotonic() < deadline, f"nodes not all in service: {planned}, {pooled}"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("way", ["read_cql", "async for"])
async def test_next_pages_follow_the_policys_plan_when_it_changes(
    three_nodes: local.ClusterInfo, plans_table: str, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    first, second = three_nodes.contact_points[:2]
    policy = Pinned(first)
    query = f"SELECT p, c FROM {plans_table} WHERE p = 0"
    coordinators = Coordinators(monkeypatch, query, policy, second)
    async with (
        AsyncCluster(three_nodes.contact_points, load_balancing_policy=policy) as cluster,
        cluster.connect() as session,
    ):
        await _until_every_node_serves(session, policy, three_nodes.contact_points)
        if way == "read_cql":
            frame = await read_cql(query, session, fetch_size=FETCH_SIZE)
            assert frame["c"].tolist() == list(range(ROWS))
        else:
            stream = await session.execute_stream(
                query, stream_config=StreamConfig(fetch_size=FETCH_SIZE)
            )
            async with stream:
                assert [row.c async for row in stream] == list(range(ROWS))
    addresses = coordinators.addresses
    print(f"{way}: coordinators {addresses}")
    assert len(addresses) >= ROWS // FETCH_SIZE
    assert addresses[:5] == [first] * 5
    assert set(addresses[5:]) == {second}
