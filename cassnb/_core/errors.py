"""Exceptions raised by cassnb, and the one table that maps the driver's onto them.

The hierarchy::

    CassandraError                  base of everything cassnb raises
    ├── ConnectionError             no node reachable, node down, network trouble,
    │   │                           a closed session, cluster or stream
    │   └── AuthenticationError     bad credentials
    ├── QueryError                  syntax, unknown table or keyspace, invalid request,
    │   │                           unauthorized, wrong bind types, not enough replicas
    │   └── QueryTimeout            server read/write timeout, client request timeout
    └── ConfigurationError          bad arguments given to cassnb

None of them subclasses a builtin other than ``Exception``: ``cassnb.ConnectionError`` is
not the builtin ``ConnectionError``. The driver's exception, when there is one, is the
``__cause__``.

The driver reports a request that failed on every host it tried as ``NoHostAvailable``
holding one error per host. When every host failed for the same server-side reason
(bad credentials, not enough replicas, an invalid request, a timeout) that reason's class
is raised with the server's message; ``ConnectionError`` is kept for real connection
failures.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator, Mapping

import cassandra
from cassandra import cluster as _driver_cluster
from cassandra import connection as _driver_connection
from cassandra import pool as _driver_pool
from cassandra import protocol as _driver_protocol

from cassnb._driver import PageDecodeError

__all__ = [
    "AuthenticationError",
    "CassandraError",
    "ConfigurationError",
    "ConnectionError",
    "QueryError",
    "QueryTimeout",
]


class CassandraError(Exception):
    """Base class of every error cassnb raises."""


class ConnectionError(CassandraError):
    """No node could be reached or used: network, node down, closed session."""


class AuthenticationError(ConnectionError):
    """The server refused the credentials."""


class QueryError(CassandraError):
    """The server, or the driver before sending, refused or failed a request."""


class QueryTimeout(QueryError):
    """A request did not complete in time, on the server or on the client."""


class ConfigurationError(CassandraError):
    """An argument given to cassnb is invalid."""


# Looked up along the exception's MRO, so the most specific entry wins.
_DRIVER_TO_CASSNB: Mapping[type[BaseException], type[CassandraError]] = {
    cassandra.AuthenticationFailed: AuthenticationError,
    _driver_protocol.BadCredentials: AuthenticationError,
    cassandra.OperationTimedOut: QueryTimeout,
    cassandra.Timeout: QueryTimeout,
    cassandra.Unavailable: QueryError,
    cassandra.CoordinationFailure: QueryError,
    cassandra.FunctionFailure: QueryError,
    cassandra.CDCWriteFailure: QueryError,
    cassandra.RequestValidationException: QueryError,
    cassandra.UnsupportedOperation: QueryError,
    _driver_protocol.RequestValidationException: QueryError,
    _driver_protocol.TruncateError: QueryError,
    _driver_protocol.CDCWriteException: QueryError,
    _driver_protocol.ServerError: QueryError,
    # A busy or starting node recovers by itself: retrying is the right reaction.
    _driver_protocol.OverloadedErrorMessage: ConnectionError,
    _driver_protocol.IsBootstrappingErrorMessage: ConnectionError,
    _driver_protocol.ProtocolException: ConnectionError,
    _driver_connection.ConnectionException: ConnectionError,
    _driver_connection.ProtocolError: ConnectionError,
    _driver_pool.NoConnectionsAvailable: ConnectionError,
    cassandra.UnresolvableContactPoints: ConnectionError,
    socket.gaierror: ConnectionError,
    OSError: ConnectionError,
    cassandra.DriverException: CassandraError,
    # A result page whose bytes the fast path's reader cannot decode.
    PageDecodeError: CassandraError,
}

_SERVER_SIDE = (AuthenticationError, QueryError)


def _lookup(exc: BaseException) -> type[CassandraError] | None:
    for klass in type(exc).__mro__:
        ours = _DRIVER_TO_CASSNB.get(klass)
        if ours is not None:
            return ours
    return None


def is_driver_error(exc: BaseException) -> bool:
    """Tell whether ``exc`` is one the mapping table knows."""
    return isinstance(exc, _driver_cluster.NoHostAvailable) or _lookup(exc) is not None


def _message(exc: BaseException) -> str:
    if isinstance(exc, _driver_protocol.ErrorMessage):
        # Its str() wraps the server's message in angle brackets.
        return exc.summary_msg()  # type: ignore[no-any-return]
    if isinstance(exc, cassandra.OperationTimedOut):
        return f"client-side timeout: {_describe_hosts(_host_errors(exc)) or exc}"
    text = str(exc)
    return text if text else type(exc).__name__


def _describe_hosts(errors: Mapping[object, BaseException]) -> str:
    return "; ".join(f"{host}: {_message(error)}" for host, error in errors.items())


def _host_errors(exc: BaseException) -> Mapping[object, BaseException]:
    errors = getattr(exc, "errors", None)
    # Most driver paths give {host: exception}; a few give a bare list of hosts.
    return errors if isinstance(errors, Mapping) else {}


def translate(exc: BaseException, *, context: str | None = None) -> CassandraError:
    """Return the cassnb error for a driver exception, its cause set to it."""
    if isinstance(exc, CassandraError):
        return exc
    prefix = f"{context}: " if context else ""
    if isinstance(exc, _driver_cluster.NoHostAvailable):
        errors = _host_errors(exc)
        kinds = {_lookup(error) for error in errors.values()}
        if len(kinds) == 1:
            (kind,) = kinds
            if kind is not None and issubclass(kind, _SERVER_SIDE):
                first = next(iter(errors.values()))
                ours: CassandraError = kind(prefix + _message(first))
                ours.__cause__ = exc
                return ours
        detail = _describe_hosts(errors) if errors else "no node is up"
        ours = ConnectionError(f"{prefix}no node could serve the request ({detail})")
        ours.__cause__ = exc
        return ours
    ours = (_lookup(exc) or CassandraError)(prefix + _message(exc))
    ours.__cause__ = exc
    return ours


@contextlib.contextmanager
def driver_errors(context: str | None = None) -> Iterator[None]:
    """Raise the cassnb error for any driver exception raised inside the block."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, CassandraError) or not is_driver_error(exc):
            raise
        raise translate(exc, context=context) from exc


_reporting = threading.local()

# What the driver logs, in the calling thread, about a failure cassnb raises anyway.
_DUPLICATED_BY_OUR_ERRORS = (
    "[control connection] Error connecting to",
    "Control connection failed to connect",
    "Downgrading core protocol version",
    "Error preparing query",
)
_SERVER_WARNING = "Server warning: %s"


class _DriverLogPolicy(logging.Filter):
    """Keep the driver's log quiet about what cassnb already hands to the caller.

    A failure cassnb raises is demoted to DEBUG in the driver's log (only in the thread
    that raises it), and server warnings, which every result carries in ``.warnings``,
    to INFO. Nothing is dropped: a logger enabled for DEBUG still sees every record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = str(record.msg)
        if message == _SERVER_WARNING:
            level = logging.INFO
        elif getattr(_reporting, "active", False) and message.startswith(_DUPLICATED_BY_OUR_ERRORS):
            level = logging.DEBUG
        else:
            return True
        # Re-dispatch at the lower level, so that the logger's own level applies to it.
        record.levelno, record.levelname = level, logging.getLevelName(level)
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(level):
            logger.handle(record)
        return False


_POLICY = _DriverLogPolicy()
for _name in ("cassandra.cluster", "cassandra.protocol", "cassandra.connection", "cassandra.pool"):
    logging.getLogger(_name).addFilter(_POLICY)


@contextlib.contextmanager
def raised_by_us() -> Iterator[None]:
    """Demote the driver's log records of failures in this block: cassnb raises them."""
    previous = getattr(_reporting, "active", False)
    _reporting.active = True
    try:
        yield
    finally:
        _reporting.active = previous
