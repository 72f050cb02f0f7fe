"""Whether the fast path may run: the driver versions it is tested with, and the switch.

The fast path reads and writes names the driver keeps private; a release may rename any
of them, and the failure would only show at run time, on the driver's thread. So it runs
only on a driver version it was tested with, read once when this module is imported;
on any other version, cassnb uses the driver's public API alone, and says why.
``CASSNB_FAST_PATH=0`` (or ``AsyncCluster(fast_path=False)`` for one cluster) turns it
off by hand.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Final

import cassandra

__all__ = ["DRIVER_VERSION", "SWITCH", "TESTED_VERSIONS", "FastPath", "fast_path", "switched_off"]

#: The cassandra-driver releases the fast path is tested with.
TESTED_VERSIONS: Final = ("3.30.1",)
#: The environment variable that turns the fast path off (0, false, no or off).
SWITCH: Final = "CASSNB_FAST_PATH"
#: The installed driver's version.
DRIVER_VERSION: Final[str] = str(cassandra.__version__)

_OFF_VALUES: Final = frozenset({"0", "false", "no", "off"})
_VERSION_TESTED: Final = DRIVER_VERSION in TESTED_VERSIONS

log = logging.getLogger("cassnb")
if not _VERSION_TESTED:
    log.info(
        "cassandra-driver %s is not a version cassnb's fast path is tested with (%s): "
        "only the driver's public API is used",
        DRIVER_VERSION,
        ", ".join(TESTED_VERSIONS),
    )


@dataclass(frozen=True)
class FastPath:
    """Whether a cluster uses the fast path, and why not when it does not."""

    enabled: bool
    #: Why the fast path is off; empty when it is on.
    reason: str = ""

    def __str__(self) -> str:
        return "fast path on" if self.enabled else f"fast path off: {self.reason}"


def switched_off() -> bool:
    """Whether ``CASSNB_FAST_PATH`` turns the fast path off for clusters created now."""
    return os.environ.get(SWITCH, "").strip().lower() in _OFF_VALUES


def fast_path(requested: bool = True) -> FastPath:
    """Tell whether a cluster that asks for the fast path (or not) gets it."""
    if not requested:
        return FastPath(False, "turned off with fast_path=False")
    if switched_off():
        return FastPath(False, f"turned off by {SWITCH}={os.environ[SWITCH]}")
    if not _VERSION_TESTED:
        return FastPath(
            False,
            f"cassandra-driver {DRIVER_VERSION} is not a version it is tested with "
            f"({', '.join(TESTED_VERSIONS)}); only the driver's public API is used",
        )
    return FastPath(True)
