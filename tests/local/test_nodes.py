"""Real nodes started by cassnb.local: round trips, idempotent start and stop, auth and TLS."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import RoundRobinPolicy

from cassnb import local


def driver(contact_points: list[str], **kwargs: object) -> Cluster:
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
    return Cluster(
        contact_points,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        **kwargs,  # type: ignore[arg-type]
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cassnb.local", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def our_java_pids(directory_fragment: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"CassandraDaemon" in cmdline and directory_fragment.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def test_cql_round_trip(node: local.ClusterInfo) -> None:
    cluster = driver(node.contact_points)
    try:
        session = cluster.connect()
        session.execute(
            "CREATE KEYSPACE IF NOT EXISTS cassnb_local_test WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(
            "CREATE TABLE IF NOT EXISTS cassnb_local_test.kv (k uuid PRIMARY KEY, v text)"
        )
        key = uuid.uuid4()
        session.execute("INSERT INTO cassnb_local_test.kv (k, v) VALUES (%s, %s)", (key, "hi"))
        row = session.execute("SELECT v FROM cassnb_local_test.kv WHERE k = %s", (key,)).one()
        assert row.v == "hi"
        assert session.execute("SELECT release_version FROM system.local").one()[0] == "5.0.9"
    finally:
        cluster.shutdown()


def test_start_twice_says_already_running(node: local.ClusterInfo) -> None:
    result = cli("start")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stderr
    assert node.nodes[0].pid == local.status().nodes[0].pid  # type: ignore[union-attr]


def test_start_with_other_options_asks_to_stop_first(node: local.ClusterInfo) -> None:
    result = cli("start", "--auth")
    assert result.returncode == 1
    assert "already running with other options" in result.stderr
    assert "stop it first" in result.stderr


def test_status_tells_address_pid_version_and_options(node: local.ClusterInfo) -> None:
    text = cli("status").stdout
    assert "127.0.0.1:9042" in text and "5.0.9" in text and f"pid {node.nodes[0].pid}" in text
    state = json.loads(cli("status", "--json").stdout)
    assert state["running"] is True
    assert state["options"]["nodes"] == 1 and state["options"]["auth"] is False
    (only,) = state["nodes"]
    assert only["address"] == "127.0.0.1" and only["pid"] == node.nodes[0].pid
    assert only["version"] == "5.0.9"


def test_stop_ends_only_its_own_processes(node: local.ClusterInfo) -> None:
    started = cli("start", "--name", "shortlived", "--address", "127.0.0.6", "--heap", "512M")
    assert started.returncode == 0, started.stderr
    assert "ready in" in started.stderr
    assert len(our_java_pids("clusters/shortlived/")) == 1
    stopped = cli("stop", "--name", "shortlived")
    assert stopped.returncode == 0, stopped.stderr
    assert our_java_pids("clusters/shortlived/") == []
    # The other cluster's node is untouched.
    assert local.status().running  # type: ignore[union-attr]


def test_auth_refuses_a_wrong_password_and_accepts_the_right_one(
    auth_node: local.ClusterInfo,
) -> None:
    address = auth_node.contact_points[0]
    with pytest.raises(OSError, match=r"login refused: .*password are incorrect"):
        local.query_release_version(address, credentials=("cassandra", "wrong"))
    bad = driver(
        auth_node.contact_points,
        auth_provider=PlainTextAuthProvider("cassandra", "wrong"),
    )
    with pytest.raises(NoHostAvailable, match="password are incorrect"):
        bad.connect()
    bad.shutdown()
    good = driver(
        auth_node.contact_points,
        auth_provider=PlainTextAuthProvider("cassandra", "cassandra"),
    )
    try:
        assert good.connect().execute("SELECT count(*) FROM system.local").one()[0] == 1
    finally:
        good.shutdown()


def test_tls_accepts_a_verified_client_and_refuses_plain_text(
    tls_node: local.ClusterInfo,
) -> None:
    assert tls_node.ca_cert and Path(tls_node.ca_cert).exists()
    context = ssl.create_default_context(cafile=tls_node.ca_cert)
    secure = driver(tls_node.contact_points, ssl_context=context)
    try:
        row = secure.connect().execute("SELECT release_version FROM system.local").one()
        assert row[0] == "5.0.9"
    finally:
        secure.shutdown()
    plain = driver(tls_node.contact_points, connect_timeout=5)
    with pytest.raises(NoHostAvailable):
        plain.connect()
    plain.shutdown()
    with pytest.raises(OSError):
        local.query_release_version(tls_node.contact_points[0], timeout=5)


def test_tls_start_prints_the_ca_certificate(tls_node: local.ClusterInfo) -> None:
    status = cli("status", "--name", "tls").stdout
    assert f"CA certificate for clients: {tls_node.ca_cert}" in status
