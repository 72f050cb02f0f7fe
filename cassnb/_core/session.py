"""AsyncSession: run CQL on a connected cluster from any asyncio loop."""

from __future__ import annotations

import copy
import struct
import threading
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

from cassandra import ConsistencyLevel
from cassandra.query import (
    FETCH_SIZE_UNSET,
    BatchStatement,
    BatchType,
    BoundStatement,
    PreparedStatement,
    QueryTrace,
    SimpleStatement,
    Statement,
)

from cassnb._core import registry
from cassnb._core.bridge import InFlight, fetch, run_blocking, run_shutdown, start_daemon
from cassnb._core.errors import (
    CassandraError,
    ConfigurationError,
    ConnectionError,
    QueryError,
    is_driver_error,
    raised_by_us,
    translate,
)
from cassnb._core.results import AsyncResultSet
from cassnb._core.stream import MAX_FETCH_SIZE, AsyncStreamingResultSet, StreamConfig
from cassnb._driver import Page, Read, start_read

if TYPE_CHECKING:
    from cassnb._core.cluster import AsyncCluster

__all__ = ["AsyncSession"]

Query: TypeAlias = "str | PreparedStatement | Statement"
Parameters: TypeAlias = "Sequence[Any] | Mapping[str, Any] | None"
Consistency: TypeAlias = "int | str | None"
Payload: TypeAlias = "Mapping[str, bytes] | None"

#: How long close() waits for the driver before letting its shutdown finish on its own.
SHUTDOWN_WAIT = 0.5

# What the driver's serializers raise on a value of the wrong type or out of range (a
# number where text is expected fails on ``.encode``).
_BIND_ERRORS = (TypeError, ValueError, KeyError, AttributeError, OverflowError, struct.error)


def _consistency_level(consistency: Consistency) -> int | None:
    if consistency is None:
        return None
    if isinstance(consistency, str):
        level = ConsistencyLevel.name_to_value.get(consistency.upper())
        if level is None:
            names = ", ".join(ConsistencyLevel.name_to_value)
            raise ConfigurationError(f"unknown consistency {consistency!r}; use one of {names}")
        return int(level)
    if isinstance(consistency, int) and consistency in ConsistencyLevel.value_to_name:
        return consistency
    raise ConfigurationError(f"unknown consistency {consistency!r}")


def checked_timeout(timeout: float | None) -> float | None:
    """Return ``timeout`` as seconds, or raise ConfigurationError unless it is positive."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigurationError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


def _checked_payload(custom_payload: Payload) -> dict[str, bytes] | None:
    # The driver encodes the payload on its own thread, where a bad one fails as if the
    # node had: it is checked here instead. Values may be credentials: never shown.
    if custom_payload is None:
        return None
    if not isinstance(custom_payload, Mapping):
        raise ConfigurationError(
            f"custom_payload must be a mapping of str to bytes, not {type(custom_payload).__name__}"
        )
    for key, value in custom_payload.items():
        if not isinstance(key, str) or not isinstance(value, bytes):
            raise ConfigurationError(
                "custom_payload must map str to bytes; it has a "
                f"{type(key).__name__} key to a {type(value).__name__} value"
            )
    return dict(custom_payload)


def _has_parameters(parameters: Parameters) -> bool:
    if parameters is None:
        return False
    if not isinstance(parameters, (Sequence, Mapping)):
        raise ConfigurationError(
            f"parameters must be a sequence or a mapping, not {type(parameters).__name__}"
        )
    return len(parameters) > 0


def _refuse_inline_parameters(cql: str) -> QueryError:
    return QueryError(
        f"parameters need a prepared statement; prepare {cql!r} first: "
        "stmt = await session.prepare(cql), then await session.execute(stmt, parameters)"
    )


def _bind(prepared: PreparedStatement, parameters: Parameters) -> BoundStatement:
    try:
        return prepared.bind(parameters)
    except _BIND_ERRORS as exc:
        raise QueryError(f"could not bind parameters to {prepared.query_string!r}: {exc}") from exc


def _statement(
    query: Query,
    parameters: Parameters,
    *,
    consistency: Consistency,
    fetch_size: int | None = None,
    own_fetch_size_wins: bool = False,
) -> Statement:
    """Build the statement to send, leaving the caller's own objects untouched."""
    level = _consistency_level(consistency)
    if isinstance(query, str):
        if _has_parameters(parameters):
            raise _refuse_inline_parameters(query)
        statement: Statement = SimpleStatement(query)
    elif isinstance(query, PreparedStatement):
        statement = _bind(query, parameters)
    elif isinstance(query, Statement):
        if _has_parameters(parameters):
            if isinstance(query, SimpleStatement):
                raise _refuse_inline_parameters(query.query_string)
            raise QueryError(
                f"a {type(query).__name__} carries its own values; pass parameters only "
                "with a prepared statement"
            )
        statement = query
        if level is not None or fetch_size is not None:
            statement = copy.copy(query)
    else:
        raise ConfigurationError(
            "query must be a CQL string, a prepared statement or a driver Statement, "
            f"not {type(query).__name__}"
        )
    if level is not None:
        statement.consistency_level = level
    if fetch_size is not None and not (
        own_fetch_size_wins and statement.fetch_size is not FETCH_SIZE_UNSET
    ):
        statement.fetch_size = fetch_size
    return statement


def _translated(exc: Exception) -> Exception:
    if isinstance(exc, CassandraError) or not is_driver_error(exc):
        return exc
    return translate(exc)


def _result(
    page: Page, trace: QueryTrace | None = None, trace_error: Exception | None = None
) -> AsyncResultSet:
    return AsyncResultSet(
        page.rows,
        column_names=page.column_names,
        column_types=page.column_types,
        paging_state=page.paging_state,
        warnings=page.warnings,
        trace_id=page.trace_id,
        trace=trace,
        trace_error=trace_error,
    )


class AsyncSession:
    """A connection to a cluster, bound to a keyspace or not: run CQL through it.

    Get one with ``await cluster.connect(keyspace)`` (or ``async with``). Every method is a
    coroutine and none blocks the running loop. Use after ``close()`` raises
    ``ConnectionError``.
    """

    def __init__(
        self, driver_session: Any, *, cluster: AsyncCluster | None = None, fast_path: bool = False
    ) -> None:
        self._session = driver_session
        self._cluster = cluster
        #: Requests go through the driver layer's fast path (the cluster's choice).
        self._fast = fast_path
        self._closed = False
        self._lock = threading.Lock()
        self._streams: weakref.WeakSet[AsyncStreamingResultSet] = weakref.WeakSet()
        self._in_flight = InFlight()
        registry.track_session(self)

    @property
    def keyspace(self) -> str | None:
        """The session's current keyspace, or None."""
        keyspace: str | None = self._session.keyspace
        return keyspace

    @property
    def protocol_version(self) -> int:
        """The CQL native protocol version negotiated with the cluster."""
        return int(self._session.cluster.protocol_version)

    @property
    def metadata(self) -> Any:
        """The driver's ``cassandra.metadata.Metadata``: schema, token ring and replicas."""
        return self._session.cluster.metadata

    @property
    def cluster(self) -> AsyncCluster | None:
        """The AsyncCluster this session was opened from."""
        return self._cluster

    @property
    def is_closed(self) -> bool:
        """Whether ``close()`` was called (or the cluster shut down)."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionError(
                "the session is closed: open a new one with 'await cluster.connect()'"
            )

    async def execute(
        self,
        query: Query,
        parameters: Parameters = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the driver's per-request timeout)
        consistency: Consistency = None,
        trace: bool = False,
        custom_payload: Payload = None,
    ) -> AsyncResultSet:
        """Run a statement and return every row of its result.

        ``query`` is a CQL string, a prepared statement (``parameters`` bind its markers)
        or any driver Statement, whose own settings are honoured. ``timeout`` bounds each
        request to the server (the driver's default when None; with the fast path off, the
        first page's request only). Cancelling the awaiting task stops at once: no further
        page is requested, though the server may still finish the page it was computing.

        With ``trace``, the server traces the request, and the trace is fetched before
        this returns (waiting up to 2 s for the server to write it):
        ``result.get_query_trace()``. ``custom_payload`` (str to bytes) goes to the
        server with every page's request.
        """
        self._check_open()
        statement = _statement(query, parameters, consistency=consistency)
        return await self._fetch(
            statement,
            all_pages=True,
            timeout=timeout,
            trace=trace,
            custom_payload=custom_payload,
        )

    async def execute_page(
        self,
        query: Query,
        parameters: Parameters = None,
        *,
        fetch_size: int,
        paging_state: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the driver's per-request timeout)
        consistency: Consistency = None,
        trace: bool = False,
        custom_payload: Payload = None,
    ) -> AsyncResultSet:
        """Return one page of at most ``fetch_size`` rows, starting at ``paging_state``.

        The result's ``paging_state`` resumes right after this page; it is None on the
        last page. ``trace`` and ``custom_payload`` work as for :meth:`execute`.
        """
        self._check_open()
        if (
            isinstance(fetch_size, bool)
            or not isinstance(fetch_size, int)
            or not 1 <= fetch_size <= MAX_FETCH_SIZE
        ):
            raise ConfigurationError(
                f"fetch_size must be a positive int up to {MAX_FETCH_SIZE}, not {fetch_size!r}"
            )
        statement = _statement(query, parameters, consistency=consistency, fetch_size=fetch_size)
        return await self._fetch(
            statement,
            all_pages=False,
            timeout=timeout,
            paging_state=paging_state,
            trace=trace,
            custom_payload=custom_payload,
        )

    async def _fetch(
        self,
        statement: Statement,
        *,
        all_pages: bool,
        timeout: float | None,  # noqa: ASYNC109 (the driver's per-request timeout)
        paging_state: bytes | None = None,
        trace: bool = False,
        custom_payload: Payload = None,
    ) -> AsyncResultSet:
        """Send ``statement`` and return its first page, or all its pages."""
        read = self._start_read(
            statement,
            raw=False,
            timeout=timeout,
            paging_state=paging_state,
            trace=trace,
            custom_payload=custom_payload,
        )
        try:
            page = await fetch(read, all_pages=all_pages, in_flight=self._in_flight)
        except Exception as exc:
            raise _translated(exc) from exc
        if page.trace_id is None:
            return _result(page)
        # Fetched now, so that reading it later neither blocks nor needs an await; a
        # trace the server has not written in time does not lose the rows.
        try:
            (query_trace,) = await self.query_traces([page.trace_id])
        except Exception as exc:
            return _result(page, trace_error=exc)
        return _result(page, trace=query_trace)

    def _start_read(
        self,
        statement: Statement,
        *,
        raw: bool,
        timeout: float | None,
        paging_state: bytes | None = None,
        trace: bool,
        custom_payload: Payload,
    ) -> Read:
        """Check a request's options and send it; a driver error comes back as ours."""
        seconds = checked_timeout(timeout)
        payload = _checked_payload(custom_payload)
        try:
            return start_read(
                self._session,
                statement,
                fast=self._fast,
                raw=raw,
                timeout=seconds,
                paging_state=paging_state,
                trace=trace,
                custom_payload=payload,
            )
        except Exception as exc:
            raise _translated(exc) from exc

    async def execute_stream(
        self,
        query: Query,
        parameters: Parameters = None,
        *,
        stream_config: StreamConfig | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the driver's per-request timeout)
        consistency: Consistency = None,
        trace: bool = False,
        custom_payload: Payload = None,
    ) -> AsyncStreamingResultSet:
        """Start a query and return a stream of its rows, fetched page by page.

        The first page is requested at once; an error in it is raised when iteration
        starts. Pages hold ``stream_config.fetch_size`` rows unless the statement sets its
        own. ``timeout`` bounds each page's request (with the fast path off, the first
        page's only); ``stream_config.timeout_seconds`` the whole stream. With ``trace``,
        the server traces each page's request: ``stream.trace_id`` and
        ``await stream.get_all_query_traces()``. ``custom_payload`` (str to bytes) goes to
        the server with every page's request.
        """
        self._check_open()
        config = stream_config if stream_config is not None else StreamConfig()
        if not isinstance(config, StreamConfig):
            raise ConfigurationError(
                f"stream_config must be a StreamConfig, not {type(config).__name__}"
            )
        statement = _statement(
            query,
            parameters,
            consistency=consistency,
            fetch_size=config.fetch_size,
            own_fetch_size_wins=True,
        )
        # Pages stay raw until read, so that frames can decode them column by column.
        read = self._start_read(
            statement, raw=True, timeout=timeout, trace=trace, custom_payload=custom_payload
        )
        stream = AsyncStreamingResultSet(read, config=config, session=self)
        with self._lock:
            self._streams.add(stream)
        return stream

    async def prepare(self, cql: str) -> PreparedStatement:
        """Prepare a statement on the cluster; pass the result to ``execute``."""
        self._check_open()
        if not isinstance(cql, str):
            raise ConfigurationError(f"prepare() takes a CQL string, not {type(cql).__name__}")
        try:
            return await run_blocking(self._prepare_blocking, cql)
        except Exception as exc:
            raise _translated(exc) from exc

    async def query_traces(
        self, trace_ids: Iterable[UUID], *, max_wait_per: float = 2.0
    ) -> list[QueryTrace]:
        """Fetch the traces with these ids from the cluster's trace tables, in order.

        The server writes a trace after it answers: each is waited for at most
        ``max_wait_per`` seconds, then ``cassandra.query.TraceUnavailable`` is raised.
        """
        self._check_open()
        ids = list(trace_ids)
        try:
            return await run_blocking(self._query_traces_blocking, ids, max_wait_per)
        except Exception as exc:
            raise _translated(exc) from exc

    def _query_traces_blocking(self, trace_ids: list[UUID], max_wait: float) -> list[QueryTrace]:
        traces = []
        for trace_id in trace_ids:
            trace = QueryTrace(trace_id, self._session)
            # As the driver polls for a future's traces.
            trace.populate(max_wait=max_wait, query_cl=ConsistencyLevel.LOCAL_ONE)
            traces.append(trace)
        return traces

    def _prepare_blocking(self, cql: str) -> PreparedStatement:
        with raised_by_us():
            return self._session.prepare(cql)

    async def execute_batch(
        self,
        batch: BatchStatement | Iterable[tuple[Query, Parameters]],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the driver's per-request timeout)
        consistency: Consistency = None,
    ) -> AsyncResultSet:
        """Run a batch: a driver BatchStatement, or (statement, parameters) pairs.

        Pairs are sent as one logged batch; CQL strings in them take no parameters.
        """
        self._check_open()
        if not isinstance(batch, BatchStatement):
            batch = self._logged_batch(batch)
        return await self.execute(batch, timeout=timeout, consistency=consistency)

    @staticmethod
    def _logged_batch(pairs: Iterable[tuple[Query, Parameters]]) -> BatchStatement:
        statement = BatchStatement(batch_type=BatchType.LOGGED)
        for pair in pairs:
            try:
                query, parameters = pair
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"a batch is a list of (statement, parameters) pairs, not {pair!r}"
                ) from None
            if isinstance(query, str):
                if _has_parameters(parameters):
                    raise _refuse_inline_parameters(query)
                statement.add(SimpleStatement(query))
            elif isinstance(query, PreparedStatement):
                statement.add(_bind(query, parameters))
            elif isinstance(query, Statement) and not isinstance(query, BatchStatement):
                if _has_parameters(parameters):
                    raise QueryError(
                        "only prepared statements take parameters in a batch; "
                        f"got parameters with a {type(query).__name__}"
                    )
                statement.add(query)
            else:
                raise ConfigurationError(f"cannot put a {type(query).__name__} in a batch")
        return statement

    async def set_keyspace(self, keyspace: str) -> None:
        """Make ``keyspace`` the session's current keyspace."""
        self._check_open()
        try:
            await run_blocking(self._session.set_keyspace, keyspace)
        except Exception as exc:
            raise _translated(exc) from exc

    def _mark_closed(self) -> bool:
        """Close the session's streams and mark it closed; return whether it was open."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            streams = list(self._streams)
        for stream in streams:
            stream._close_now("session closed")
        self._in_flight.fail_all(ConnectionError("the session was closed during the request"))
        registry.forget_session(self)
        return True

    def _close_blocking(self) -> bool:
        if not self._mark_closed():
            return False
        self._session.shutdown()
        return True

    async def close(self) -> None:
        """Close the session's streams and connections; closing twice is harmless."""
        if self._mark_closed():
            await run_shutdown(self._session.shutdown, wait=SHUTDOWN_WAIT)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncSession keyspace={self.keyspace!r} {state}>"

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or not self._mark_closed():
            return
        # The connections close on a helper thread: this may run on the loop's thread.
        start_daemon(self._session.shutdown)
        warnings.warn(
            f"unclosed {self!r}; use 'async with' or 'await session.close()'",
            ResourceWarning,
            stacklevel=1,
            source=self,
        )
