"""Fixtures for the magics: real kernels driven through jupyter_client, and test tables.

A :class:`Kernel` runs cells the way a notebook frontend does (execute requests on the
shell channel, outputs on iopub) and keeps what each cell printed, displayed and raised.
The tables live in keyspace ``cassnb_magics_test``; the million-row table is loaded once
and reused while its row count is right.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from cassnb import AsyncCluster, AsyncSession
from cassnb.local import ClusterInfo

KEYSPACE = "cassnb_magics_test"
MILLION = 1_000_000
MILLION_PARTITIONS = 1_000
EXTENSION = "cassnb"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

SCHEMA = [
    f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.million (p int, c int, v int, PRIMARY KEY (p, c))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.flights "
    "(carrier text, month int, id int, dest text, delay double, "
    "PRIMARY KEY ((carrier, month), id))",
]

FLIGHTS = [
    ("AA", 1, i, dest, float(i % 7) * 1.5)
    for i, dest in enumerate(["JFK", "LAX", "ORD", "SFO", "SEA", "BOS", "MIA", "DEN"] * 5)
] + [("UA", 2, 100 + i, "IAH", None) for i in range(7)]


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes."""
    return _ANSI.sub("", text)


@dataclass
class Reply:
    """What one cell did: its reply status and every output it produced."""

    status: str
    stdout: str = ""
    stderr: str = ""
    result: dict[str, Any] | None = None
    displays: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    content: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The cell value's plain-text form ('' when the cell has no value)."""
        return "" if self.result is None else str(self.result.get("text/plain", ""))

    @property
    def ename(self) -> str | None:
        """The class name of the cell's error, from its reply (None when it succeeded)."""
        name = self.content.get("ename")
        return None if name is None else str(name)

    @property
    def error_text(self) -> str:
        """The error as shown: the traceback lines, colour codes removed."""
        if self.error is None:
            return ""
        return strip_ansi("\n".join(self.error["traceback"]))

    @property
    def everything(self) -> str:
        """Every piece of text the cell sent, for searching."""
        return repr(self.messages)


class Kernel:
    """A Python kernel started like a notebook's, with cells run one at a time."""

    def __init__(self, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.manager = KernelManager(kernel_name="python3")
        environment = dict(os.environ)
        environment.update(env or {})
        self.manager.start_kernel(env=environment, cwd=str(cwd or Path.cwd()))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        """The kernel process's id."""
        provisioner: Any = self.manager.provisioner
        return int(provisioner.process.pid)

    def start(self, code: str, *, allow_stdin: bool = False) -> str:
        """Send a cell for execution and return its message id."""
        return str(self.client.execute(code, allow_stdin=allow_stdin, stop_on_error=False))

    def collect(self, msg_id: str, timeout: float = 120.0) -> Reply:
        """Gather a cell's outputs until the kernel is idle again, then its reply."""
        reply = Reply(status="")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the cell did not finish within {timeout} s")
            try:
                message = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            self._record(reply, message)
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        reply.content = self.wait_reply(msg_id, timeout)["content"]
        reply.status = reply.content["status"]
        return reply

    def wait_for_output(self, msg_id: str, needle: str, timeout: float = 60.0) -> str:
        """Read a running cell's outputs until one contains ``needle``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.client.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            text = str(message["content"].get("text", ""))
            if needle in text:
                return text
        raise TimeoutError(f"no output with {needle!r} within {timeout} s")

    def wait_reply(self, msg_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Return the cell's execute_reply from the shell channel."""
        deadline = time.monotonic() + timeout
        while True:
            message: dict[str, Any] = self.client.get_shell_msg(
                timeout=max(deadline - time.monotonic(), 0.01)
            )
            if message["parent_header"].get("msg_id") == msg_id:
                return message

    @staticmethod
    def _record(reply: Reply, message: dict[str, Any]) -> None:
        kind = message["msg_type"]
        content = message["content"]
        if kind in ("status", "execute_input"):
            return
        reply.messages.append({"msg_type": kind, "content": content})
        if kind == "stream":
            if content["name"] == "stdout":
                reply.stdout += content["text"]
            else:
                reply.stderr += content["text"]
        elif kind == "execute_result":
            reply.result = content["data"]
        elif kind == "display_data":
            reply.displays.append(content["data"])
        elif kind == "error":
            reply.error = content

    def run(self, code: str, timeout: float = 120.0) -> Reply:
        """Run a cell and return what it did."""
        return self.collect(self.start(code), timeout)

    def ok(self, code: str, timeout: float = 120.0) -> Reply:
        """Run a cell that must succeed."""
        reply = self.run(code, timeout)
        assert reply.status == "ok", reply.error_text or reply.stderr
        return reply

    def close(self) -> None:
        """Shut the kernel down."""
        self.client.stop_channels()
        if self.manager.is_alive():
            self.manager.shutdown_kernel(now=False)


async def _count(session: AsyncSession, table: str) -> int:
    result = await session.execute(f"SELECT count(*) FROM {KEYSPACE}.{table}", timeout=120)
    row = result.one()
    assert row is not None
    return int(row[0])


async def _load_million(session: AsyncSession) -> None:
    """Load 1,000 partitions of 1,000 rows with unlogged batches, many at a time."""
    insert = await session.prepare(f"INSERT INTO {KEYSPACE}.million (p, c, v) VALUES (?, ?, ?)")
    batches = [
        [(insert, (p, c, p * 1000 + c)) for c in range(start, start + 250)]
        for p in range(MILLION_PARTITIONS)
        for start in range(0, 1000, 250)
    ]
    limit = asyncio.Semaphore(32)

    async def send(batch: list[Any]) -> None:
        from cassandra.query import BatchStatement, BatchType

        statement = BatchStatement(batch_type=BatchType.UNLOGGED)
        for prepared, values in batch:
            statement.add(prepared, values)
        async with limit:
            await session.execute(statement, timeout=60)

    await asyncio.gather(*(send(batch) for batch in batches))


async def _prepare_tables(node: ClusterInfo) -> None:
    async with (
        AsyncCluster(node.contact_points, node.port) as cluster,
        cluster.connect() as session,
    ):
        for statement in SCHEMA:
            await session.execute(statement, timeout=60)
        insert = await session.prepare(
            f"INSERT INTO {KEYSPACE}.flights (carrier, month, id, dest, delay) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        for row in FLIGHTS:
            await session.execute(insert, row)
        if await _count(session, "million") != MILLION:
            started = time.perf_counter()
            await _load_million(session)
            print(f"loaded {MILLION:,} rows in {time.perf_counter() - started:.1f} s")


@pytest.fixture(scope="session")
def tables(node: ClusterInfo) -> ClusterInfo:
    """The magics' keyspace with its flights table and million-row table in place."""
    asyncio.run(_prepare_tables(node))
    return node


@pytest.fixture(scope="module")
def kernel(tables: ClusterInfo) -> Iterator[Kernel]:
    """A kernel with the extension loaded and connected to the plain node's keyspace."""
    started = Kernel()
    try:
        started.ok(f"%load_ext {EXTENSION}")
        started.ok(f"%cql_connect {tables.contact_points[0]} --keyspace {KEYSPACE}")
        yield started
    finally:
        started.close()


@pytest.fixture
def fresh_kernel(tables: ClusterInfo) -> Iterator[Kernel]:
    """A kernel of its own, for tests that shut it down or count its resources."""
    started = Kernel()
    try:
        yield started
    finally:
        started.close()
