"""Three real nodes: a ring that replicates."""

from __future__ import annotations

import uuid

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy, WhiteListRoundRobinPolicy
from cassandra.query import SimpleStatement

from cassnb import local

pytestmark = pytest.mark.cluster3


def connect_to(contact_points: list[str], *, only: str | None = None) -> Cluster:
    policy = WhiteListRoundRobinPolicy([only]) if only else RoundRobinPolicy()
    profile = ExecutionProfile(load_balancing_policy=policy)
    return Cluster(
        contact_points, protocol_version=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile}
    )


@pytest.mark.parametrize("index", [0, 1, 2])
def test_each_node_lists_its_peers_with_tokens_on_one_schema(
    three_nodes: local.ClusterInfo, index: int
) -> None:
    # What the launcher waits for before it calls the cluster ready: a client connecting
    # to any node builds a whole token map from it.
    address = three_nodes.contact_points[index]
    others = set(three_nodes.contact_points) - {address}
    cluster = connect_to([address], only=address)
    try:
        session = cluster.connect()
        local_row = session.execute("SELECT broadcast_address, schema_version FROM system.local")
        own, schema = local_row.one()
        assert str(own) == address
        peers = list(session.execute("SELECT peer, tokens, schema_version FROM system.peers_v2"))
        assert {str(row.peer) for row in peers} == others
        assert all(row.tokens and len(row.tokens) == 1 for row in peers)  # num_tokens: 1
        assert {row.schema_version for row in peers} == {schema}
        # The table older clients and tools read lists the same peers.
        legacy = session.execute("SELECT peer FROM system.peers")
        assert {str(row.peer) for row in legacy} == others
    finally:
        cluster.shutdown()


def test_rf3_keyspace_takes_a_quorum_write_and_read(three_nodes: local.ClusterInfo) -> None:
    cluster = connect_to(three_nodes.contact_points)
    try:
        session = cluster.connect()
        session.execute(
            "CREATE KEYSPACE IF NOT EXISTS cassnb_rf3 WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 3}"
        )
        session.execute("CREATE TABLE IF NOT EXISTS cassnb_rf3.kv (k uuid PRIMARY KEY, v int)")
        key = uuid.uuid4()
        write = SimpleStatement(
            "INSERT INTO cassnb_rf3.kv (k, v) VALUES (%s, 42)",
            consistency_level=ConsistencyLevel.QUORUM,
        )
        session.execute(write, (key,))
        read = SimpleStatement(
            "SELECT v FROM cassnb_rf3.kv WHERE k = %s", consistency_level=ConsistencyLevel.QUORUM
        )
        for _ in range(3):  # round robin: each node coordinates once
            assert session.execute(read, (key,)).one()[0] == 42
        assert len(cluster.metadata.get_replicas("cassnb_rf3", key.bytes)) == 3
    finally:
        cluster.shutdown()
