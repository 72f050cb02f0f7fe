"""The launcher's generated files and its errors, without starting a JVM where none is needed."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cassnb import local


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cassnb.local", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "\ncassnb.local: error: " in "\n" + result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CASSNB_HOME", str(tmp_path))
    return tmp_path


def test_three_nodes_layout_uses_consecutive_addresses_and_distinct_jmx_ports() -> None:
    cluster = local._layout("x", local.Options(nodes=3))
    assert cluster.contact_points == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert len({n.jmx_port for n in cluster.nodes}) == 3
    assert len({n.directory for n in cluster.nodes}) == 3


def test_generated_yaml_makes_every_node_a_seed_with_balanced_tokens() -> None:
    cluster = local._layout("x", local.Options(nodes=3))
    texts = [
        local._yaml(cluster, node, token)
        for node, token in zip(cluster.nodes, local._BALANCED_TOKENS[3], strict=True)
    ]
    for node, text in zip(cluster.nodes, texts, strict=True):
        assert 'seeds: "127.0.0.1,127.0.0.2,127.0.0.3"' in text
        assert f"listen_address: {node.address}\n" in text
        assert f"rpc_address: {node.address}\n" in text
        assert "num_tokens: 1\n" in text
        assert "AllowAllAuthenticator" in text
        assert "client_encryption_options" not in text
        # 5.0 refuses to load a yaml holding this removed key.
        assert "native_transport_max_negotiable_protocol_version" not in text
    tokens = [int(t.split("initial_token: ")[1].split("\n")[0]) for t in texts]
    gaps = {b - a for a, b in itertools.pairwise(tokens)}
    assert max(gaps) - min(gaps) <= 1


def test_generated_yaml_for_auth_and_tls() -> None:
    cluster = local._layout("x", local.Options(auth=True, tls=True))
    text = local._yaml(cluster, cluster.nodes[0], "0")
    assert "authenticator: PasswordAuthenticator" in text
    assert "authorizer: CassandraAuthorizer" in text
    assert "credentials_validity: 0ms" in text
    assert "client_encryption_options:\n  enabled: true\n  optional: false" in text
    assert cluster.ca_cert is not None and cluster.ca_cert.endswith("ca.pem")


def test_java_command_has_java17_flags_small_heap_and_a_conf_dir_first(tmp_path: Path) -> None:
    cluster = local._layout("x", local.Options(heap="512M"))
    node = cluster.nodes[0]
    jars = [tmp_path / "cassandra-all-5.0.9.jar", tmp_path / "jamm-0.4.0.jar"]
    command = local._command("java", jars, tmp_path / "conf", node, "512M")
    assert command[-1] == "org.apache.cassandra.service.CassandraDaemon"
    assert "-Xmx512M" in command
    assert f"-javaagent:{jars[1]}" in command
    assert "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED" in command
    assert command[command.index("-cp") + 1].split(os.pathsep)[0] == str(tmp_path / "conf")
    assert f"-Dcassandra.jmx.local.port={node.jmx_port}" in command


def test_missing_java_is_a_clear_error(empty_home: Path) -> None:
    result = run_cli("start", env={"JAVA_HOME": str(empty_home / "no-such-jdk")})
    assert_clean_error(result, "java was not found", "JAVA_HOME")


def test_java_older_than_17_is_a_clear_error(empty_home: Path) -> None:
    fake = empty_home / "jdk11" / "bin"
    fake.mkdir(parents=True)
    (fake / "java").write_text("#!/bin/sh\necho 'openjdk version \"11.0.21\" 2023-10-17' >&2\n")
    (fake / "java").chmod(0o755)
    result = run_cli("start", env={"JAVA_HOME": str(fake.parent)})
    assert_clean_error(result, "version 11", "needs Java 17")


def test_missing_maven_is_a_clear_error(empty_home: Path) -> None:
    bin_dir = empty_home / "bin"
    bin_dir.mkdir()
    java = subprocess.run(["which", "java"], capture_output=True, text=True, check=True)
    (bin_dir / "java").symlink_to(Path(java.stdout.strip()).resolve())
    env = {"PATH": str(bin_dir), "JAVA_HOME": ""}
    env.pop("JAVA_HOME")
    result = subprocess.run(
        [sys.executable, "-m", "cassnb.local", "start"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "JAVA_HOME"} | env,
        timeout=120,
        check=False,
    )
    assert_clean_error(result, "mvn was not found", "apt-get install maven")


@pytest.fixture
def squatter() -> Iterator[str]:
    """Something else listening on 127.0.0.30:9042."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.30", 9042))
        sock.listen()
        yield "127.0.0.30"


def test_a_port_taken_by_something_else_is_a_clear_error(squatter: str) -> None:
    result = run_cli("start", "--name", "squatted", "--address", squatter)
    assert_clean_error(result, f"CQL port 9042 on {squatter} is already taken", "--address")
    assert local.status("squatted") is None


def test_a_node_that_dies_while_starting_shows_its_last_log_lines() -> None:
    result = run_cli("start", "--name", "doomed", "--address", "127.0.0.31", "--heap", "1X")
    assert_clean_error(result, "node 1 (127.0.0.31) exited while starting", "Full log: ")
    assert "Invalid" in result.stderr  # the JVM's own complaint about the heap size
    cluster = local.status("doomed")
    assert cluster is not None and not any(n.alive for n in cluster.nodes)


def test_unknown_cluster_status_and_stop_are_calm(empty_home: Path) -> None:
    assert "not started" in run_cli("status", "--name", "nothing").stdout
    result = run_cli("stop", "--name", "nothing")
    assert result.returncode == 0
    assert "not running" in result.stderr
