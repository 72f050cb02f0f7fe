"""Simulacron: a CQL server simulator from Maven Central that speaks protocol v4 at most.

A real peer for the rule that cassnb connects over v5 or not at all. Its default node
presents itself as Cassandra 3.0 and answers any newer protocol version with a protocol
error, as such a server does; the driver then offers v4, which it accepts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cassnb import local

VERSION = "0.12.0"
ARTIFACT = f"com.datastax.oss.simulacron:simulacron-standalone:{VERSION}"
#: Out of the range the local Cassandra clusters use (127.0.0.x).
ADDRESS = "127.0.1.10"
ADMIN_PORT = 8187
START_TIMEOUT_S = 60.0


def jar() -> Path:
    """The standalone jar, fetched with Maven into the cassnb home on first use."""
    target = local.home() / f"simulacron-{VERSION}"
    path = target / f"simulacron-standalone-{VERSION}.jar"
    if path.exists():
        return path
    mvn = shutil.which("mvn")
    assert mvn, "Apache Maven is needed to fetch Simulacron"
    done = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={ARTIFACT}",
            f"-DoutputDirectory={target}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and path.exists(), (
        f"Maven could not fetch {ARTIFACT}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    )
    return path


def _post(path: str) -> object:
    request = urllib.request.Request(f"http://{ADDRESS}:{ADMIN_PORT}{path}", data=b"")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@contextmanager
def v4_node() -> Iterator[tuple[str, int]]:
    """Run Simulacron with one simulated node; yield that node's (address, port)."""
    java = shutil.which("java")
    assert java, "Java is needed to run Simulacron"
    process = subprocess.Popen(
        [
            java,
            "-Xmx128m",
            "-jar",
            str(jar()),
            "--ip",
            ADDRESS,
            "--httpintf",
            ADDRESS,
            "--httpport",
            str(ADMIN_PORT),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"Simulacron exited with {process.returncode}"
            try:
                created = _post("/cluster?data_centers=1&name=v4only")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "Simulacron did not start in time"
                time.sleep(0.2)
        assert isinstance(created, dict)
        node = created["data_centers"][0]["nodes"][0]
        host, port = node["address"].rsplit(":", 1)
        yield host, int(port)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
