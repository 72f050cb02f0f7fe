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
    from cassnb._core.cluster import AsyncCluster
    from cassnb._core.default import get_default_session, set_default_session
    from cassnb._core.errors import (
        AuthenticationError,
        CassandraError,
        ConfigurationError,
        ConnectionError,
        QueryError,
        QueryTimeout,
    )
    from cassnb._core.results import AsyncResultSet, Row
    from cassnb._core.session import AsyncSession
    from cassnb._core.stream import AsyncStreamingResultSet, StreamConfig
    from cassnb._frames.read import read_cql
    from cassnb._frames.write import WriteFrameError, write_frame
    from cassnb._scan.dask import to_dask
    from cassnb._scan.ranges import read_table

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
    "AsyncCluster": "cassnb._core.cluster",
    "AsyncResultSet": "cassnb._core.results",
    "AsyncSession": "cassnb._core.session",
    "AsyncStreamingResultSet": "cassnb._core.stream",
    "AuthenticationError": "cassnb._core.errors",
    "CassandraError": "cassnb._core.errors",
    "ConfigurationError": "cassnb._core.errors",
    "ConnectionError": "cassnb._core.errors",
    "QueryError": "cassnb._core.errors",
    "QueryTimeout": "cassnb._core.errors",
    "Row": "cassnb._core.results",
    "StreamConfig": "cassnb._core.stream",
    "WriteFrameError": "cassnb._frames.write",
    "get_default_session": "cassnb._core.default",
    "read_cql": "cassnb._frames.read",
    "read_table": "cassnb._scan.ranges",
    "set_default_session": "cassnb._core.default",
    "to_dask": "cassnb._scan.dask",
    "write_frame": "cassnb._frames.write",
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
