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


def test_node_one_sees_its_peers(three_nodes: local.ClusterInfo) -> None:
    first, *others = three_nodes.contact_points
    cluster = connect_to([first], only=first)
    try:
        session = cluster.connect()
        local_row = session.execute("SELECT broadcast_address FROM system.local").one()
        assert str(local_row[0]) == first
        peers = {str(row[0]) for row in session.execute("SELECT peer FROM system.peers_v2")}
        assert peers == set(others)
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
