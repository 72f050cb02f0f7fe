"""Which implementation serves a cluster: the fast path's modules, imported only when used."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cassnb._driver.reads import PublicRead, Read

__all__ = ["connection_class", "start_read"]


def start_read(
    session: Any,
    statement: Any,
    *,
    fast: bool,
    raw: bool = False,
    timeout: float | None = None,
    paging_state: bytes | None = None,
    trace: bool = False,
    custom_payload: Mapping[str, bytes] | None = None,
) -> Read:
    """Send ``statement`` on a driver session and return its read.

    ``fast`` chooses the fast path (the caller asks the gate first); there, ``raw`` leaves
    ROWS pages in wire form (:class:`~cassnb._driver.wire.WirePage`) for a columnar
    decoder. ``timeout`` bounds a request, the driver's default when None: every page's
    on the fast path, the first page's on the public one (see :class:`PublicRead`).
    ``custom_payload`` goes to the server with every page's request.
    """
    if not fast:
        return PublicRead(
            session,
            statement,
            timeout=timeout,
            paging_state=paging_state,
            trace=trace,
            custom_payload=custom_payload,
        )
    from cassnb._driver.fast.reads import start

    return start(
        session,
        statement,
        raw=raw,
        timeout=timeout,
        paging_state=paging_state,
        trace=trace,
        custom_payload=custom_payload,
    )


def connection_class(fast: bool) -> type[Any] | None:
    """Return the connection class a cluster should use, or None for the driver's own."""
    if not fast:
        return None
    from cassnb._driver.fast.connection import connection_class as segment_reading

    return segment_reading()
