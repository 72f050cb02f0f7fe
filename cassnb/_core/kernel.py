"""Close every open stream, session and cluster when the kernel shuts down or restarts,
or, as a fallback, when the interpreter exits.

ipykernel answers a shutdown request (a restart is a shutdown with ``restart=True``)
by calling its kernel's ``do_shutdown`` before the process exits; the hook wraps that
method. Closing is bounded in time, so a cluster whose shutdown hangs cannot hold up
the kernel's exit: the client kills a kernel that does not exit within a few seconds
anyway, and a clean exit is better. The counts are logged at INFO on the ``cassnb``
logger by the registry ("closed 3 streams, 1 session, 1 cluster").

This module imports neither IPython nor ipykernel: it only looks at what is already
loaded, so the core calls :func:`install` whenever a cluster is created, and
``%load_ext cassnb`` calls it too.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, Final

from cassnb._core import registry

__all__ = ["SHUTDOWN_BUDGET", "install", "install_kernel_hook", "running_kernel"]

#: Seconds the hook may spend closing; clients wait about five before killing a kernel.
SHUTDOWN_BUDGET: Final = 4.0

_MARK: Final = "_cassnb_shutdown_hook"
_lock = threading.Lock()
_exit_hook_installed = False
logger = logging.getLogger("cassnb")


def running_kernel() -> Any | None:
    """Return the ipykernel kernel of this process, or None outside a kernel."""
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    if kernelapp is None:
        return None
    app_class = getattr(kernelapp, "IPKernelApp", None)
    if app_class is None or not app_class.initialized():
        return None
    return getattr(app_class.instance(), "kernel", None)


def close_everything() -> registry.CloseCounts | None:
    """Close what is open within the budget; never raise into the kernel's shutdown."""
    try:
        return registry.close_all_sync(timeout=SHUTDOWN_BUDGET)
    except Exception:
        logger.warning("cassnb could not close everything at kernel shutdown", exc_info=True)
        return None


def _wrapped(original: Callable[[bool], Any]) -> Callable[[bool], Any]:
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def do_shutdown_async(restart: bool) -> Any:
            close_everything()
            return await original(restart)

        return do_shutdown_async

    @functools.wraps(original)
    def do_shutdown(restart: bool) -> Any:
        close_everything()
        return original(restart)

    return do_shutdown


def install_kernel_hook() -> bool:
    """Wrap the running kernel's ``do_shutdown`` once; return whether a kernel is hooked."""
    kernel = running_kernel()
    if kernel is None:
        return False
    with _lock:
        if getattr(kernel, _MARK, False):
            return True
        kernel.do_shutdown = _wrapped(kernel.do_shutdown)
        setattr(kernel, _MARK, True)
    return True


def _close_at_exit() -> None:
    try:
        registry.close_all_sync(timeout=2.0)
    except Exception:
        logger.debug("error while closing at exit", exc_info=True)


def install() -> None:
    """Make sure open resources are closed when the process or kernel goes away.

    Registers an interpreter-exit fallback once per process and, inside a running
    ipykernel (one already loaded: nothing is imported here), wraps the kernel's
    ``do_shutdown``.
    """
    global _exit_hook_installed
    with _lock:
        first = not _exit_hook_installed
        _exit_hook_installed = True
    if first:
        atexit.register(_close_at_exit)
    if "ipykernel" in sys.modules:
        install_kernel_hook()
