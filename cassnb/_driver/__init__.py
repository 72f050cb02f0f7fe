"""The only code that touches cassandra-driver internals, behind a small interface of its own.

The layers above start a read (:func:`start_read`) and get a :class:`Read`: its pages
(:class:`Page`: rows, column specs, paging state, server warnings, trace id) reach a
listener on the driver's thread; they ask for the next page, run ahead, resume a failed
request and cancel through it. Pages of a raw read arrive in wire form
(:class:`WirePage`) for a columnar decoder.

Two implementations stand behind it. The fast path (:mod:`cassnb._driver.fast`) reads
the driver's private state, sends later pages itself and parses responses in large
reads; it runs only on a driver version it is tested with, and can be turned off
(:mod:`cassnb._driver.gate`). Otherwise :class:`PublicRead` and the driver's own
connections use the driver's public API alone. Nothing imports the fast path's modules
until a cluster that uses it does.
"""

from __future__ import annotations

from cassnb._driver.gate import (
    DRIVER_VERSION,
    SWITCH,
    TESTED_VERSIONS,
    FastPath,
    fast_path,
    switched_off,
)
from cassnb._driver.reads import OnError, OnPage, Page, PublicRead, Read
from cassnb._driver.start import connection_class, start_read
from cassnb._driver.wire import Arrivals, PageDecodeError, WirePage

__all__ = [
    "DRIVER_VERSION",
    "SWITCH",
    "TESTED_VERSIONS",
    "Arrivals",
    "FastPath",
    "OnError",
    "OnPage",
    "Page",
    "PageDecodeError",
    "PublicRead",
    "Read",
    "WirePage",
    "connection_class",
    "fast_path",
    "start_read",
    "switched_off",
]
