"""The fast path's read: the driver's ``ResponseFuture``, and what it keeps to itself.

The driver hands a page's metadata (column specs, paging state, warnings) only to its
own ResultSet: :class:`FastRead` reads it off the future, on the driver's thread, before
the next page replaces it. Later pages are asked for through the future with a fresh
request timeout (:func:`start_next_page`), or, when the reader runs ahead, straight on a
connection (:class:`_DirectAsk`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cassandra import OperationTimedOut
from cassandra.policies import NoSpeculativeExecutionPlan
from cassandra.protocol import RESULT_KIND_ROWS, ResultMessage

from cassnb._driver.fast.pages import start_request
from cassnb._driver.reads import OnError, OnPage, Page, Read

__all__ = ["FastRead", "direct_asks_allowed", "start", "start_next_page"]


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
    all-numeric table into a frame. A read running ahead sends the request itself and
    takes the answer straight from the connection; anything but a page of rows is asked
    for again the driver's way, whose retry policy, query plan and timer then apply.
    """

    __slots__ = ("connection", "pool", "read", "response_future", "sent_at")

    def __init__(self, read: FastRead, response_future: Any) -> None:
        self.read = read
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
        read = self.read
        try:
            self.pool.return_connection(self.connection)
            if read._asked is self:
                read._asked = None
                read._direct_answer(self.response_future, response)
        except Exception as exc:
            # The connection logs and drops what its callbacks raise: the read would
            # wait for this page forever.
            read._error_arrived(exc)


class FastRead(Read):
    """A read through the driver's ResponseFuture, reaching below it where that is cheaper."""

    __slots__ = (
        "_ahead",
        "_asked",
        "_direct",
        "_on_error",
        "_on_page",
        "_traces_seen",
        "_watchdog",
        "response_future",
    )

    def __init__(self, response_future: Any) -> None:
        self.response_future: Any = response_future
        self._on_page: OnPage | None = None
        self._on_error: OnError | None = None
        self._ahead = False
        #: Later pages are asked for below the driver's future (see _DirectAsk).
        self._direct = False
        #: The next-page request sent that way and not yet answered.
        self._asked: _DirectAsk | None = None
        #: The timer that times that request out.
        self._watchdog: Any = None
        #: How many of the future's traces earlier pages reported.
        self._traces_seen = 0

    def listen(self, on_page: OnPage, on_error: OnError) -> None:
        self._on_page, self._on_error = on_page, on_error
        self.response_future.add_callbacks(self._rows_arrived, self._error_arrived)

    def _page(self, rows: Sequence[Any] | None, response_future: Any) -> Page:
        # The driver keeps these on the future and only exposes them through its own
        # ResultSet; read here, on the driver's thread, before the next page replaces them.
        traces = getattr(response_future, "_query_traces", None)
        trace_id = None
        if traces and len(traces) > self._traces_seen:
            self._traces_seen = len(traces)
            trace_id = traces[-1].trace_id
        return Page(
            rows if rows is not None else [],
            column_names=response_future._col_names,
            column_types=response_future._col_types,
            paging_state=response_future._paging_state,
            warnings=response_future._warnings,
            trace_id=trace_id,
        )

    def _rows_arrived(self, rows: Sequence[Any] | None) -> None:
        response_future = self.response_future
        on_page = self._on_page
        if response_future is None or on_page is None:
            return
        try:
            _release_timer(response_future)
            page = self._page(rows, response_future)
        except Exception as exc:
            self._error_arrived(exc)
            return
        if self._ahead and page.has_more:
            page.next_requested = self._ask_next(response_future)
        on_page(page)

    def _error_arrived(self, exc: BaseException) -> None:
        response_future = self.response_future
        on_error = self._on_error
        if response_future is None or on_error is None:
            return
        _release_timer(response_future)
        on_error(exc)

    def next_page(self) -> None:
        response_future = self.response_future
        if response_future is not None:
            start_next_page(response_future)

    def run_ahead(self) -> None:
        response_future = self.response_future
        self._direct = response_future is not None and direct_asks_allowed(response_future)
        self._ahead = True

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
            # What the driver's future notes of a page (_page reads it there).
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

    def resume(self) -> bool:
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
            failed.query,
            paging_state=paging_state,
            timeout=failed.timeout,
            # The message's payload: the statement's own and the one given to execute.
            custom_payload=getattr(failed.message, "custom_payload", None),
        )
        self.response_future = response_future
        self._traces_seen = 0
        response_future.add_callbacks(self._rows_arrived, self._error_arrived)
        return True

    def cancel(self) -> None:
        self._asked = None
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
        response_future, self.response_future = self.response_future, None
        if response_future is not None:
            response_future.clear_callbacks()


def start(
    session: Any,
    statement: Any,
    *,
    raw: bool,
    timeout: float | None,
    paging_state: bytes | None,
    trace: bool,
    custom_payload: Mapping[str, bytes] | None = None,
) -> FastRead:
    """Send ``statement`` on a driver session; ``raw`` leaves its ROWS pages in wire form."""
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if custom_payload:
        options["custom_payload"] = dict(custom_payload)
    if raw:
        response_future = start_request(
            session, statement, paging_state=paging_state, trace=trace, **options
        )
    else:
        response_future = session.execute_async(
            statement, paging_state=paging_state, trace=trace, **options
        )
    return FastRead(response_future)
