"""The compiled page decoder (``cassnb._frames._native.columnar``), if it is built.

Without it (no C compiler at install time, a stale build, or ``CASSNB_NO_NATIVE=1``)
frames use the pure-Python decoder; one line on the ``cassnb`` logger says why.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Final

__all__ = ["RAW", "SCANNED", "WIDTHS", "native", "native_available"]

log = logging.getLogger("cassnb")

_ABI: Final = 5


def _load_native() -> ModuleType | None:
    if os.environ.get("CASSNB_NO_NATIVE", "") not in ("", "0"):
        log.info("native page decoder disabled by CASSNB_NO_NATIVE; frames are decoded in Python")
        return None
    try:
        from cassnb._frames._native import columnar
    except ImportError as exc:
        log.warning(
            "native page decoder not available (%s); frames are decoded in Python, "
            "several times slower: reinstall cassnb with a C compiler present",
            exc,
        )
        return None
    if getattr(columnar, "ABI", None) != _ABI:
        log.warning(
            "native page decoder is a stale build (ABI %s, expected %s); frames are decoded "
            "in Python: rebuild with 'pip install -e .'",
            getattr(columnar, "ABI", None),
            _ABI,
        )
        return None
    return columnar


#: The compiled module, or None.
native: Final = _load_native()


def native_available() -> bool:
    """Tell whether pages are decoded by the compiled decoder."""
    return native is not None


RAW: Final = -1 if native is None else native.K_RAW
#: Bytes per value of the fixed-width kinds.
WIDTHS: Final[dict[int, int]] = (
    {}
    if native is None
    else {
        native.K_FIX1: 1,
        native.K_FIX2: 2,
        native.K_FIX4: 4,
        native.K_FIX8: 8,
        native.K_BOOL: 1,
        native.K_DATE: 4,
        native.K_DATE_SECONDS: 8,
        native.K_UUID: 16,
    }
)
#: Kinds whose buffers are sized by a scan of the page first.
SCANNED: Final = (
    frozenset()
    if native is None
    else frozenset({native.K_UTF8, native.K_ASCII, native.K_BLOB, native.K_UUID_TEXT, native.K_RAW})
)
