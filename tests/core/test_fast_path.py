"""The gate in front of the fast path: on for the driver it is tested with, off on any other
version, off by ``CASSNB_FAST_PATH=0`` or ``fast_path=False``, and then only the driver's
public API, with none of the fast path's modules imported.

The version and the switch are read when a process starts, so each of those ways runs in
a process of its own, as a user's would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import cassandra
import pytest
from _core_data import KEYSPACE, PAGED_ROWS, Data

from cassnb import AsyncCluster, ConfigurationError, StreamConfig, read_cql
from cassnb._driver import SWITCH, TESTED_VERSIONS

QUERY = f"SELECT c FROM {KEYSPACE}.paged WHERE p = 0"

CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, sys

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging.getLogger("cassnb").addHandler(Keep())
    logging.getLogger("cassnb").setLevel(logging.INFO)
    host, port, version, query = sys.argv[1:]
    if version != "-":
        import cassandra
        cassandra.__version__ = version  # as if another release were installed

    from cassnb import AsyncCluster, StreamConfig, read_cql

    async def main():
        async with AsyncCluster([host], port=int(port)) as cluster:
            async with cluster.connect() as session:
                frame = await read_cql(query, session, fetch_size=250)
                stream = await session.execute_stream(query, stream_config=StreamConfig())
                async with stream:
                    read = type(stream._state.feed.read).__name__
                    rows = [row.c async for row in stream]
                counted = await session.execute(query)
                return {
                    "fast_path": cluster.fast_path,
                    "status": str(cluster.fast_path_status),
                    "read": read,
                    "frame": frame["c"].tolist(),
                    "rows": rows,
                    "execute": len(counted),
                }

    report = asyncio.run(main())
    report["fast_modules"] = sorted(m for m in sys.modules if m.startswith("cassnb._driver.fast"))
    report["records"] = records
    print(json.dumps(report))
    """
)


def _child(data: Data, *, version: str = "-", switch: str | None = None) -> Any:
    env = {key: value for key, value in os.environ.items() if key != SWITCH}
    if switch is not None:
        env[SWITCH] = switch
    result = subprocess.run(
        [sys.executable, "-c", CHILD, data.contact_points[0], str(data.port), version, QUERY],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    every_row = list(range(PAGED_ROWS))
    assert report["frame"] == every_row
    assert report["rows"] == every_row
    assert report["execute"] == PAGED_ROWS
    return report


def test_on_by_default_with_the_driver_it_is_tested_with(data: Data) -> None:
    assert cassandra.__version__ in TESTED_VERSIONS
    report = _child(data)
    assert report["fast_path"] is True
    assert report["status"] == "fast path on"
    assert report["read"] == "FastRead"
    assert {
        "cassnb._driver.fast.connection",
        "cassnb._driver.fast.pages",
        "cassnb._driver.fast.reads",
    } <= set(report["fast_modules"])
    assert report["records"] == []


def test_off_with_another_driver_version_and_says_why(data: Data) -> None:
    report = _child(data, version="3.29.2")
    assert report["fast_path"] is False
    assert report["status"] == (
        "fast path off: cassandra-driver 3.29.2 is not a version it is tested with "
        f"({', '.join(TESTED_VERSIONS)}); only the driver's public API is used"
    )
    assert report["read"] == "PublicRead"
    assert report["fast_modules"] == []
    (line,) = report["records"]
    assert "cassandra-driver 3.29.2" in line and "public API" in line


@pytest.mark.parametrize("switch", ["0", "off"])
def test_off_by_the_environment_switch(data: Data, switch: str) -> None:
    report = _child(data, switch=switch)
    assert report["fast_path"] is False
    assert report["status"] == f"fast path off: turned off by {SWITCH}={switch}"
    assert report["read"] == "PublicRead"
    assert report["fast_modules"] == []


async def test_off_for_one_cluster(data: Data) -> None:
    cluster = AsyncCluster(data.contact_points, data.port, fast_path=False)
    assert cluster.fast_path is False
    assert str(cluster.fast_path_status) == "fast path off: turned off with fast_path=False"
    async with cluster, cluster.connect(KEYSPACE) as session:
        config = StreamConfig(fetch_size=700)
        async with await session.execute_stream(QUERY, stream_config=config) as stream:
            assert type(stream._state.feed.read).__name__ == "PublicRead"
            pages = [len(page) async for page in stream.pages()]
        assert pages == [700, 700, 700, 700, 200]
        frame = await read_cql(QUERY, session, fetch_size=1000)
        assert frame["c"].tolist() == list(range(PAGED_ROWS))
        first = await session.execute_page(QUERY, fetch_size=2000)
        rest = await session.execute_page(QUERY, fetch_size=2000, paging_state=first.paging_state)
        assert [row.c for row in [*first, *rest]] == list(range(PAGED_ROWS))
        assert rest.paging_state is None


def test_fast_path_takes_a_bool_only() -> None:
    with pytest.raises(ConfigurationError, match="fast_path must be True or False"):
        AsyncCluster(fast_path="no")  # type: ignore[arg-type]
