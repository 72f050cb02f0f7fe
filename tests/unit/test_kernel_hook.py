"""The kernel-shutdown hook, without a kernel: wrapping and its time bound."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import weakref

import pytest

from cassnb._core import kernel as hook
from cassnb._core import registry as _registry


class StuckCluster:
    """A resource whose shutdown never returns in time."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def _close_blocking(self) -> bool:
        self.release.wait(30)
        return True


def test_closing_is_bounded_by_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the stuck cluster is open as far as this test knows: other tests' sessions and
    # clusters in this process are neither counted nor closed.
    for kind in ("_streams", "_sessions", "_clusters"):
        monkeypatch.setattr(_registry, kind, weakref.WeakSet())
    stuck = StuckCluster()
    _registry.track_cluster(stuck)
    try:
        started = time.monotonic()
        counts = hook.close_everything()
        took = time.monotonic() - started
    finally:
        stuck.release.set()
        _registry.forget_cluster(stuck)
    print(f"closing with a stuck cluster took {took:.2f} s")
    assert counts is not None
    assert (counts.streams, counts.sessions, counts.clusters) == (0, 0, 0)
    assert hook.SHUTDOWN_BUDGET - 0.5 <= took <= hook.SHUTDOWN_BUDGET + 1.0


def test_a_sync_do_shutdown_is_wrapped_and_keeps_its_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(hook, "close_everything", lambda: calls.append("close"))

    def do_shutdown(restart: bool) -> dict[str, object]:
        calls.append(f"shutdown {restart}")
        return {"status": "ok", "restart": restart}

    assert hook._wrapped(do_shutdown)(True) == {"status": "ok", "restart": True}
    assert calls == ["close", "shutdown True"]


def test_an_async_do_shutdown_stays_async(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(hook, "close_everything", lambda: calls.append("close"))

    async def do_shutdown(restart: bool) -> dict[str, object]:
        calls.append(f"shutdown {restart}")
        return {"status": "ok", "restart": restart}

    wrapped = hook._wrapped(do_shutdown)
    assert inspect.iscoroutinefunction(wrapped)
    assert asyncio.run(wrapped(False)) == {"status": "ok", "restart": False}
    assert calls == ["close", "shutdown False"]


def test_outside_a_kernel_nothing_is_hooked() -> None:
    assert hook.running_kernel() is None
    assert hook.install_kernel_hook() is False
