"""Run a real Apache Cassandra 5.0 node (or three) on this machine, from Maven Central jars.

    python -m cassnb.local start [--nodes 1|3] [--auth] [--tls] [--json]
    python -m cassnb.local status [--json]
    python -m cassnb.local stop [--all]

The server is ``org.apache.cassandra:cassandra-all`` at an exact pinned version, resolved
once with Maven into ``$CASSNB_HOME`` and launched as a plain JVM per node under Java 17.
Node N of a cluster listens on the N-th address counted from ``--address`` (127.0.0.1,
127.0.0.2, 127.0.0.3 by default), with its own configuration, data, logs and JMX port.
Several clusters can live side by side under different ``--name``s and addresses.

This module uses the standard library only and imports nothing else of cassnb, so it
works before the package's dependencies are installed.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "CASSANDRA_VERSION",
    "ClusterInfo",
    "LocalError",
    "NodeInfo",
    "Options",
    "clusters",
    "home",
    "kill_node",
    "main",
    "query_release_version",
    "resolve_jars",
    "start",
    "status",
    "stop",
]

CASSANDRA_VERSION = "5.0.9"
CQL_PORT = 9042
STORAGE_PORT = 7000
SUPERUSER = ("cassandra", "cassandra")
# Not a secret: it only protects the keystores of throwaway local test nodes.
KEYSTORE_PASSWORD = "cassnb-local"
READY_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
#: Seconds stopping waits, once the processes are gone, for their ports to be free.
PORT_RELEASE_WAIT = 5.0

_BALANCED_TOKENS = {
    1: ["0"],
    3: ["-9223372036854775808", "-3074457345618258603", "3074457345618258602"],
}

_JAVA17_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=4m",
    "-XX:MaxGCPauseMillis=300",
    "-Xss256k",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djdk.attach.allowAttachSelf=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    *[
        f"--add-exports={m}=ALL-UNNAMED"
        for m in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
            "java.management/com.sun.jmx.remote.security",
        )
    ],
    *[
        f"--add-opens={m}=ALL-UNNAMED"
        for m in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "java.base/java.lang",
            "java.base/java.util",
            "java.base/java.nio",
        )
    ],
]

# Each cuts seconds off a start; none matters for a throwaway local node. Not among them:
# cassandra.unsafesystem, which skips flushing the schema tables, so that a node killed
# with -9 comes back without the keyspaces created since it started.
_FAST_START_FLAGS = [
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.superuser_setup_delay_ms=0",
    "-Dcassandra.ring_delay_ms=1000",
    "-Dcassandra-foreground=yes",
]


class LocalError(Exception):
    """A local node could not be resolved, started, stopped or inspected."""


@dataclass(frozen=True)
class Options:
    """What a cluster was started with; a running cluster keeps its options."""

    nodes: int = 1
    auth: bool = False
    tls: bool = False
    address: str = "127.0.0.1"
    heap: str = "1G"

    def describe(self) -> str:
        flags = [f"--nodes {self.nodes}", f"--address {self.address}", f"--heap {self.heap}"]
        flags += ["--auth"] * self.auth + ["--tls"] * self.tls
        return " ".join(flags)


@dataclass
class NodeInfo:
    """One node of a local cluster."""

    index: int
    address: str
    cql_port: int
    jmx_port: int
    directory: str
    pid: int | None = None
    alive: bool = False
    version: str | None = None

    @property
    def log(self) -> str:
        return str(Path(self.directory) / "logs" / "system.log")


@dataclass
class ClusterInfo:
    """A local cluster: its name, options and nodes, and what a client needs to reach it."""

    name: str
    options: Options
    nodes: list[NodeInfo] = field(default_factory=list)
    ca_cert: str | None = None

    @property
    def contact_points(self) -> list[str]:
        return [node.address for node in self.nodes]

    @property
    def port(self) -> int:
        return CQL_PORT

    @property
    def running(self) -> bool:
        return bool(self.nodes) and all(node.alive for node in self.nodes)

    @property
    def credentials(self) -> tuple[str, str] | None:
        return SUPERUSER if self.options.auth else None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "running": self.running,
            "options": asdict(self.options),
            "contact_points": self.contact_points,
            "port": self.port,
            "ca_cert": self.ca_cert,
            "version": CASSANDRA_VERSION,
            "nodes": [{**asdict(node), "log": node.log} for node in self.nodes],
        }


def home() -> Path:
    """Return the directory that holds the jars and the clusters' state."""
    configured = os.environ.get("CASSNB_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cassnb"


def _say(message: str) -> None:
    print(f"cassnb.local: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- tools


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise LocalError(
            "java was not found: install a Java 17 runtime "
            "(for example `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
        )
    try:
        probe = subprocess.run(
            [candidate, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise LocalError(f"java at {candidate} cannot be run: {exc}") from exc
    found = re.search(r'version "(\d+)(?:\.(\d+))?', probe.stderr + probe.stdout)
    if not found:
        raise LocalError(f"could not tell the version of java at {candidate}")
    major = int(found.group(1))
    if major == 1:  # "1.8.0" style
        major = int(found.group(2) or 0)
    if major < 17:
        raise LocalError(
            f"java at {candidate} is version {major}; Cassandra {CASSANDRA_VERSION} "
            "needs Java 17 (install openjdk-17 or point JAVA_HOME at one)"
        )
    return candidate


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise LocalError(f"{name} was not found: {hint}")
    return found


# ---------------------------------------------------------------------------- jars

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cassnb.local</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def _jar_dir() -> Path:
    return home() / f"cassandra-{CASSANDRA_VERSION}"


def resolve_jars() -> list[Path]:
    """Resolve cassandra-all and its runtime jars once; later calls reuse them."""
    target = _jar_dir()
    done = target / "resolved"
    lib = target / "lib"
    if done.exists():
        return sorted(lib.glob("*.jar"))
    mvn = _tool("mvn", "install Apache Maven (for example `apt-get install maven`)")
    _say(f"resolving cassandra-all {CASSANDRA_VERSION} and its jars with Maven")
    began = time.monotonic()
    target.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(lib, ignore_errors=True)
    (target / "pom.xml").write_text(_POM.format(version=CASSANDRA_VERSION))
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(target / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    jars = sorted(lib.glob("*.jar"))
    if result.returncode != 0 or not any(j.name.startswith("cassandra-all-") for j in jars):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise LocalError(f"Maven could not resolve cassandra-all {CASSANDRA_VERSION}:\n{tail}")
    size = sum(j.stat().st_size for j in jars)
    done.write_text(f"{len(jars)} jars, {size} bytes\n")
    _say(
        f"resolved {len(jars)} jars ({size / 1e6:.0f} MB) in {time.monotonic() - began:.1f} s "
        f"into {lib}"
    )
    return jars


# ---------------------------------------------------------------------------- layout


def _nth_address(first: str, index: int) -> str:
    return str(ipaddress.IPv4Address(first) + index)


def _jmx_port(address: str) -> int:
    # Distinct per address, so clusters on different addresses never collide.
    return 7100 + int(ipaddress.IPv4Address(address)) % 256


def _cluster_dir(name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise LocalError(f"cluster name {name!r} may only hold letters, digits, '-' and '_'")
    return home() / "clusters" / name


def _state_file(name: str) -> Path:
    return _cluster_dir(name) / "state.json"


def _layout(name: str, options: Options) -> ClusterInfo:
    if options.nodes not in _BALANCED_TOKENS:
        raise LocalError(f"--nodes must be one of {sorted(_BALANCED_TOKENS)}")
    base = _cluster_dir(name)
    nodes = []
    for i in range(options.nodes):
        address = _nth_address(options.address, i)
        nodes.append(
            NodeInfo(
                index=i + 1,
                address=address,
                cql_port=CQL_PORT,
                jmx_port=_jmx_port(address),
                directory=str(base / f"node{i + 1}"),
            )
        )
    ca = str(base / "tls" / "ca.pem") if options.tls else None
    return ClusterInfo(name=name, options=options, nodes=nodes, ca_cert=ca)


def _yaml(cluster: ClusterInfo, node: NodeInfo, token: str) -> str:
    options = cluster.options
    directory = Path(node.directory)
    seeds = ",".join(cluster.contact_points)
    if options.auth:
        security = (
            "authenticator: PasswordAuthenticator\n"
            "authorizer: CassandraAuthorizer\n"
            "role_manager: CassandraRoleManager\n"
            "roles_validity: 0ms\n"
            "permissions_validity: 0ms\n"
            "credentials_validity: 0ms\n"
        )
    else:
        security = "authenticator: AllowAllAuthenticator\nauthorizer: AllowAllAuthorizer\n"
    if options.tls:
        keystore = Path(cluster.ca_cert or "").parent / "node.jks"
        security += (
            "client_encryption_options:\n"
            "  enabled: true\n"
            "  optional: false\n"
            f"  keystore: {keystore}\n"
            f"  keystore_password: {KEYSTORE_PASSWORD}\n"
            "  require_client_auth: false\n"
        )
    return f"""\
cluster_name: cassnb-{cluster.name}
num_tokens: 1
initial_token: {token}
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seeds}"
listen_address: {node.address}
rpc_address: {node.address}
storage_port: {STORAGE_PORT}
native_transport_port: {node.cql_port}
start_native_transport: true
data_file_directories:
  - {directory / "data"}
commitlog_directory: {directory / "commitlog"}
saved_caches_directory: {directory / "saved_caches"}
hints_directory: {directory / "hints"}
cdc_raw_directory: {directory / "cdc_raw"}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
memtable_allocation_type: heap_buffers
disk_access_mode: standard
concurrent_reads: 4
concurrent_writes: 4
concurrent_counter_writes: 4
concurrent_materialized_view_writes: 2
concurrent_compactors: 1
storage_compatibility_mode: NONE
user_defined_functions_enabled: false
{security}"""


_LOGBACK = """<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
  <logger name="org.apache.cassandra.utils.SigarLibrary" level="ERROR"/>
</configuration>
"""


def _make_tls_material(cluster: ClusterInfo) -> None:
    """Make a small CA and a node certificate it signs, for every node's address."""
    tls_dir = Path(cluster.ca_cert or "").parent
    if (tls_dir / "node.jks").exists() and (tls_dir / "ca.pem").exists():
        return
    keytool = _tool("keytool", "it ships with the JDK; install openjdk-17-jdk-headless")
    shutil.rmtree(tls_dir, ignore_errors=True)
    tls_dir.mkdir(parents=True)
    common = ["-storepass", KEYSTORE_PASSWORD, "-keypass", KEYSTORE_PASSWORD]
    san = "SAN=" + ",".join(f"ip:{a}" for a in cluster.contact_points) + ",dns:localhost"

    def run(*args: str, stdin: bytes | None = None) -> bytes:
        result = subprocess.run(
            [keytool, *args], input=stdin, capture_output=True, check=False, cwd=tls_dir
        )
        if result.returncode != 0:
            raise LocalError(f"keytool {args[0]} failed: {result.stderr.decode().strip()}")
        return result.stdout

    ca_store = ["-keystore", "ca.jks", "-storetype", "JKS", *common]
    node_store = ["-keystore", "node.jks", "-storetype", "JKS", *common]
    run("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity",
        "3650", "-dname", "CN=cassnb local CA", "-ext", "bc:c", *ca_store)  # fmt: skip
    run("-genkeypair", "-alias", "node", "-keyalg", "RSA", "-keysize", "2048", "-validity",
        "3650", "-dname", "CN=cassnb local node", *node_store)  # fmt: skip
    ca_pem = run("-exportcert", "-rfc", "-alias", "ca", *ca_store)
    (tls_dir / "ca.pem").write_bytes(ca_pem)
    request = run("-certreq", "-alias", "node", *node_store)
    signed = run("-gencert", "-alias", "ca", "-ext", san, "-ext", "ku:c=digitalSignature,"
                 "keyEncipherment", "-ext", "eku=serverAuth", "-validity", "3650",
                 "-rfc", *ca_store, stdin=request)  # fmt: skip
    run("-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", *node_store)
    (tls_dir / "node.pem").write_bytes(signed)
    run("-importcert", "-noprompt", "-alias", "node", "-file", "node.pem", *node_store)


def _write_node_files(cluster: ClusterInfo, node: NodeInfo, token: str) -> Path:
    directory = Path(node.directory)
    conf = directory / "conf"
    for sub in ("conf", "logs", "data", "commitlog", "saved_caches", "hints", "cdc_raw"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    (conf / "cassandra.yaml").write_text(_yaml(cluster, node, token))
    (conf / "logback.xml").write_text(_LOGBACK.format(log=directory / "logs" / "system.log"))
    return conf


def _command(java: str, jars: list[Path], conf: Path, node: NodeInfo, heap: str) -> list[str]:
    directory = Path(node.directory)
    jamm = next((j for j in jars if j.name.startswith("jamm-")), None)
    classpath = os.pathsep.join([str(conf), *(str(j) for j in jars)])
    return [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        *_JAVA17_FLAGS,
        *([f"-javaagent:{jamm}"] if jamm else []),
        *_FAST_START_FLAGS,
        f"-Dcassandra.config=file://{conf / 'cassandra.yaml'}",
        f"-Dlogback.configurationFile={conf / 'logback.xml'}",
        f"-Dcassandra.logdir={directory / 'logs'}",
        f"-Dcassandra.storagedir={directory}",
        f"-Dcassandra.jmx.local.port={node.jmx_port}",
        f"-Dcassandra.available_processors={os.cpu_count() or 2}",
        f"-Dcassnb.node={directory}",
        "-cp",
        classpath,
        "org.apache.cassandra.service.CassandraDaemon",
    ]


# ---------------------------------------------------------------------------- processes


def _is_our_process(pid: int | None, node: NodeInfo) -> bool:
    """Tell whether pid is this node's JVM (and not a reused pid of something else)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"-Dcassnb.node={node.directory}".encode() in cmdline


def _port_taken(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return True
    return False


def _node_ports(node: NodeInfo) -> list[tuple[str, int, str]]:
    """The (address, port, what) a node listens on; JMX listens on 127.0.0.1 only."""
    return [
        (node.address, node.cql_port, "CQL"),
        (node.address, STORAGE_PORT, "storage"),
        ("127.0.0.1", node.jmx_port, "JMX"),
    ]


def _check_ports(cluster: ClusterInfo) -> None:
    for node in cluster.nodes:
        for where, port, what in _node_ports(node):
            if _port_taken(where, port):
                raise LocalError(
                    f"{what} port {port} on {where} is already taken by another process, "
                    f"so node {node.index} cannot start: stop that process, or start this "
                    "cluster on other addresses with --address"
                )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log was written)"
    return "\n".join(text.strip().splitlines()[-lines:])


def _load(name: str) -> ClusterInfo | None:
    path = _state_file(name)
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    options = Options(**raw["options"])
    cluster = ClusterInfo(
        name=raw["name"],
        options=options,
        nodes=[NodeInfo(**node) for node in raw["nodes"]],
        ca_cert=raw.get("ca_cert"),
    )
    for node in cluster.nodes:
        node.alive = _is_our_process(node.pid, node)
        if not node.alive:
            node.version = None
    return cluster


def _save(cluster: ClusterInfo) -> None:
    path = _state_file(cluster.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "name": cluster.name,
        "options": asdict(cluster.options),
        "ca_cert": cluster.ca_cert,
        "nodes": [asdict(node) for node in cluster.nodes],
    }
    path.write_text(json.dumps(state, indent=2) + "\n")


# ---------------------------------------------------------------------------- a tiny CQL client
# Enough of the native protocol (v4 framing) to tell that a node answers queries,
# with or without a password and TLS, without any dependency.

_OPCODES = {"ERROR": 0x00, "STARTUP": 0x01, "READY": 0x02, "AUTHENTICATE": 0x03,
            "OPTIONS": 0x05, "SUPPORTED": 0x06, "QUERY": 0x07, "RESULT": 0x08,
            "AUTH_RESPONSE": 0x0F, "AUTH_SUCCESS": 0x10}  # fmt: skip


def _frame(opcode: int, body: bytes) -> bytes:
    return struct.pack(">BBhBi", 0x04, 0, 0, opcode, len(body)) + body


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">H", len(data)) + data


def _recv(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        chunks = b""
        while len(chunks) < n:
            chunk = sock.recv(n - len(chunks))
            if not chunk:
                raise OSError("connection closed by the node")
            chunks += chunk
        return chunks

    _, _, _, opcode, length = struct.unpack(">BBhBi", exactly(9))
    return opcode, exactly(length)


def _error_message(body: bytes) -> str:
    (length,) = struct.unpack(">H", body[4:6])
    return body[6 : 6 + length].decode(errors="replace")


def _skip_type(body: bytes, at: int) -> int:
    """Return the offset just past the type option that starts at ``at``."""
    (kind,) = struct.unpack(">H", body[at : at + 2])
    at += 2
    if kind == 0x0000:  # custom: a class name
        (size,) = struct.unpack(">H", body[at : at + 2])
        return at + 2 + int(size)
    if kind in (0x0020, 0x0022):  # list, set: the element type
        return _skip_type(body, at)
    if kind == 0x0021:  # map: key and value types
        return _skip_type(body, _skip_type(body, at))
    if kind >= 0x0030:  # UDTs and tuples never appear in the system tables read here
        raise OSError(f"unexpected column type {kind:#06x}")
    return at


def _rows(body: bytes) -> list[list[bytes | None]]:
    """Return the raw cells of a ROWS result; an empty list for any other result."""
    kind, flags, columns = struct.unpack(">iii", body[:12])
    if kind != 2:
        return []
    at = 12
    if flags & 0x0002:  # has more pages: skip the paging state
        (size,) = struct.unpack(">i", body[at : at + 4])
        at += 4 + max(size, 0)
    if flags & 0x0001:  # global table spec: keyspace and table names
        for _ in range(2):
            (size,) = struct.unpack(">H", body[at : at + 2])
            at += 2 + size
    for _ in range(columns):
        (size,) = struct.unpack(">H", body[at : at + 2])
        at = _skip_type(body, at + 2 + size)
    (count,) = struct.unpack(">i", body[at : at + 4])
    at += 4
    rows = []
    for _ in range(count):
        row: list[bytes | None] = []
        for _ in range(columns):
            (size,) = struct.unpack(">i", body[at : at + 4])
            at += 4
            row.append(body[at : at + size] if size >= 0 else None)
            at += max(size, 0)
        rows.append(row)
    return rows


@contextlib.contextmanager
def _cql_connection(
    address: str,
    port: int,
    credentials: tuple[str, str] | None,
    ca_cert: str | None,
    timeout: float,
) -> Iterator[socket.socket]:
    """Yield a socket on which the CQL handshake (and login, if asked) is done."""
    raw = socket.create_connection((address, port), timeout=timeout)
    with contextlib.ExitStack() as stack:
        stack.callback(raw.close)
        sock: socket.socket = raw
        if ca_cert:
            context = ssl.create_default_context(cafile=ca_cert)
            sock = context.wrap_socket(raw, server_hostname=address)
            stack.callback(sock.close)
        startup = struct.pack(">H", 1) + _string("CQL_VERSION") + _string("3.0.0")
        sock.sendall(_frame(_OPCODES["STARTUP"], startup))
        opcode, body = _recv(sock)
        if opcode == _OPCODES["AUTHENTICATE"]:
            if credentials is None:
                raise OSError("the node asks for a password")
            token = b"\0" + credentials[0].encode() + b"\0" + credentials[1].encode()
            sock.sendall(_frame(_OPCODES["AUTH_RESPONSE"], struct.pack(">i", len(token)) + token))
            opcode, body = _recv(sock)
            if opcode != _OPCODES["AUTH_SUCCESS"]:
                raise OSError(f"login refused: {_error_message(body)}")
        elif opcode == _OPCODES["ERROR"]:
            raise OSError(_error_message(body))
        yield sock


def _query(sock: socket.socket, cql: str) -> list[list[bytes | None]]:
    """Run one statement at consistency ONE; return the raw cells of its rows."""
    query = struct.pack(">i", len(cql)) + cql.encode() + struct.pack(">HB", 0x0001, 0)
    sock.sendall(_frame(_OPCODES["QUERY"], query))
    opcode, body = _recv(sock)
    if opcode != _OPCODES["RESULT"]:
        raise OSError(_error_message(body) if opcode == _OPCODES["ERROR"] else "no result")
    try:
        return _rows(body)
    except (struct.error, IndexError) as exc:
        raise OSError(f"unreadable result from the node: {exc}") from exc


def query_release_version(
    address: str,
    port: int = CQL_PORT,
    *,
    credentials: tuple[str, str] | None = None,
    ca_cert: str | None = None,
    timeout: float = 5.0,
) -> str:
    """Ask a node for its release version over CQL; raise OSError if it does not answer."""
    with _cql_connection(address, port, credentials, ca_cert, timeout) as sock:
        rows = _query(sock, "SELECT release_version FROM system.local")
    if not rows or rows[0][0] is None:
        raise OSError("system.local returned no release version")
    return rows[0][0].decode()


def _ring_view(cluster: ClusterInfo, node: NodeInfo) -> tuple[bytes | None, dict[str, bytes]]:
    """Return a node's schema version and, for each peer it knows with tokens, theirs."""
    with _cql_connection(
        node.address, node.cql_port, cluster.credentials, cluster.ca_cert, 2.0
    ) as sock:
        local_rows = _query(sock, "SELECT schema_version FROM system.local")
        peers = _query(sock, "SELECT peer, tokens, schema_version FROM system.peers_v2")
    if not local_rows:
        raise OSError("system.local returned no row")
    known = {}
    for peer, tokens, version in peers:
        # An empty set reads as NULL; a peer without tokens is not in the ring yet.
        if peer is not None and tokens is not None and version is not None:
            known[str(ipaddress.ip_address(peer))] = version
    return local_rows[0][0], known


# ---------------------------------------------------------------------------- commands


def status(name: str = "default") -> ClusterInfo | None:
    """Return the cluster's recorded state with liveness and versions, or None."""
    cluster = _load(name)
    if cluster is None:
        return None
    for node in cluster.nodes:
        if node.alive:
            try:
                node.version = query_release_version(
                    node.address,
                    node.cql_port,
                    credentials=cluster.credentials,
                    ca_cert=cluster.ca_cert,
                    timeout=2.0,
                )
            except OSError:
                node.version = None
    return cluster


def start(
    options: Options | None = None, name: str = "default", *, timeout: float = READY_TIMEOUT
) -> tuple[ClusterInfo, bool]:
    """Start the cluster unless it already runs; return it and whether this call started it."""
    options = options or Options()
    existing = _load(name)
    if existing is not None and any(node.alive for node in existing.nodes):
        if existing.options != options:
            raise LocalError(
                f"cluster {name!r} is already running with other options "
                f"({existing.options.describe()}); stop it first with "
                f"`python -m cassnb.local stop{_name_flag(name)}`"
            )
        if existing.running:
            current = status(name) or existing
            if any(node.version is None for node in current.nodes):
                # Another process launched it a moment ago: reuse it once it answers.
                _say(f"cluster {name!r} is still starting; waiting until it answers")
                _wait_ready(current, [], time.monotonic(), timeout)
            else:
                _say(f"cluster {name!r} is already running ({existing.options.describe()})")
            return current, False
        _say(f"cluster {name!r} is partly running; starting its missing nodes")

    java = _java()
    jars = resolve_jars()
    cluster = _layout(name, options)
    if existing is not None:
        for old, new in zip(existing.nodes, cluster.nodes, strict=False):
            if old.alive and old.directory == new.directory:
                new.pid, new.alive = old.pid, True
    _check_ports(ClusterInfo(name, options, [n for n in cluster.nodes if not n.alive]))
    if options.tls:
        _make_tls_material(cluster)

    began = time.monotonic()
    tokens = _BALANCED_TOKENS[options.nodes]
    launched = []
    for node, token in zip(cluster.nodes, tokens, strict=True):
        if node.alive:
            continue
        conf = _write_node_files(cluster, node, token)
        (Path(node.directory) / "logs" / "system.log").unlink(missing_ok=True)
        _say(f"starting node {node.index} on {node.address}:{node.cql_port}")
        node.pid = _launch(_command(java, jars, conf, node, options.heap), node)
        node.alive = True
        launched.append(node.index)
    _save(cluster)

    try:
        _wait_ready(cluster, launched, began, timeout)
    except BaseException:
        stop(name, quiet=True)
        raise
    return cluster, bool(launched)


def _launch(command: list[str], node: NodeInfo) -> int:
    """Start a JVM detached from this process (reparented to init) and return its pid."""
    # A shell in between backgrounds the JVM and exits at once: the node outlives this
    # process, and no child object is left behind to warn or to become a zombie.
    shell = subprocess.run(
        ["/bin/sh", "-c", '"$@" </dev/null >"$CASSNB_STDOUT" 2>&1 & echo $!', "sh", *command],
        cwd=node.directory,
        env={**os.environ, "CASSNB_STDOUT": str(Path(node.directory) / "logs" / "stdout.log")},
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return int(shell.stdout.strip())


def _name_flag(name: str) -> str:
    return "" if name == "default" else f" --name {name}"


def _wait_ready(
    cluster: ClusterInfo, launched: Sequence[int], began: float, timeout: float
) -> None:
    pending = {node.index: node for node in cluster.nodes}
    deadline = began + timeout
    last_note = began
    while pending:
        for index, node in list(pending.items()):
            if index in launched and not _is_our_process(node.pid, node):
                directory = Path(node.directory) / "logs"
                log = directory / "system.log"
                shown = log if log.exists() and log.stat().st_size else directory / "stdout.log"
                raise LocalError(
                    f"node {node.index} ({node.address}) exited while starting. "
                    f"Last lines of its log:\n{_tail(shown)}\nFull log: {shown}"
                )
            try:
                node.version = query_release_version(
                    node.address,
                    node.cql_port,
                    credentials=cluster.credentials,
                    ca_cert=cluster.ca_cert,
                    timeout=2.0,
                )
            except OSError:
                continue
            del pending[index]
            _say(f"node {node.index} answers CQL ({node.version}) after "
                 f"{time.monotonic() - began:.1f} s")  # fmt: skip
        if not pending:
            break
        now = time.monotonic()
        if now > deadline:
            raise LocalError(
                f"nodes {sorted(pending)} did not answer CQL within {timeout:.0f} s; "
                f"see {pending[min(pending)].log}"
            )
        if now - last_note > 15:
            _say(f"still waiting for node(s) {sorted(pending)} ({now - began:.0f} s)")
            last_note = now
        time.sleep(0.5)
    if len(cluster.nodes) > 1:
        _wait_for_ring(cluster, deadline)
    _say(f"cluster {cluster.name!r} ready in {time.monotonic() - began:.1f} s")


def _wait_for_ring(cluster: ClusterInfo, deadline: float) -> None:
    """Wait until every node lists every other one with its tokens, all on one schema.

    A node answers CQL before gossip has told it its peers' tokens; a client that connects
    then builds its token map from an incomplete ``system.peers_v2`` and places replicas
    on too few nodes, so the cluster counts as ready only once every view is whole.
    """
    while True:
        whole = True
        for node in cluster.nodes:
            try:
                own, peers = _ring_view(cluster, node)
            except OSError:
                whole = False
                break
            others = {a for a in cluster.contact_points if a != node.address}
            if set(peers) != others or any(version != own for version in peers.values()):
                whole = False
                break
        if whole:
            return
        if time.monotonic() > deadline:
            raise LocalError("the nodes did not all see each other in time; see their logs")
        time.sleep(0.5)


def stop(name: str = "default", *, quiet: bool = False, timeout: float = STOP_TIMEOUT) -> int:
    """Stop the processes this module started for the cluster; return how many it stopped."""
    cluster = _load(name)
    if cluster is None:
        if not quiet:
            _say(f"cluster {name!r} is not running")
        return 0
    alive = [node for node in cluster.nodes if node.alive and node.pid]
    for node in alive:
        if not quiet:
            _say(f"stopping node {node.index} (pid {node.pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid or 0, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for node in alive:
        while _is_our_process(node.pid, node) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _is_our_process(node.pid, node):
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid or 0, signal.SIGKILL)
            while _is_our_process(node.pid, node):
                time.sleep(0.1)
    # A JVM's command line is gone a moment before its sockets are: the node is stopped once
    # its ports are free, so that it (or another) can start on them at once.
    released_by = time.monotonic() + PORT_RELEASE_WAIT
    for node in alive:
        for where, port, _ in _node_ports(node):
            while _port_taken(where, port) and time.monotonic() < released_by:
                time.sleep(0.05)
    for node in cluster.nodes:
        node.pid, node.alive, node.version = None, False, None
    _save(cluster)
    if not quiet:
        _say(f"cluster {name!r} stopped" if alive else f"cluster {name!r} was not running")
    return len(alive)


def clusters() -> list[str]:
    """Return the names of every cluster recorded under the home directory."""
    root = home() / "clusters"
    return sorted(p.parent.name for p in root.glob("*/state.json"))


def kill_node(name: str, index: int) -> int:
    """Kill one node's JVM at once (SIGKILL), as a crash would; return its pid."""
    cluster = _load(name)
    node = next((n for n in (cluster.nodes if cluster else []) if n.index == index), None)
    if node is None or not node.alive or node.pid is None:
        raise LocalError(f"node {index} of cluster {name!r} is not running")
    os.kill(node.pid, signal.SIGKILL)
    while _is_our_process(node.pid, node):
        time.sleep(0.05)
    return node.pid


# ---------------------------------------------------------------------------- CLI


def _print_status(cluster: ClusterInfo | None, name: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(cluster.to_json() if cluster else {"name": name, "running": False}))
        return
    if cluster is None:
        print(f"cluster {name!r}: not started")
        return
    state = "running" if cluster.running else "stopped"
    if not cluster.running and any(node.alive for node in cluster.nodes):
        state = "partly running"
    print(f"cluster {name!r}: {state}, Cassandra {CASSANDRA_VERSION}, {cluster.options.describe()}")
    for node in cluster.nodes:
        pid = node.pid if node.alive else "-"
        version = node.version or ("not answering" if node.alive else "down")
        print(f"  node {node.index}  {node.address}:{node.cql_port}  pid {pid}  {version}")
    if cluster.ca_cert:
        print(f"  CA certificate for clients: {cluster.ca_cert}")
    if cluster.options.auth:
        print("  superuser: cassandra (password: cassandra)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cassnb.local",
        description=f"Run Apache Cassandra {CASSANDRA_VERSION} locally from Maven Central jars.",
    )
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--nodes", type=int, default=1, choices=sorted(_BALANCED_TOKENS))
    parser.add_argument("--auth", action="store_true", help="require a password")
    parser.add_argument("--tls", action="store_true", help="require TLS from clients")
    parser.add_argument("--name", default="default", help="cluster name (default: default)")
    parser.add_argument("--address", default="127.0.0.1", help="address of node 1")
    parser.add_argument("--heap", default="1G", help="heap per node (default: 1G)")
    parser.add_argument("--json", action="store_true", help="print the state as JSON")
    parser.add_argument("--all", action="store_true", help="stop or show every cluster")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "start":
            options = Options(args.nodes, args.auth, args.tls, args.address, args.heap)
            cluster, _ = start(options, args.name)
            _print_status(cluster, args.name, args.json)
        elif args.command == "stop":
            for name in clusters() if args.all else [args.name]:
                stop(name)
        else:
            for name in clusters() if args.all else [args.name]:
                _print_status(status(name), name, args.json)
    except LocalError as exc:
        print(f"cassnb.local: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cassnb.local: interrupted", file=sys.stderr)
        return 130
    return 0
