"""Cassandra tables as dask DataFrames: one partition per token range, read where computed.

``to_dask`` plans on the client (the ring, the partition key, the dtypes) and builds a
graph of small, picklable partition readers. Each reader runs on the worker that computes
its partition, through one cluster and session per worker process, created on first use
and closed at interpreter exit. The session lives on a private event loop in its own
thread, so a reader is an ordinary blocking function to dask and works the same under the
threaded, synchronous and distributed schedulers, and from a notebook whose loop is busy.

Credentials travel as environment variable names only; each process reads the values
from its own environment, so no secret is ever in the graph.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import dask
import dask.dataframe as dd
import pandas as pd
from cassandra.query import PreparedStatement

from cassnb._core.cluster import AsyncCluster
from cassnb._core.errors import ConfigurationError
from cassnb._core.session import AsyncSession
from cassnb._frames.read import check_backend
from cassnb._frames.types import DtypeBackend
from cassnb._frames.write import table_parts
from cassnb._scan.ranges import (
    TokenRange,
    check_columns,
    empty_frame,
    plan_scan,
    read_ranges,
    result_schema,
    select_cql,
)

__all__ = ["to_dask"]

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """Where to connect and how: everything but secrets, which stay in the environment."""

    contact_points: tuple[str, ...]
    port: int
    local_dc: str | None = None
    username_env: str | None = None
    password_env: str | None = None

    def __post_init__(self) -> None:
        if (self.username_env is None) != (self.password_env is None):
            raise ConfigurationError("give both username_env and password_env, or neither")

    def _secret(self, name: str) -> str:
        value = os.environ.get(name)
        if value is None:
            raise ConfigurationError(
                f"the environment variable {name} is not set in process {os.getpid()}; "
                "to_dask reads the Cassandra credentials from it on the client and on every "
                "worker"
            )
        return value

    def cluster(self) -> AsyncCluster:
        """Return a cluster for these settings, logging in from the environment if asked."""
        if self.username_env is None or self.password_env is None:
            return AsyncCluster(list(self.contact_points), self.port, local_dc=self.local_dc)
        return AsyncCluster.create_with_auth(
            list(self.contact_points),
            username=self._secret(self.username_env),
            password=self._secret(self.password_env),
            port=self.port,
            local_dc=self.local_dc,
        )


class Connection:
    """One cluster and session on a private event loop thread, shared by a whole process."""

    def __init__(self, source: Source) -> None:
        self.pid = os.getpid()
        self.partitions_read = 0
        self._prepared: dict[str, PreparedStatement] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="cassnb-dask", daemon=True
        )
        self._thread.start()
        self._cluster: AsyncCluster | None = None
        try:
            self._cluster = source.cluster()
            self.session: AsyncSession = self.run(self._connect(self._cluster))
        except BaseException:
            self.close()
            raise

    @staticmethod
    async def _connect(cluster: AsyncCluster) -> AsyncSession:
        return await cluster.connect()

    @property
    def is_usable(self) -> bool:
        """Whether this process made it and its session is still open."""
        return self.pid == os.getpid() and not self.session.is_closed

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the private loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            # An interrupt in the waiting thread stops the work on the loop too.
            future.cancel()
            raise

    async def prepare(self, cql: str) -> PreparedStatement:
        """Prepare ``cql`` once per process."""
        prepared = self._prepared.get(cql)
        if prepared is None:
            prepared = self._prepared[cql] = await self.session.prepare(cql)
        return prepared

    def close(self) -> None:
        """Shut the cluster down and stop the loop thread."""
        try:
            if self._cluster is not None and self._loop.is_running():
                self.run(self._cluster.shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()


_connections: dict[Source, Connection] = {}
_connections_lock = threading.Lock()
_exit_hook_installed = False


def connection(source: Source) -> Connection:
    """Return this process's connection for ``source``, connecting on first use."""
    global _exit_hook_installed
    with _connections_lock:
        current = _connections.get(source)
        if current is not None and current.is_usable:
            return current
        if not _exit_hook_installed:
            atexit.register(close_connections)
            _exit_hook_installed = True
        # Connecting under the lock: threads of one worker wait for one session, not race.
        current = _connections[source] = Connection(source)
        return current


def close_connections() -> None:
    """Close every connection this process opened for dask partitions."""
    with _connections_lock:
        mine = [c for c in _connections.values() if c.pid == os.getpid()]
        _connections.clear()
    for current in mine:
        current.close()


def partitions_read() -> int:
    """Return how many partitions this process has read through its open connections."""
    with _connections_lock:
        return sum(c.partitions_read for c in _connections.values() if c.pid == os.getpid())


def prepared_queries() -> list[str]:
    """Return the CQL this process has prepared for partitions, for diagnostics."""
    with _connections_lock:
        return [cql for c in _connections.values() for cql in c._prepared]


@dataclass(frozen=True)
class PartitionReader:
    """Reads one token range of a table into a DataFrame; what the dask graph holds."""

    source: Source
    keyspace: str
    table: str
    key_columns: tuple[str, ...]
    columns: tuple[str, ...] | None
    where: str | None
    dtype_backend: DtypeBackend
    fetch_size: int

    def __call__(
        self, token_range: tuple[int, int], columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Read the rows of ``token_range`` (start excluded, end included)."""
        current = connection(self.source)
        frame = current.run(self._read(current, TokenRange(*token_range), columns))
        current.partitions_read += 1
        return frame

    async def _read(
        self, current: Connection, token_range: TokenRange, columns: Sequence[str] | None
    ) -> pd.DataFrame:
        # dask passes the columns a computation needs; none at all (a row count) still
        # needs rows, so read the partition key and keep no column.
        wanted = self.columns if columns is None else tuple(columns)
        selected = wanted if wanted != () else self.key_columns
        cql = select_cql(self.keyspace, self.table, self.key_columns, selected, self.where)
        prepared = await current.prepare(cql)
        schema = result_schema(prepared, self.dtype_backend)
        frame = await read_ranges(
            current.session,
            prepared,
            [token_range],
            schema,
            concurrency=1,
            fetch_size=self.fetch_size,
        )
        return frame.iloc[:, :0] if wanted == () else frame


def _contact_points(contact_points: Sequence[str] | str) -> tuple[str, ...]:
    points = [contact_points] if isinstance(contact_points, str) else list(contact_points)
    names = [p.strip() for point in points for p in str(point).split(",") if p.strip()]
    if not names:
        raise ConfigurationError("contact_points names no host")
    return tuple(names)


def to_dask(
    table: str,
    contact_points: Sequence[str] | str,
    *,
    keyspace: str,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    splits: int | None = None,
    port: int = 9042,
    username_env: str | None = None,
    password_env: str | None = None,
    local_dc: str | None = None,
    fetch_size: int = 5000,
    dtype_backend: DtypeBackend = "numpy_nullable",
) -> dd.DataFrame:
    """Return a table as a dask DataFrame with one partition per token range.

    The ring is cut as ``read_table`` cuts it (``splits``, ``where`` and ``columns`` mean
    the same), and every partition has the columns and dtypes of ``read_cql``; uuid,
    blob, collection and other object columns stay Python objects (dask's conversion of
    object columns to strings is off for this collection). Each partition is read by the
    worker that computes it, from a replica of its range, through one session per worker
    process; dask's column projection reaches the SELECT. Partitions have their own
    0-based index and no known divisions.

    ``username_env`` and ``password_env`` name environment variables that hold the
    credentials on the client and on every worker; the values never enter the graph.
    """
    backend = check_backend(dtype_backend)
    wanted = check_columns(columns)
    if len(table_parts(table)) != 1 or len(table_parts(keyspace)) != 1:
        raise ConfigurationError("give the table and the keyspace as separate names")
    [table_name] = table_parts(table)
    [keyspace_name] = table_parts(keyspace)
    if isinstance(fetch_size, bool) or not isinstance(fetch_size, int) or fetch_size < 1:
        raise ConfigurationError(f"fetch_size must be a positive int, not {fetch_size!r}")
    source = Source(_contact_points(contact_points), port, local_dc, username_env, password_env)
    client = connection(source)
    scan = client.run(
        plan_scan(
            client.session,
            keyspace_name,
            table_name,
            columns=wanted,
            where=where,
            splits=splits,
            dtype_backend=backend,
        )
    )
    reader = PartitionReader(
        source=source,
        keyspace=keyspace_name,
        table=table_name,
        key_columns=scan.key_columns,
        columns=None if wanted is None else tuple(wanted),
        where=where,
        dtype_backend=backend,
        fetch_size=fetch_size,
    )
    with dask.config.set({"dataframe.convert-string": False}):
        # dask does not annotate from_map.
        frame: dd.DataFrame = dd.from_map(  # type: ignore[no-untyped-call]
            reader,
            [(r.start, r.end) for r in scan.ranges],
            meta=empty_frame(scan.schema),
            label=f"cassandra-{table_name}",
        )
    return frame
