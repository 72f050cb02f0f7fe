"""The default session: what ``read_cql(session=None)`` and the magics use.

``%cql_connect`` sets it; so may any program, with ``cassnb.set_default_session``.
"""

from __future__ import annotations

import threading

from cassnb._core.errors import ConfigurationError, ConnectionError
from cassnb._core.session import AsyncSession

__all__ = ["get_default_session", "set_default_session"]

_lock = threading.Lock()
_default_session: AsyncSession | None = None


def set_default_session(session: AsyncSession | None) -> None:
    """Make ``session`` the default session (None forgets the current one)."""
    if session is not None and not isinstance(session, AsyncSession):
        raise ConfigurationError(
            f"the default session must be an AsyncSession, not {type(session).__name__}"
        )
    global _default_session
    with _lock:
        _default_session = session


def get_default_session() -> AsyncSession:
    """Return the default session, or raise if there is none or it is closed."""
    with _lock:
        session = _default_session
    if session is None:
        raise ConfigurationError(
            "no default session: connect first (%cql_connect in a notebook, or "
            "cassnb.set_default_session(await cluster.connect()))"
        )
    if session.is_closed:
        raise ConnectionError(
            "the default session is closed: connect again (%cql_connect, or "
            "cassnb.set_default_session(await cluster.connect()))"
        )
    return session
