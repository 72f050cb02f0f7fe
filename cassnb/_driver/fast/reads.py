"""The fast path's read: the driver's ``ResponseFuture``, and what it keeps to itself.

The driver hands a page's metadata (column specs, paging state, warnings) only to its
own ResultSet: :class:`FastRead` reads it off the future, on the driver's thread, before
the next page replaces it. Every later page is asked for through the future
(:func:`start_next_page`), so that each one gets what the driver gives a page: a query
plan from the load-balancing policy, the retry policy's decisions, and a request timer
that orphans the stream id of a request that times out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cassnb._driver.fast.pages import start_request
from cassnb._driver.reads import OnError, OnPage, Page, Read, resend_allowed

__all__ = ["FastRead", "start", "start_next_page"]


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


class FastRead(Read):
    """A read through the driver's ResponseFuture, whose page metadata it reads off the future."""

    __slots__ = (
        "_may_ask",
        "_on_error",
        "_on_page",
        "_resumes",
        "_traces_seen",
        "response_future",
    )

    def __init__(self, response_future: Any) -> None:
        self.response_future: Any = response_future
        self._on_page: OnPage | None = None
        self._on_error: OnError | None = None
        #: Set while the read runs ahead: whether it may ask for one more page now.
        self._may_ask: Callable[[], bool] | None = None
        #: How many times this read was sent again (each counts as a retry of the policy).
        self._resumes = 0
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
        may_ask = self._may_ask
        if may_ask is not None and page.has_more and may_ask():
            try:
                start_next_page(response_future)
                page.next_requested = True
            except Exception:
                # The loop asks for it itself, and meets the error there.
                page.next_requested = False
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

    def run_ahead(self, may_ask: Callable[[], bool]) -> None:
        self._may_ask = may_ask

    def resume(self, error: BaseException) -> bool:
        failed = self.response_future
        if failed is None:
            return False
        message = failed.message
        retries = failed._query_retries + self._resumes
        consistency = getattr(message, "consistency_level", None)
        if not resend_allowed(
            failed.session,
            failed._retry_policy,
            failed.query,
            consistency,
            error,
            retries=retries,
            resumes=self._resumes,
        ):
            return False
        failed.clear_callbacks()
        self._resumes += 1
        # The failed request carried the paging state of the last page that arrived (the
        # statement's own, or None, for a first page); a request that was itself resumed
        # has no page of its own yet, so its message is the one place that knows it. The
        # server goes on right after that page, whichever node coordinates.
        response_future = failed.session.execute_async(
            failed.query,
            paging_state=getattr(message, "paging_state", None),
            timeout=failed.timeout,
            trace=bool(getattr(message, "tracing", False)),
            # The message's payload: the statement's own and the one given to execute.
            custom_payload=getattr(message, "custom_payload", None),
        )
        self.response_future = response_future
        self._traces_seen = 0
        response_future.add_callbacks(self._rows_arrived, self._error_arrived)
        return True

    def cancel(self) -> None:
        self._may_ask = None
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
