"""AsyncCluster: where to connect and how, with defaults that suit notebooks."""

from __future__ import annotations

import asyncio
import copy
import inspect
import threading
import warnings
import weakref
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any

from cassandra import DriverException
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ProtocolVersionUnsupported
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)

from cassnb._core import kernel, registry
from cassnb._core.bridge import run_blocking, run_shutdown, start_daemon
from cassnb._core.errors import ConfigurationError, ConnectionError, raised_by_us, translate
from cassnb._core.results import row_factory
from cassnb._core.session import SHUTDOWN_WAIT, AsyncSession, checked_timeout
from cassnb._driver import FastPath, connection_class, gate

__all__ = ["AsyncCluster"]

MIN_PROTOCOL_VERSION = 5

_DRIVER_OPTIONS = frozenset(inspect.signature(Cluster.__init__).parameters) - {
    "self",
    "contact_points",
    "port",
    "protocol_version",
}

# Retry a lost node every 2 s at most, so a restarted node is back within seconds; the
# driver's default backs off to 10 minutes.
_RECONNECT_BASE_DELAY = 0.5
_RECONNECT_MAX_DELAY = 2.0


def _protocol_too_old(version: int, where: str) -> ConnectionError:
    return ConnectionError(
        f"the server at {where} negotiated CQL protocol v{version}, but cassnb requires "
        f"protocol v{MIN_PROTOCOL_VERSION} or higher: upgrade the server to Cassandra 4.0 "
        "or newer"
    )


def _rejected_explicit_version(exc: BaseException) -> bool:
    errors = getattr(exc, "errors", None)
    if not isinstance(exc, NoHostAvailable) or not isinstance(errors, dict):
        return False
    for error in errors.values():
        if isinstance(error, ProtocolVersionUnsupported):
            return True
        if isinstance(error, DriverException) and "explicitly set client protocol_version" in str(
            error
        ):
            return True
    return False


def _shut_down_abandoned(driver_session: Any) -> None:
    driver_session.shutdown()


class _Connecting:
    """What ``connect()`` returns: await it for a session, or use it with ``async with``."""

    __slots__ = ("_cluster", "_keyspace", "_session", "_timeout")

    def __init__(self, cluster: AsyncCluster, keyspace: str | None, timeout: float | None) -> None:
        self._cluster = cluster
        self._keyspace = keyspace
        self._timeout = timeout
        self._session: AsyncSession | None = None

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._cluster._connect(self._keyspace, self._timeout).__await__()

    async def __aenter__(self) -> AsyncSession:
        self._session = await self._cluster._connect(self._keyspace, self._timeout)
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()


class AsyncCluster:
    """A Cassandra cluster to open sessions on; nothing connects until ``connect()``.

    ``contact_points`` are host names or addresses (default ``127.0.0.1``). Protocol v5 is
    used, and a server that offers less is refused at connect with ``ConnectionError``;
    asking for a version below 5 raises ``ConfigurationError`` here. Other keyword
    arguments go to the driver's ``Cluster`` (``ssl_context``, ``connect_timeout``,
    ``auth_provider``, ...). The default execution profile routes token-aware within the
    local datacenter (``local_dc``, or the contact points' one) and returns ``Row``
    objects; a lost node is retried every 2 seconds at most.

    ``fast_path`` (default on) lets cassnb go below the driver's public API where that is
    cheaper: pages parsed column by column, later pages asked for on the connection,
    responses read in large chunks (unless ``connection_class`` is given). It is on only
    for the driver versions it is tested with, and off when ``CASSNB_FAST_PATH=0``;
    :attr:`fast_path` tells, :attr:`fast_path_status` says why not.
    """

    def __init__(
        self,
        contact_points: Sequence[str] | str | None = None,
        port: int = 9042,
        *,
        protocol_version: int | None = None,
        local_dc: str | None = None,
        fast_path: bool = True,
        **driver_kwargs: Any,
    ) -> None:
        if protocol_version is not None:
            if isinstance(protocol_version, bool) or not isinstance(protocol_version, int):
                raise ConfigurationError(
                    f"protocol_version must be an int, not {protocol_version!r}"
                )
            if protocol_version < MIN_PROTOCOL_VERSION:
                raise ConfigurationError(
                    f"Protocol version {protocol_version} is not supported. cassnb requires "
                    f"CQL protocol v{MIN_PROTOCOL_VERSION} or higher; leave protocol_version "
                    "unset to negotiate it, and upgrade servers older than Cassandra 4.0"
                )
        if not isinstance(fast_path, bool):
            raise ConfigurationError(f"fast_path must be True or False, not {fast_path!r}")
        unknown = sorted(set(driver_kwargs) - _DRIVER_OPTIONS)
        if unknown:
            raise ConfigurationError(f"unknown option(s) for the cluster: {', '.join(unknown)}")
        if isinstance(contact_points, str):
            contact_points = [contact_points]
        self._contact_points = list(contact_points) if contact_points is not None else None
        self._port = port
        self._protocol_version = protocol_version
        self._local_dc = local_dc
        self._driver_kwargs = driver_kwargs
        self._fast_path = gate.fast_path(fast_path)
        self._cluster: Any = None
        self._closed = False
        self._lock = threading.Lock()
        self._sessions: weakref.WeakSet[AsyncSession] = weakref.WeakSet()
        registry.track_cluster(self)
        kernel.install()

    @classmethod
    def create_with_auth(
        cls,
        contact_points: Sequence[str] | str | None = None,
        *,
        username: str,
        password: str,
        **kwargs: Any,
    ) -> AsyncCluster:
        """Return a cluster that logs in with a user name and password."""
        if "auth_provider" in kwargs:
            raise ConfigurationError("give either username/password or auth_provider, not both")
        provider = PlainTextAuthProvider(username=username, password=password)
        return cls(contact_points, auth_provider=provider, **kwargs)

    @property
    def contact_points(self) -> list[str]:
        """The addresses the cluster is reached through."""
        return list(self._contact_points) if self._contact_points is not None else ["127.0.0.1"]

    @property
    def port(self) -> int:
        """The CQL port."""
        return self._port

    @property
    def protocol_version(self) -> int | None:
        """The negotiated protocol version once connected, else the one asked for."""
        if self._cluster is not None:
            return int(self._cluster.protocol_version)
        return self._protocol_version

    @property
    def fast_path(self) -> bool:
        """Whether this cluster's sessions go below the driver's public API where it pays."""
        return self._fast_path.enabled

    @property
    def fast_path_status(self) -> FastPath:
        """Whether the fast path is on, and why not when it is off (``str()`` says it)."""
        return self._fast_path

    @property
    def is_closed(self) -> bool:
        """Whether ``shutdown()`` was called."""
        return self._closed

    def connect(
        self,
        keyspace: str | None = None,
        *,
        timeout: float | None = None,
    ) -> _Connecting:
        """Open a session: ``await cluster.connect(ks)`` or ``async with cluster.connect(ks)``.

        ``timeout`` bounds the whole connect, keyspace included, in seconds: past it,
        ``ConnectionError``. Without it, the driver's own limits apply (``connect_timeout``,
        5 s by default, per connection attempt).
        """
        return _Connecting(self, keyspace, checked_timeout(timeout))

    def _where(self) -> str:
        return ", ".join(f"{point}:{self._port}" for point in self.contact_points)

    def _driver_cluster(self) -> Any:
        kwargs = dict(self._driver_kwargs)
        profiles = dict(kwargs.pop("execution_profiles", None) or {})
        default = profiles.get(EXEC_PROFILE_DEFAULT)
        balancing = kwargs.pop("load_balancing_policy", None)
        retry = kwargs.pop("default_retry_policy", None)
        if default is None:
            default = ExecutionProfile(
                load_balancing_policy=balancing
                or TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self._local_dc))
            )
        else:
            default = copy.copy(default)
        if retry is not None:
            default.retry_policy = retry
        default.row_factory = row_factory
        profiles[EXEC_PROFILE_DEFAULT] = default
        kwargs.setdefault(
            "reconnection_policy",
            ExponentialReconnectionPolicy(
                _RECONNECT_BASE_DELAY, _RECONNECT_MAX_DELAY, max_attempts=None
            ),
        )
        # Result pages reach the session in large reads, checked in place.
        segment_reading = connection_class(self._fast_path.enabled)
        if segment_reading is not None:
            kwargs.setdefault("connection_class", segment_reading)
        if self._contact_points is not None:
            kwargs["contact_points"] = self._contact_points
        if self._protocol_version is not None:
            kwargs["protocol_version"] = self._protocol_version
        cluster = Cluster(port=self._port, execution_profiles=profiles, **kwargs)
        if self._protocol_version is None:
            # Start at v5 without making it "explicit": the driver then still steps down
            # against an old server (which we refuse with a clear message after connect)
            # instead of failing on a handshake error.
            cluster.protocol_version = MIN_PROTOCOL_VERSION
        return cluster

    def _connect_blocking(self, keyspace: str | None) -> Any:
        """Open a driver session (on a worker thread) and return it."""
        with self._lock:
            if self._closed:
                raise ConnectionError("the cluster is shut down: create a new AsyncCluster")
            try:
                if self._cluster is None:
                    self._cluster = self._driver_cluster()
            except Exception as exc:
                context = f"could not set up the cluster {self._where()}"
                raise translate(exc, context=context) from exc
            cluster = self._cluster
        try:
            with raised_by_us():
                # The keyspace is set afterwards: a driver session created with an unknown
                # keyspace marks the hosts down instead of reporting the keyspace.
                driver_session = cluster.connect()
        except Exception as exc:
            negotiated = int(cluster.protocol_version)
            if cluster.is_shutdown:
                with self._lock:
                    if self._cluster is cluster:
                        self._cluster = None
            if _rejected_explicit_version(exc):
                raise ConnectionError(
                    f"the server at {self._where()} rejected CQL protocol "
                    f"v{self._protocol_version}; cassnb requires protocol "
                    f"v{MIN_PROTOCOL_VERSION} or higher: upgrade the server to Cassandra 4.0 "
                    "or newer"
                ) from exc
            if negotiated < MIN_PROTOCOL_VERSION:
                self._discard(cluster)
                raise _protocol_too_old(negotiated, self._where()) from exc
            raise translate(exc, context=f"could not connect to {self._where()}") from exc
        negotiated = int(cluster.protocol_version)
        if negotiated < MIN_PROTOCOL_VERSION:
            driver_session.shutdown()
            self._discard(cluster)
            raise _protocol_too_old(negotiated, self._where())
        if keyspace is not None:
            try:
                driver_session.set_keyspace(keyspace)
            except Exception as exc:
                driver_session.shutdown()
                raise translate(exc, context=f"could not use keyspace {keyspace!r}") from exc
        return driver_session

    def _discard(self, cluster: Any) -> None:
        with self._lock:
            if self._cluster is cluster:
                self._cluster = None
        cluster.shutdown()

    async def _connect(self, keyspace: str | None, seconds: float | None) -> AsyncSession:
        if self._closed:
            raise ConnectionError("the cluster is shut down: create a new AsyncCluster")
        bound = asyncio.timeout(seconds)
        try:
            async with bound:
                # Given up on, the driver's connect runs on until its own limits; a session
                # it still opens then is shut down (on_abandon).
                driver_session = await run_blocking(
                    self._connect_blocking, keyspace, on_abandon=_shut_down_abandoned
                )
        except TimeoutError as exc:
            if not bound.expired():
                raise
            raise ConnectionError(
                f"could not connect to {self._where()} within {seconds:g} s"
            ) from exc
        # Made here rather than on the worker thread: the driver keeps some exceptions
        # whose tracebacks hold that thread's frames, which would keep the session alive.
        session = AsyncSession(driver_session, cluster=self, fast_path=self._fast_path.enabled)
        with self._lock:
            if not self._closed:
                self._sessions.add(session)
                return session
        session._mark_closed()
        await run_blocking(driver_session.shutdown)
        raise ConnectionError("the cluster was shut down while connecting")

    def _mark_closed(self) -> tuple[bool, Any]:
        with self._lock:
            if self._closed:
                return False, None
            self._closed = True
            cluster, self._cluster = self._cluster, None
            sessions = list(self._sessions)
        for session in sessions:
            session._mark_closed()
        registry.forget_cluster(self)
        return True, cluster

    def _close_blocking(self) -> bool:
        was_open, cluster = self._mark_closed()
        if cluster is not None:
            cluster.shutdown()
        return was_open

    async def shutdown(self) -> None:
        """Close every session and connection of this cluster; shutting down twice is harmless."""
        _, cluster = self._mark_closed()
        if cluster is not None:
            await run_shutdown(cluster.shutdown, wait=SHUTDOWN_WAIT)

    async def __aenter__(self) -> AsyncCluster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or getattr(self, "_cluster", None) is None:
            return
        _, cluster = self._mark_closed()
        if cluster is None:
            return
        # The driver's shutdown joins its threads: keep it off whatever thread collects us.
        start_daemon(cluster.shutdown)
        warnings.warn(
            f"unclosed {self!r}; use 'async with' or 'await cluster.shutdown()'",
            ResourceWarning,
            stacklevel=1,
            source=self,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self._cluster else "not connected")
        provider = self._driver_kwargs.get("auth_provider")
        user = getattr(provider, "username", None)
        login = f" user={user!r}" if user else ""
        version = self.protocol_version
        protocol = f" protocol v{version}" if version else ""
        return f"<AsyncCluster {self._where()}{login}{protocol} {state}>"
