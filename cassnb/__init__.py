"""Apache Cassandra in Jupyter: an asyncio session core, pandas frames, and %%cql magics.

Every public name lives in a private module and is imported on first use, so
``python -m cassnb.local`` needs nothing but the standard library, and importing
cassnb never pulls in pandas or IPython until a frame or a magic is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cassnb._cluster import AsyncCluster
    from cassnb._dask import to_dask
    from cassnb._errors import (
        AuthenticationError,
        CassandraError,
        ConfigurationError,
        ConnectionError,
        QueryError,
        QueryTimeout,
    )
    from cassnb._frames import WriteFrameError, read_cql, write_frame
    from cassnb._registry import get_default_session, set_default_session
    from cassnb._results import AsyncResultSet, Row
    from cassnb._scan import read_table
    from cassnb._session import AsyncSession
    from cassnb._stream import AsyncStreamingResultSet, StreamConfig

__all__ = [
    "AsyncCluster",
    "AsyncResultSet",
    "AsyncSession",
    "AsyncStreamingResultSet",
    "AuthenticationError",
    "CassandraError",
    "ConfigurationError",
    "ConnectionError",
    "QueryError",
    "QueryTimeout",
    "Row",
    "StreamConfig",
    "WriteFrameError",
    "__version__",
    "get_default_session",
    "read_cql",
    "read_table",
    "set_default_session",
    "to_dask",
    "write_frame",
]

_HOMES = {
    "AsyncCluster": "cassnb._cluster",
    "AsyncResultSet": "cassnb._results",
    "AsyncSession": "cassnb._session",
    "AsyncStreamingResultSet": "cassnb._stream",
    "AuthenticationError": "cassnb._errors",
    "CassandraError": "cassnb._errors",
    "ConfigurationError": "cassnb._errors",
    "ConnectionError": "cassnb._errors",
    "QueryError": "cassnb._errors",
    "QueryTimeout": "cassnb._errors",
    "Row": "cassnb._results",
    "StreamConfig": "cassnb._stream",
    "WriteFrameError": "cassnb._frames",
    "get_default_session": "cassnb._registry",
    "read_cql": "cassnb._frames",
    "read_table": "cassnb._scan",
    "set_default_session": "cassnb._registry",
    "to_dask": "cassnb._dask",
    "write_frame": "cassnb._frames",
}


def load_ipython_extension(ip: Any) -> None:
    """Register the CQL magics with IPython (``%load_ext cassnb``)."""
    from cassnb._magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    """Remove the CQL magics from IPython (``%unload_ext cassnb``)."""
    from cassnb._magics import unload_ipython_extension as unload

    unload(ip)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cassnb' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
