"""Every open stream, session and cluster, and closing them all.

The registry holds weak references only: it never keeps anything alive. Kernel shutdown
(and, as a fallback, interpreter exit; see :mod:`cassnb._core.kernel`) closes whatever is
still open, streams first, then sessions, then clusters, within a time bound.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from typing import NamedTuple, Protocol

__all__ = [
    "CloseCounts",
    "OpenCounts",
    "close_all",
    "close_all_sync",
    "forget_cluster",
    "forget_session",
    "forget_stream",
    "open_counts",
    "track_cluster",
    "track_session",
    "track_stream",
]

logger = logging.getLogger("cassnb")


class _Stream(Protocol):
    def _close_now(self) -> bool: ...


class _Resource(Protocol):
    def _close_blocking(self) -> bool: ...


# Reentrant: a finalizer run by the collector while the lock is held unregisters too.
_lock = threading.RLock()
_streams: weakref.WeakSet[_Stream] = weakref.WeakSet()
_sessions: weakref.WeakSet[_Resource] = weakref.WeakSet()
_clusters: weakref.WeakSet[_Resource] = weakref.WeakSet()


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class CloseCounts(NamedTuple):
    """How many streams, sessions and clusters a close-all closed."""

    streams: int
    sessions: int
    clusters: int

    def __str__(self) -> str:
        return (
            f"closed {_plural(self.streams, 'stream')}, {_plural(self.sessions, 'session')}, "
            f"{_plural(self.clusters, 'cluster')}"
        )


class OpenCounts(NamedTuple):
    """How many streams, sessions and clusters are tracked right now."""

    streams: int
    sessions: int
    clusters: int


def track_stream(stream: _Stream) -> None:
    """Remember an open stream until it is collected."""
    with _lock:
        _streams.add(stream)


def forget_stream(stream: _Stream) -> None:
    """Stop tracking a stream that closed."""
    with _lock:
        _streams.discard(stream)


def track_session(session: _Resource) -> None:
    """Remember an open session until it is collected."""
    with _lock:
        _sessions.add(session)


def forget_session(session: _Resource) -> None:
    """Stop tracking a session that closed."""
    with _lock:
        _sessions.discard(session)


def track_cluster(cluster: _Resource) -> None:
    """Remember a cluster until it is collected."""
    with _lock:
        _clusters.add(cluster)


def forget_cluster(cluster: _Resource) -> None:
    """Stop tracking a cluster that shut down."""
    with _lock:
        _clusters.discard(cluster)


def open_counts() -> OpenCounts:
    """Count the streams, sessions and clusters still tracked."""
    with _lock:
        return OpenCounts(len(_streams), len(_sessions), len(_clusters))


def _snapshot(group: Iterable[_Resource] | Iterable[_Stream]) -> list[object]:
    with _lock:
        return list(group)


def _close_group(resources: list[_Resource], deadline: float) -> int:
    """Close resources concurrently, each on its own thread; count those closed in time."""
    closed: list[bool] = []

    def close(resource: _Resource) -> None:
        try:
            if resource._close_blocking():
                closed.append(True)
        except Exception:
            logger.debug("error while closing %r", resource, exc_info=True)

    threads = []
    for resource in resources:
        thread = threading.Thread(target=close, args=(resource,), name="cassnb-close", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            # No new threads at this point of interpreter shutdown: close inline.
            close(resource)
            continue
        threads.append(thread)
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    return len(closed)


def close_all_sync(timeout: float = 5.0) -> CloseCounts:
    """Close every open stream, session and cluster, waiting at most ``timeout`` seconds.

    Works with or without a running loop in the calling thread (atexit, a kernel's
    ``do_shutdown``): the driver's blocking shutdowns run on helper threads. Logs the
    counts at INFO on the ``cassnb`` logger and returns them.
    """
    deadline = time.monotonic() + timeout
    streams = 0
    for stream in _snapshot(_streams):
        try:
            if stream._close_now():  # type: ignore[attr-defined]
                streams += 1
        except Exception:
            logger.debug("error while closing %r", stream, exc_info=True)
    sessions = _close_group(_snapshot(_sessions), deadline)  # type: ignore[arg-type]
    clusters = _close_group(_snapshot(_clusters), deadline)  # type: ignore[arg-type]
    counts = CloseCounts(streams, sessions, clusters)
    logger.info("%s", counts)
    return counts


async def close_all(timeout: float = 5.0) -> CloseCounts:  # noqa: ASYNC109 (a time bound)
    """Close every open stream, session and cluster without blocking the running loop."""
    from cassnb._core.bridge import run_blocking

    return await run_blocking(close_all_sync, timeout)
