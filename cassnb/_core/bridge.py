"""The one place where the driver's threads meet the asyncio loop.

The driver answers on its I/O thread: a read (:class:`cassnb._driver.Read`) hands each
page to a listener there. Everything that crosses over to the loop goes through
:func:`post`, which batches ``loop.call_soon_threadsafe`` wake-ups and tolerates a
closed loop; results are set through a helper that does nothing when the asyncio future
is already done or cancelled, so an abandoned await never raises ``InvalidStateError``.
Calls that block inside the driver (connect, prepare, set_keyspace, shutdown) run on a
worker thread via :func:`run_blocking`. :func:`fetch` awaits a read's first page or all
of them; :class:`PageFeed` hands a stream's pages to the loop.

Driver callbacks that raise are swallowed by the driver, so every callback here catches
everything and hands the error to the loop instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cassnb._core.results import join_pages
from cassnb._driver import Page, Read, WirePage

__all__ = [
    "DELIVERED_PER_TURN",
    "InFlight",
    "PageFeed",
    "fetch",
    "post",
    "reject",
    "resolve",
    "run_blocking",
    "run_blocking_sync",
    "run_shutdown",
    "start_daemon",
]

T = TypeVar("T")

#: Posted callbacks run per turn of the loop (see _Inbox).
DELIVERED_PER_TURN = 8
#: How long a feed running ahead holds pages before it hands them to the loop: a progress
#: display still moves several times a second.
_HELD_SECONDS = 0.2
#: How far a read running ahead may get before its consumer: pages fetched (and, for
#: frames, decoded) that the consumer has not taken, and their size in wire form.
AHEAD_PAGES = 16
AHEAD_BYTES = 8 * 2**20

_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="cassnb")


class _Inbox:
    """Callbacks posted to one loop from other threads, delivered in order, in batches.

    Each ``call_soon_threadsafe`` writes to the loop's self-pipe and wakes the loop; when
    the driver answers hundreds of requests at once, that is a system call and a loop
    iteration per answer. The inbox schedules one delivery for everything that arrives
    before the loop gets to it (about a fifth less client CPU per point read).

    It hands over at most ``DELIVERED_PER_TURN`` callbacks per turn of the loop, and the
    rest on the next turns, so that the tasks the first ones wake run in between. Callers
    bound their requests with an ``asyncio.Semaphore``, whose release looks past every
    waiter it has woken that has not run yet: a burst of several hundred answers handed
    over in one turn made that quadratic, about a sixth of the loop's time per request.
    """

    __slots__ = ("_items", "_lock", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak, so that the table of inboxes never keeps a finished loop alive.
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._items: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self._scheduled = False

    def put(self, callback: Callable[..., object], args: tuple[Any, ...]) -> bool:
        loop = self._loop()
        if loop is None or loop.is_closed():
            return False
        with self._lock:
            self._items.append((callback, args))
            if self._scheduled:
                return True
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            # Closed meanwhile (interpreter or notebook shutting down): nobody is left
            # to receive it.
            with self._lock:
                self._items.clear()
                self._scheduled = False
            return False
        return True

    def _deliver(self) -> None:
        with self._lock:
            items = self._items[:DELIVERED_PER_TURN]
            del self._items[:DELIVERED_PER_TURN]
            more = bool(self._items)
            self._scheduled = more
        delivered = 0
        try:
            for callback, args in items:
                delivered += 1
                try:
                    callback(*args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:  # reported as the loop reports its callbacks'
                    loop = self._loop()
                    if loop is not None:
                        loop.call_exception_handler(
                            {"message": f"Exception in callback {callback!r}", "exception": exc}
                        )
        finally:
            if delivered < len(items):
                # Interrupted: what was not delivered goes first in the next batch.
                with self._lock:
                    self._items[:0] = items[delivered:]
                    more = more or not self._scheduled
                    self._scheduled = True
            if more:
                loop = self._loop()
                if loop is not None:
                    with contextlib.suppress(RuntimeError):  # closed meanwhile: nobody left
                        loop.call_soon(self._deliver)


_INBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()
_INBOXES_LOCK = threading.Lock()
#: The inbox posted to last: almost every process has one loop, so this skips the table.
_last_inbox: _Inbox | None = None


def _inbox(loop: asyncio.AbstractEventLoop) -> _Inbox:
    global _last_inbox
    inbox = _last_inbox
    if inbox is not None and inbox._loop() is loop:
        return inbox
    with _INBOXES_LOCK:
        inbox = _INBOXES.get(loop)
        if inbox is None:
            inbox = _INBOXES[loop] = _Inbox(loop)
    _last_inbox = inbox
    return inbox


def post(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> bool:
    """Run ``callback(*args)`` on the loop's thread; return False (and do nothing) if the
    loop is closed."""
    return _inbox(loop).put(callback, args)


def _wire_size(rows: Sequence[Any]) -> int:
    """How many bytes a page's rows took on the wire, for a page kept in wire form (0 for
    rows the driver decoded, whose pages are bounded by count alone)."""
    return len(rows.body) if isinstance(rows, WirePage) else 0


def _set_result(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def resolve(future: asyncio.Future[T], value: T) -> None:
    """Set ``future``'s result from any thread, unless it is already done."""
    post(future.get_loop(), _set_result, future, value)


def reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Set ``future``'s exception from any thread, unless it is already done."""
    post(future.get_loop(), _set_exception, future, exc)


def _after_abandon(on_abandon: Callable[[T], object], done: concurrent.futures.Future[T]) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    on_abandon(done.result())


async def run_blocking(
    fn: Callable[..., T], /, *args: Any, on_abandon: Callable[[T], object] | None = None
) -> T:
    """Run a blocking driver call on a worker thread and await its result.

    If the awaiting task is cancelled while the call is already running, the call
    finishes anyway; its result is then given to ``on_abandon`` on the worker thread,
    so that a session nobody will receive can be shut down.
    """
    work = _EXECUTOR.submit(fn, *args)
    try:
        return await asyncio.wrap_future(work)
    except asyncio.CancelledError:
        if on_abandon is not None:
            work.add_done_callback(functools.partial(_after_abandon, on_abandon))
        raise


async def run_shutdown(fn: Callable[[], object], *, wait: float) -> None:
    """Run a driver shutdown on a worker thread, waiting for it at most ``wait`` seconds.

    A shutdown is quick unless the driver is busy with a node that does not answer (a
    reconnection attempt runs to its connect timeout); past ``wait`` it finishes on its
    own while the caller moves on.
    """
    work = asyncio.ensure_future(run_blocking(fn))
    work.add_done_callback(_retrieve)
    done, _ = await asyncio.wait({work}, timeout=wait)
    if work in done:
        work.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Nobody may be left to await a shutdown that outlived its wait.
    if not task.cancelled():
        task.exception()


def start_daemon(fn: Callable[[], object]) -> None:
    """Run ``fn`` on a fresh daemon thread without waiting; skip it if none can start."""
    # At interpreter exit no thread may start; the driver's own exit hook then cleans up.
    with contextlib.suppress(RuntimeError):
        threading.Thread(target=fn, name="cassnb-close", daemon=True).start()


def run_blocking_sync(fn: Callable[[], object], *, timeout: float) -> bool:
    """Run ``fn`` on a fresh daemon thread and wait at most ``timeout`` seconds for it.

    For shutdown paths that may run with or without a loop, even at interpreter exit
    when the shared executor no longer accepts work. Return whether ``fn`` finished.
    """
    thread = threading.Thread(target=fn, name="cassnb-close", daemon=True)
    try:
        thread.start()
    except RuntimeError:
        fn()
        return True
    thread.join(max(timeout, 0.0))
    return not thread.is_alive()


class _Collector:
    """Gathers the pages of one read on the driver's thread, then wakes the loop once."""

    __slots__ = ("all_pages", "future", "pages", "read")

    def __init__(self, future: asyncio.Future[Page], read: Read, all_pages: bool) -> None:
        self.future = future
        self.read: Read | None = read
        self.all_pages = all_pages
        self.pages: list[Sequence[Any]] = []

    def on_page(self, page: Page) -> None:
        read = self.read
        if read is None:
            return
        try:
            if self.future.get_loop().is_closed():
                # Nobody is left to take the result.
                self.abandon()
                return
            if page.rows:
                self.pages.append(page.rows)
            if self.all_pages and page.has_more:
                if self.read is not None:
                    read.next_page()
                return
            self.abandon()
            resolve(self.future, page.with_rows(join_pages(self.pages) if self.pages else []))
        except Exception as exc:
            self.fail(exc)

    def on_error(self, exc: BaseException) -> None:
        self.fail(exc)

    def abandon(self) -> None:
        """Stop listening: the read's future keeps no callback of ours."""
        read, self.read = self.read, None
        if read is not None:
            read.cancel()

    def fail(self, exc: BaseException) -> None:
        """Give up on the read from any thread: the awaiting task gets ``exc``."""
        self.abandon()
        reject(self.future, exc)


class InFlight:
    """The requests a session is waiting for, so that closing it can fail them at once.

    Without this, a request whose connection the driver closes is only answered by its
    timeout, seconds later.
    """

    __slots__ = ("_collectors",)

    def __init__(self) -> None:
        self._collectors: set[_Collector] = set()

    def fail_all(self, exc: BaseException) -> None:
        """Fail every request still waiting (callable from any thread)."""
        for collector in list(self._collectors):
            collector.fail(exc)


async def fetch(read: Read, *, all_pages: bool, in_flight: InFlight) -> Page:
    """Await a read's first page, or every page, without blocking the loop.

    Later pages are requested from the driver's thread as soon as the previous one
    arrives. If the awaiting task is cancelled, no further page is requested and the
    read is cancelled.
    """
    future: asyncio.Future[Page] = asyncio.get_running_loop().create_future()
    collector = _Collector(future, read, all_pages)
    collectors = in_flight._collectors
    collectors.add(collector)
    read.listen(collector.on_page, collector.on_error)
    try:
        return await future
    except asyncio.CancelledError:
        collector.abandon()
        raise
    finally:
        collectors.discard(collector)


class PageFeed:
    """Hands each page of a read to the loop, for a stream.

    The feed holds its receiver weakly, so the driver's future never keeps a stream
    alive: a dropped stream is collected by reference counting alone.

    Normally the loop asks for each next page (:meth:`request_next`). A reader that takes
    every page as it comes may let the read run ahead (:meth:`run_ahead`); the pages it
    asks for itself are then held for a moment and handed over a few at a time, and no
    more than ``AHEAD_PAGES`` pages, or ``AHEAD_BYTES`` of them in wire form, wait for
    the loop's consumer (:meth:`has_room`, :meth:`consumed`).
    """

    __slots__ = (
        "__weakref__",
        "_bytes_consumed",
        "_bytes_handed",
        "_consumed",
        "_flushed_at",
        "_handed",
        "_held",
        "_loop",
        "_on_error",
        "_on_page",
        "read",
    )

    def __init__(
        self,
        read: Read,
        loop: asyncio.AbstractEventLoop,
        on_page: Callable[[Page], object],
        on_error: Callable[[BaseException], object],
    ) -> None:
        self._loop = loop
        self._on_page = weakref.WeakMethod(on_page)
        self._on_error = weakref.WeakMethod(on_error)
        self.read: Read | None = read
        #: Pages run ahead of the loop, not handed over yet; only the driver's thread
        #: touches them.
        self._held: list[Page] = []
        self._flushed_at = 0.0
        # Each count is written by one thread only (handed: the driver's; consumed: the
        # loop's), so that the other may read it without a lock.
        self._handed = self._bytes_handed = 0
        self._consumed = self._bytes_consumed = 0
        read.listen(self._page_arrived, self._error_arrived)

    def run_ahead(self) -> None:
        """From the next page that arrives on, have the read ask for the page after it
        right away, on the driver's thread, while there is room (call on the loop's
        thread); pages are then handed over a few at a time.

        Waking the loop for every page, and the loop then sending the next request, cost
        about a sixth of the CPU of reading an all-numeric table into a frame. The bound
        keeps a read whose loop has stopped (an interrupted cell, a loop between
        ``run_until_complete`` calls) from fetching and decoding the rest of the result
        meanwhile: once it is full, the next page is asked for by the loop, when its
        consumer takes one.
        """
        self._flushed_at = time.monotonic()
        read = self.read
        if read is not None:
            read.run_ahead(self._room_after_arrival)

    def has_room(self, arriving: int = 0) -> bool:
        """Whether one more page may be asked for, with ``arriving`` pages not counted yet
        on their way to the consumer (callable from any thread)."""
        waiting = len(self._held) + self._handed - self._consumed + arriving
        return waiting < AHEAD_PAGES and self._bytes_handed - self._bytes_consumed < AHEAD_BYTES

    def _room_after_arrival(self) -> bool:
        # Asked by the read on the driver's thread as a page arrives, before it is held.
        return self.has_room(arriving=1)

    def consumed(self, rows: Sequence[Any]) -> None:
        """Note that the consumer took a page handed over (call on the loop's thread)."""
        self._consumed += 1
        self._bytes_consumed += _wire_size(rows)

    def _page_arrived(self, page: Page) -> None:
        if self.read is None:
            return
        self._held.append(page)
        if page.next_requested and time.monotonic() - self._flushed_at < _HELD_SECONDS:
            return
        self._hand_over()

    def _hand_over(self, error: BaseException | None = None) -> None:
        """Post the held pages, then ``error`` if any, to the loop (on the driver's thread)."""
        held, self._held = self._held, []
        self._flushed_at = time.monotonic()
        if held:
            receiver = self._on_page()
            if receiver is None:
                self.detach()
                return
            for page in held:
                if page.rows:
                    self._handed += 1
                    self._bytes_handed += _wire_size(page.rows)
                if not post(self._loop, receiver, page):
                    # A closed loop: nobody will take this read's pages.
                    self.detach()
                    return
        if error is not None:
            on_error = self._on_error()
            if on_error is None:
                self.detach()
                return
            post(self._loop, on_error, error)

    def _error_arrived(self, exc: BaseException) -> None:
        # The pages held before the failure first: the loop resumes after the last of them.
        self._hand_over(exc)

    def request_next(self) -> None:
        """Ask for the next page (call on the loop's thread; it does not block)."""
        read = self.read
        if read is not None:
            read.next_page()

    def detach(self) -> None:
        """Stop listening: cancel the read and forget it."""
        self._held = []
        read, self.read = self.read, None
        if read is not None:
            read.cancel()

    def resume(self, error: BaseException) -> bool:
        """Send the request that failed with ``error`` again from the last page received,
        if its retry policy says so (see Read.resume).

        Call on the loop's thread. Return False when detached.
        """
        read = self.read
        if read is None:
            return False
        return read.resume(error)
