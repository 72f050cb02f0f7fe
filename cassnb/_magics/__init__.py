"""The notebook face of cassnb: ``%load_ext cassnb`` registers the CQL magics.

Nothing is imported here until the extension is loaded, so ``import cassnb`` pulls in
neither IPython nor pandas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ip: Any) -> None:
    """Register %cql_connect, %%cql and %cql with an IPython shell."""
    from cassnb._magics.magic import load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    """Remove the CQL magics from an IPython shell."""
    from cassnb._magics.magic import unload

    unload(ip)
