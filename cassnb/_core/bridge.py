"""The one place where the driver's threads meet the asyncio loop.

The driver answers on its I/O thread, through callbacks on a ``ResponseFuture``.
Everything that crosses over to the loop goes through :func:`post`, which batches
``loop.call_soon_threadsafe`` wake-ups and tolerates a closed loop; results are set through a
helper that does nothing when the asyncio future is already done or cancelled, so an
abandoned await never raises ``InvalidStateError``. Calls that block inside the driver
(connect, prepare, set_keyspace, shutdown) run on a worker thread via
:func:`run_blocking`; queries use ``execute_async`` and callbacks, and the later pages
of a stream that runs ahead are requested on a connection directly (:class:`_DirectAsk`).

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

from cassandra import OperationTimedOut
from cassandra.policies import NoSpeculativeExecutionPlan
from cassandra.protocol import RESULT_KIND_ROWS, ResultMessage

from cassnb._core.results import join_pages

__all__: list[str] = []

T = TypeVar("T")

#: Posted callbacks run per turn of the loop (see _Inbox).
DELIVERED_PER_TURN = 8
#: How long a feed running ahead holds pages before it hands them to the loop: a progress
#: display still moves several times a second.
_HELD_SECONDS = 0.2

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

    def put(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        with self._lock:
            self._items.append((callback, args))
            if self._scheduled:
                return
            self._scheduled = True
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            # A closed loop (interpreter or notebook shutting down) leaves nobody to
            # receive it.
            with self._lock:
                self._items.clear()
                self._scheduled = False

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


def post(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> None:
    """Run ``callback(*args)`` on the loop's thread; do nothing if the loop is closed."""
    _inbox(loop).put(callback, args)


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


class Page:
    """One response from the server: rows plus what the driver learned with them."""

    __slots__ = (
        "column_names",
        "column_types",
        "has_more",
        "next_requested",
        "paging_state",
        "rows",
        "warnings",
    )

    def __init__(self, rows: Sequence[Any], response_future: Any) -> None:
        self.rows = rows
        #: The driver's thread already asked for the next page (see PageFeed.run_ahead).
        self.next_requested = False
        # The driver keeps these on the future and only exposes them through its own
        # ResultSet; read here, on the driver's thread, before the next page replaces them.
        self.column_names: list[str] | None = response_future._col_names
        self.column_types: list[Any] | None = response_future._col_types
        self.paging_state: bytes | None = response_future._paging_state
        self.has_more: bool = self.paging_state is not None
        self.warnings: list[str] | None = response_future._warnings


def _release_timer(response_future: Any) -> None:
    # A finished request keeps its cancelled timer, whose callback points back at the
    # future: a cycle only the garbage collector reclaims, for every request. The stale
    # timer would also stop the next page's request from starting a timer of its own.
    timer = getattr(response_future, "_timer", None)
    response_future._timer = None
    if timer is not None and getattr(timer, "canceled", False):
        # The reactor's timer heap holds a cancelled timer until its deadline (seconds
        # away), and with it the future and its last page; it never calls it again.
        timer.callback = None


def start_next_page(response_future: Any) -> None:
    """Ask the driver for the next page; the request timeout applies to it afresh."""
    _release_timer(response_future)
    # The driver measures the timeout from when the query was first sent, so later
    # pages would otherwise share the first page's budget.
    response_future._start_time = time.time()
    response_future.start_fetching_next_page()


def direct_asks_allowed(response_future: Any) -> bool:
    """Whether later pages of this request may be asked for below its ResponseFuture.

    The driver's future does more per page than send and answer only for tracing,
    metrics, speculative executions and continuous paging: requests with any of these
    always go through it.
    """
    message = getattr(response_future, "message", None)
    plan = getattr(response_future, "_spec_execution_plan", None)
    return (
        message is not None
        and not getattr(message, "tracing", False)
        and getattr(message, "continuous_paging_options", None) is None
        and getattr(response_future, "_metrics", None) is None
        and isinstance(plan, NoSpeculativeExecutionPlan)
    )


class _DirectAsk:
    """A next-page request sent on a connection of the host that answered the last page.

    The driver's way (:func:`start_next_page`) makes a query plan, a timer and a new
    round of the future's bookkeeping for every page: about 6% of the CPU of reading an
    all-numeric table into a frame. A feed running ahead sends the request itself and
    takes the answer straight from the connection; anything but a page of rows is asked
    for again the driver's way, whose retry policy, query plan and timer then apply.
    """

    __slots__ = ("connection", "feed", "pool", "response_future", "sent_at")

    def __init__(self, feed: PageFeed, response_future: Any) -> None:
        self.feed = feed
        self.response_future = response_future
        self.pool: Any = None
        self.connection: Any = None
        self.sent_at = 0.0

    def send(self) -> bool:
        """Send the request; False if it could not go out (nothing is then pending)."""
        response_future = self.response_future
        host = response_future._current_host
        pool = response_future.session._pools.get(host)
        if pool is None or pool.is_shutdown:
            return False
        # As the driver borrows for a page request, on this same thread.
        connection, request_id = pool.borrow_connection(timeout=2.0)
        self.pool, self.connection = pool, connection
        message = response_future.message
        message.paging_state = response_future._paging_state
        handler = response_future._protocol_handler
        prepared = response_future.prepared_statement
        self.sent_at = time.monotonic()
        try:
            connection.send_msg(
                message,
                request_id,
                cb=self.answered,
                encoder=handler.encode_message,
                decoder=handler.decode_message,
                result_metadata=prepared.result_metadata if prepared else [],
            )
        except Exception:
            pool.return_connection(connection)
            return False
        response_future._connection = connection
        return True

    def answered(self, response: Any) -> None:
        """Take the server's answer (or the connection's failure) on the driver's thread."""
        feed = self.feed
        try:
            self.pool.return_connection(self.connection)
            if feed._asked is self:
                feed._asked = None
                feed._direct_answer(self.response_future, response)
        except Exception as exc:
            # The connection logs and drops what its callbacks raise: the stream would
            # wait for this page forever.
            feed._error_arrived(exc)


class _Collector:
    """Gathers the pages of one request on the driver's thread, then wakes the loop once."""

    __slots__ = ("all_pages", "future", "pages", "response_future")

    def __init__(self, future: asyncio.Future[Page], response_future: Any, all_pages: bool) -> None:
        self.future = future
        self.response_future: Any = response_future
        self.all_pages = all_pages
        self.pages: list[Sequence[Any]] = []

    def on_rows(self, rows: Sequence[Any] | None) -> None:
        response_future = self.response_future
        if response_future is None:
            return
        try:
            _release_timer(response_future)
            if rows:
                self.pages.append(rows)
            if self.all_pages and response_future.has_more_pages:
                if self.response_future is not None:
                    start_next_page(response_future)
                return
            page = Page(join_pages(self.pages) if self.pages else [], response_future)
            self.response_future = None
            resolve(self.future, page)
        except Exception as exc:
            self.response_future = None
            reject(self.future, exc)

    def on_error(self, exc: BaseException) -> None:
        response_future, self.response_future = self.response_future, None
        if response_future is not None:
            _release_timer(response_future)
        reject(self.future, exc)

    def abandon(self) -> None:
        response_future, self.response_future = self.response_future, None
        if response_future is not None:
            response_future.clear_callbacks()

    def fail(self, exc: BaseException) -> None:
        """Give up on the request from any thread: the awaiting task gets ``exc``."""
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


async def fetch(response_future: Any, *, all_pages: bool, in_flight: InFlight) -> Page:
    """Await a request's first page, or every page, without blocking the loop.

    Later pages are requested from the driver's thread as soon as the previous one
    arrives. If the awaiting task is cancelled, no further page is requested and the
    future's callbacks are cleared.
    """
    future: asyncio.Future[Page] = asyncio.get_running_loop().create_future()
    collector = _Collector(future, response_future, all_pages)
    collectors = in_flight._collectors
    collectors.add(collector)
    response_future.add_callbacks(collector.on_rows, collector.on_error)
    try:
        return await future
    except asyncio.CancelledError:
        collector.abandon()
        raise
    finally:
        collectors.discard(collector)


class PageFeed:
    """Hands each page of a request to the loop, one request at a time, for a stream.

    The feed holds its receiver weakly, so the driver's future never keeps a stream
    alive: a dropped stream is collected by reference counting alone.

    Normally the loop asks for each next page (:meth:`request_next`). A reader that takes
    every page as it comes may let the driver's thread run ahead (:meth:`run_ahead`).
    """

    __slots__ = (
        "__weakref__",
        "_ahead",
        "_asked",
        "_direct",
        "_flushed_at",
        "_held",
        "_loop",
        "_on_error",
        "_on_page",
        "_watchdog",
        "response_future",
    )

    def __init__(
        self,
        response_future: Any,
        loop: asyncio.AbstractEventLoop,
        on_page: Callable[[Page], object],
        on_error: Callable[[BaseException], object],
    ) -> None:
        self._loop = loop
        self._on_page = weakref.WeakMethod(on_page)
        self._on_error = weakref.WeakMethod(on_error)
        self.response_future: Any = response_future
        self._ahead = False
        #: Pages run ahead of the loop, not handed over yet; only the driver's thread
        #: touches them.
        self._held: list[Page] = []
        self._flushed_at = 0.0
        #: Later pages are asked for below the driver's future (see _DirectAsk).
        self._direct = False
        #: The next-page request sent that way and not yet answered.
        self._asked: _DirectAsk | None = None
        #: The timer that times that request out.
        self._watchdog: Any = None
        response_future.add_callbacks(self._rows_arrived, self._error_arrived)

    def run_ahead(self) -> None:
        """From the next page that arrives on, ask for the page after it right away, on the
        driver's thread, and hand pages over a few at a time (call on the loop's thread).

        Waking the loop for every page, and the loop then sending the next request, cost
        about a sixth of the CPU of reading an all-numeric table into a frame. Pages are
        then fetched back to back with no bound on how many wait in the stream: only for a
        reader that keeps every page anyway, as it arrives. A page that arrives already
        asked for says so (``Page.next_requested``). Where the request allows it
        (:func:`direct_asks_allowed`), the later pages are asked for straight on a
        connection (:class:`_DirectAsk`).
        """
        self._flushed_at = time.monotonic()
        response_future = self.response_future
        self._direct = response_future is not None and direct_asks_allowed(response_future)
        self._ahead = True

    def _rows_arrived(self, rows: Sequence[Any] | None) -> None:
        response_future = self.response_future
        if response_future is None:
            return
        try:
            _release_timer(response_future)
            page = Page(rows if rows is not None else [], response_future)
        except Exception as exc:
            self._error_arrived(exc)
            return
        if self._ahead and page.has_more:
            page.next_requested = self._ask_next(response_future)
        self._held.append(page)
        if page.next_requested and time.monotonic() - self._flushed_at < _HELD_SECONDS:
            return
        self._hand_over()

    def _ask_next(self, response_future: Any) -> bool:
        """Ask for the page after the one that arrived; False if the request failed (the
        loop then asks for it itself, and meets the error there)."""
        if self._direct:
            # Noted before it is sent: a connection that fails calls back at once.
            asked = self._asked = _DirectAsk(self, response_future)
            try:
                sent = asked.send()
            except Exception:
                sent = False
            if sent:
                self._watch(response_future)
                return True
            self._asked = None
        try:
            start_next_page(response_future)
        except Exception:
            return False
        return True

    def _direct_answer(self, response_future: Any, response: Any) -> None:
        """Take the answer to a direct next-page request (on the driver's thread)."""
        if self.response_future is not response_future:
            return
        if isinstance(response, ResultMessage) and response.kind == RESULT_KIND_ROWS:
            # What the driver's future notes of a page (Page reads it there).
            response_future._paging_state = response.paging_state
            response_future._col_names = response.column_names
            response_future._col_types = response.column_types
            response_future._warnings = response.warnings
            response_future.coordinator_host = response_future._current_host
            try:
                rows = response_future.row_factory(response.column_names, response.parsed_rows)
            except Exception as exc:
                self._error_arrived(exc)
                return
            self._rows_arrived(rows)
            return
        # An error, a lost connection: the same page, asked for the driver's way.
        try:
            start_next_page(response_future)
        except Exception as exc:
            self._error_arrived(exc)

    def _watch(self, response_future: Any) -> None:
        """Have a timer time out a direct request not answered within the request timeout.

        One timer serves the pages of a timeout's length (when it fires with a younger
        request pending, it is moved on), not one timer per page.
        """
        timeout = response_future.timeout
        if timeout is None or self._watchdog is not None:
            return
        self._set_watchdog(response_future, timeout)

    def _set_watchdog(self, response_future: Any, seconds: float) -> None:
        connection_class = response_future.session.cluster.connection_class
        self._watchdog = connection_class.create_timer(seconds, self._deadline)

    def _deadline(self) -> None:
        # The reactor calls a timer whose callback raises again and again: never raise.
        try:
            self._time_out_if_late()
        except Exception as exc:
            with contextlib.suppress(Exception):
                self._error_arrived(exc)

    def _time_out_if_late(self) -> None:
        self._watchdog = None
        asked = self._asked
        response_future = self.response_future
        if asked is None or response_future is None:
            return
        timeout = response_future.timeout
        left = asked.sent_at + timeout - time.monotonic()
        if left > 0:
            self._set_watchdog(response_future, left)
            return
        # An answer that still comes is ignored; the connection is given back then.
        self._asked = None
        host = response_future._current_host
        self._error_arrived(
            OperationTimedOut(errors={host: "Client request timeout"}, last_host=host)
        )

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
                post(self._loop, receiver, page)
        if error is not None:
            on_error = self._on_error()
            if on_error is None:
                self.detach()
                return
            post(self._loop, on_error, error)

    def _error_arrived(self, exc: BaseException) -> None:
        response_future = self.response_future
        if response_future is not None:
            _release_timer(response_future)
        # The pages held before the failure first: the loop resumes after the last of them.
        self._hand_over(exc)

    def request_next(self) -> None:
        """Ask for the next page (call on the loop's thread; it does not block)."""
        response_future = self.response_future
        if response_future is not None:
            start_next_page(response_future)

    def detach(self) -> None:
        """Stop listening: clear the driver future's callbacks and forget it."""
        self._held = []
        self._asked = None
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
        response_future, self.response_future = self.response_future, None
        if response_future is not None:
            response_future.clear_callbacks()

    def resume(self) -> bool:
        """Send the request again from the last page received, on a fresh query plan.

        Call on the loop's thread, after a failure of the current request; the rows
        already handed over are not asked for again. Return False when detached.
        """
        failed = self.response_future
        if failed is None:
            return False
        failed.clear_callbacks()
        self._asked = None
        # The failed request carried the paging state of the last page that arrived (the
        # statement's own, or None, for a first page); a request that was itself resumed
        # has no page of its own yet, so its message is the one place that knows it. The
        # server goes on right after that page, whichever node coordinates.
        paging_state = getattr(failed.message, "paging_state", None)
        response_future = failed.session.execute_async(
            failed.query, paging_state=paging_state, timeout=failed.timeout
        )
        self.response_future = response_future
        response_future.add_callbacks(self._rows_arrived, self._error_arrived)
        return True
