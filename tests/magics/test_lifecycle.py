"""Long streams, interrupts, reconnects and kernel shutdown, in real kernels."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import psutil

from ._magics_kernel import EXTENSION, KEYSPACE, Kernel

CONNECT = f"%cql_connect 127.0.0.1 --keyspace {KEYSPACE}"


def _interrupt_once_rows_flow(kernel: Kernel, msg_id: str) -> tuple[dict[str, Any], float]:
    """Interrupt a reading cell; return its reply and the seconds from interrupt to reply."""
    # The progress bar on stderr shows that rows flow.
    kernel.wait_for_output(msg_id, "pages=")
    time.sleep(0.2)
    interrupted = time.monotonic()
    kernel.manager.interrupt_kernel()
    reply = kernel.wait_reply(msg_id, timeout=30)
    return reply, time.monotonic() - interrupted


def test_interrupting_a_million_row_stream(kernel: Kernel) -> None:
    msg_id = kernel.start("%%cql --fetch-size 1000\nSELECT * FROM million")
    reply, latency = _interrupt_once_rows_flow(kernel, msg_id)
    print(f"interrupt to reply: {latency * 1000:.0f} ms")
    content = reply["content"]
    assert content["status"] == "error"
    assert latency <= 1.0
    arrived = re.search(r"([\d,]+) rows had arrived", content["evalue"])
    assert arrived is not None, content["evalue"]
    assert 0 < int(arrived.group(1).replace(",", "")) < 1_000_000
    after = kernel.ok("%cql SELECT count(*) FROM million WHERE p = 5")
    assert "1000" in after.text
    still_open = kernel.ok(
        "from cassnb._core import registry\nprint(registry.open_counts().streams)"
    )
    assert still_open.stdout.strip() == "0"


def test_interrupting_a_cell_that_cannot_await(kernel: Kernel) -> None:
    msg_id = kernel.start(
        "def read_all():\n    frame = %cql --fetch-size 1000 SELECT * FROM million\n"
        "    return frame\n"
        "read_all()"
    )
    reply, latency = _interrupt_once_rows_flow(kernel, msg_id)
    print(f"interrupt to reply, blocking path: {latency * 1000:.0f} ms")
    assert reply["content"]["status"] == "error"
    assert latency <= 1.0
    assert re.search(r"[\d,]+ rows had arrived", reply["content"]["evalue"])
    assert "1 row" in kernel.ok("%cql SELECT count(*) FROM million WHERE p = 5").text


def test_long_streams_show_a_progress_bar_that_goes_away(kernel: Kernel) -> None:
    reply = kernel.ok("%%cql --fetch-size 2000 --max-rows 60000\nSELECT * FROM million")
    assert "rows" in reply.stderr and "pages=" in reply.stderr
    # The bar is left off the output once done: its last write blanks the line.
    bar = reply.stderr.split("cassnb: stopped at max_rows")[0]
    assert bar.endswith("\r") and bar.split("\r")[-2].strip() == ""
    assert "60,000 rows" in reply.text
    quiet = kernel.ok("%%cql --quiet --fetch-size 2000 --max-rows 60000\nSELECT * FROM million")
    assert "pages=" not in quiet.stderr
    short = kernel.ok("%cql SELECT * FROM million WHERE p = 1")
    assert short.stderr == ""


def _resources(pid: int) -> tuple[int, int]:
    process = psutil.Process(pid)
    return process.num_threads(), len(process.net_connections(kind="inet"))


def test_reconnecting_with_the_same_alias_does_not_pile_up(fresh_kernel: Kernel) -> None:
    fresh_kernel.ok(f"%load_ext {EXTENSION}")
    fresh_kernel.ok(f"{CONNECT} --alias main\n%cql SELECT count(*) FROM flights")
    fresh_kernel.ok("import cassnb\nfirst = cassnb.get_default_session()")
    time.sleep(1.0)
    threads_before, sockets_before = _resources(fresh_kernel.pid)
    for _ in range(10):
        fresh_kernel.ok(f"{CONNECT} --alias main\n%cql SELECT count(*) FROM flights")
    time.sleep(1.0)
    threads_after, sockets_after = _resources(fresh_kernel.pid)
    print(
        f"after 1 connect: {threads_before} threads, {sockets_before} sockets; "
        f"after 10 more: {threads_after} threads, {sockets_after} sockets"
    )
    assert threads_after <= threads_before + 2
    assert sockets_after <= sockets_before
    listing = fresh_kernel.ok("%cql_connect --list")
    assert listing.stdout.strip() == (
        f"* main: 127.0.0.1:9042/{KEYSPACE} (keyspace {KEYSPACE}; fast path on)"
    )
    old = fresh_kernel.ok("print(first.is_closed, first.cluster.is_closed)")
    assert old.stdout.split() == ["True", "True"]


def test_connections_can_be_switched_listed_and_closed(fresh_kernel: Kernel) -> None:
    fresh_kernel.ok(f"%load_ext {EXTENSION}")
    fresh_kernel.ok(f"{CONNECT} --alias one")
    fresh_kernel.ok("%cql_connect cassandra://127.0.0.1:9042/system_schema --alias two")
    assert "system_schema" in fresh_kernel.ok("%cql_connect --list").stdout.splitlines()[1]
    assert fresh_kernel.ok("%cql_connect --list").stdout.splitlines()[1].startswith("* two")
    fresh_kernel.ok("%cql_connect --alias one")
    assert "47" in fresh_kernel.ok("%cql SELECT count(*) FROM flights").text
    other = fresh_kernel.ok("%cql --connection two SELECT count(*) FROM tables")
    assert "1 row" in other.text
    fresh_kernel.ok("%cql_connect --close one")
    reply = fresh_kernel.run("%cql SELECT count(*) FROM flights")
    assert reply.ename == "UsageError"
    missing = fresh_kernel.run("%cql_connect --close one")
    assert missing.ename == "UsageError" and "no connection named 'one'" in missing.stderr


OPEN_THREE_STREAMS = """
import cassnb
from cassnb import StreamConfig
session = cassnb.get_default_session()
streams = []
for _ in range(3):
    stream = await session.execute_stream(
        "SELECT * FROM million", stream_config=StreamConfig(fetch_size=100)
    )
    await stream.pages().__anext__()
    streams.append(stream)
print(len(streams), 'streams open')
"""


def _log_to(path: Path) -> str:
    return (
        "import logging\n"
        f"handler = logging.FileHandler({str(path)!r})\n"
        "handler.setFormatter(logging.Formatter('%(name)s %(levelname)s %(message)s'))\n"
        "logger = logging.getLogger('cassnb')\n"
        "logger.addHandler(handler)\n"
        "logger.setLevel(logging.INFO)\n"
    )


def test_kernel_shutdown_closes_every_stream_session_and_cluster(
    fresh_kernel: Kernel, tmp_path: Path
) -> None:
    log = tmp_path / "cassnb.log"
    fresh_kernel.ok(_log_to(log))
    fresh_kernel.ok(f"%load_ext {EXTENSION}\n{CONNECT}")
    assert fresh_kernel.ok(OPEN_THREE_STREAMS).stdout.strip() == "3 streams open"
    fresh_kernel.client.stop_channels()
    started = time.monotonic()
    fresh_kernel.manager.shutdown_kernel(now=False)
    took = time.monotonic() - started
    print(f"kernel shutdown took {took:.2f} s")
    lines = log.read_text().splitlines()
    assert lines[0] == "cassnb INFO closed 3 streams, 1 session, 1 cluster", lines
    assert took < 5.0


def test_kernel_restart_closes_them_too_without_load_ext(
    fresh_kernel: Kernel, tmp_path: Path
) -> None:
    log = tmp_path / "cassnb.log"
    fresh_kernel.ok(_log_to(log))
    # No extension: the hook comes with the first cluster created in the kernel.
    fresh_kernel.ok(
        "from cassnb import AsyncCluster, set_default_session\n"
        "cluster = AsyncCluster(['127.0.0.1'])\n"
        f"set_default_session(await cluster.connect({KEYSPACE!r}))"
    )
    fresh_kernel.ok(OPEN_THREE_STREAMS)
    started = time.monotonic()
    fresh_kernel.manager.restart_kernel(now=False)
    took = time.monotonic() - started
    print(f"kernel restart took {took:.2f} s")
    lines = log.read_text().splitlines()
    assert lines[0] == "cassnb INFO closed 3 streams, 1 session, 1 cluster", lines
    fresh_kernel.client.wait_for_ready(timeout=60)
    assert fresh_kernel.ok("print(1 + 1)").stdout.strip() == "2"


def test_the_listing_says_when_the_fast_path_is_off_and_why(fresh_kernel: Kernel) -> None:
    fresh_kernel.ok(f"%load_ext {EXTENSION}")
    fresh_kernel.ok("import os\nos.environ['CASSNB_FAST_PATH'] = '0'")
    fresh_kernel.ok(f"{CONNECT} --alias plain")
    listing = fresh_kernel.ok("%cql_connect --list")
    assert listing.stdout.strip() == (
        f"* plain: 127.0.0.1:9042/{KEYSPACE} (keyspace {KEYSPACE}; "
        "fast path off: turned off by CASSNB_FAST_PATH=0)"
    )
    assert "47" in fresh_kernel.ok("%cql SELECT count(*) FROM flights").text
