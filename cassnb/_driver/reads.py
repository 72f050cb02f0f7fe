"""A read: one statement sent to the cluster, and the pages that answer it.

The layers above see a :class:`Read` and the :class:`Page` objects it hands to its
listener, never the driver's ``ResponseFuture``. Two implementations: the fast path's
(:mod:`cassnb._driver.fast.reads`), and :class:`PublicRead` here, which uses the
driver's public API only. Listeners are called on the driver's thread; a listener must
not block, and must catch what it raises (the driver swallows it).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from cassandra import OperationTimedOut
from cassandra.cluster import EXEC_PROFILE_DEFAULT
from cassandra.policies import RetryPolicy

__all__ = ["OnError", "OnPage", "Page", "PublicRead", "Read", "resend_allowed"]


class Page:
    """One response from the server: rows plus what came with them."""

    __slots__ = (
        "column_names",
        "column_types",
        "has_more",
        "next_requested",
        "paging_state",
        "rows",
        "trace_id",
        "warnings",
    )

    def __init__(
        self,
        rows: Sequence[Any],
        *,
        column_names: list[str] | None,
        column_types: list[Any] | None,
        paging_state: bytes | None,
        warnings: list[str] | None,
        trace_id: UUID | None = None,
    ) -> None:
        self.rows = rows
        #: The result's column names (None for a statement that returns no rows).
        self.column_names = column_names
        #: The driver's CQL type classes of the columns.
        self.column_types = column_types
        #: Where the next page starts; None on the last page.
        self.paging_state = paging_state
        self.has_more: bool = paging_state is not None
        #: The server's warnings about this response.
        self.warnings = warnings
        #: The trace of the request this page answered, when it was traced.
        self.trace_id = trace_id
        #: The next page was asked for already, as this one arrived (see Read.run_ahead).
        self.next_requested = False

    def with_rows(self, rows: Sequence[Any]) -> Page:
        """Return this page's metadata around other rows (several pages joined)."""
        page = Page(
            rows,
            column_names=self.column_names,
            column_types=self.column_types,
            paging_state=self.paging_state,
            warnings=self.warnings,
            trace_id=self.trace_id,
        )
        page.next_requested = self.next_requested
        return page


OnPage = Callable[[Page], object]
OnError = Callable[[BaseException], object]


def resend_allowed(
    session: Any,
    policy: Any,
    statement: Any,
    consistency: Any,
    error: BaseException,
    *,
    retries: int,
    resumes: int,
) -> bool:
    """Whether the retry policy has a request that failed with ``error`` sent again.

    Only the client-side timeout is put to the policy here. The driver itself puts every
    error answer and every lost connection to the statement's policy before it reports
    the failure (and reports a read failure without asking it, as it does for plain
    reads), so what reaches a read has already been refused a retry; the driver never
    asks the policy about its own timeout. ``retries`` (the policy's ``retry_num``) counts
    the read's retries so far, the driver's and its ``resumes``. As in the driver, "retry
    on the next host" ends when no other host is left: here, after one resume fewer than
    the hosts that are up.
    """
    if not isinstance(error, OperationTimedOut):
        return False
    decision, _ = policy.on_request_error(statement, consistency, error, retries)
    if decision == RetryPolicy.RETRY:
        return True
    if decision != RetryPolicy.RETRY_NEXT_HOST:
        return False
    hosts_up = sum(1 for host in session.cluster.metadata.all_hosts() if host.is_up)
    return resumes < hosts_up - 1


class Read(abc.ABC):
    """A statement sent to the cluster; its pages go to one listener, one at a time."""

    __slots__ = ()

    @abc.abstractmethod
    def listen(self, on_page: OnPage, on_error: OnError) -> None:
        """Send each page, or the failure, to these callbacks (on the driver's thread)."""

    @abc.abstractmethod
    def next_page(self) -> None:
        """Ask for the page after the last one that arrived (from any thread)."""

    @abc.abstractmethod
    def run_ahead(self, may_ask: Callable[[], bool]) -> None:
        """From the next page that arrives on, ask for the page after it right away, each
        time ``may_ask()`` (called on the driver's thread) allows it.

        For a reader that keeps every page as it comes; pages asked for so say
        (``Page.next_requested``), and after one that does not, the next is asked for
        with :meth:`next_page`. Call on the loop's thread.
        """

    @abc.abstractmethod
    def resume(self, error: BaseException) -> bool:
        """Send the request that failed with ``error`` again, from the last page received,
        on a fresh query plan, if the statement's retry policy says so (see
        :func:`resend_allowed`).

        The rows already received are not asked for again. Return False when the policy
        says no, or once cancelled.
        """

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop listening: no page or error reaches the listener any more."""

    @property
    @abc.abstractmethod
    def response_future(self) -> Any:
        """The driver's future of the request in flight (None once cancelled), for tests."""


class PublicRead(Read):
    """A read through the driver's public API only, paged as the driver pages.

    Later pages come from the driver's ``start_fetching_next_page()``, with its own
    semantics: it starts no client-side timer for them (the first page's, cancelled,
    stays in place), so on this path ``timeout=`` bounds the first page's request only;
    the server's own timeouts, and ``StreamConfig.timeout_seconds``, still bound the rest.
    A request that timed out is sent again, where the retry policy says so (see
    :func:`resend_allowed`), with ``execute_async(statement, paging_state=...)`` from the
    last page received.
    """

    __slots__ = (
        "_future",
        "_may_ask",
        "_next_from",
        "_on_error",
        "_on_page",
        "_options",
        "_resumes",
        "_sent_from",
        "_session",
        "_statement",
        "_trace",
        "_traces_seen",
    )

    def __init__(
        self,
        session: Any,
        statement: Any,
        *,
        timeout: float | None = None,
        paging_state: bytes | None = None,
        trace: bool = False,
        custom_payload: Mapping[str, bytes] | None = None,
    ) -> None:
        self._session = session
        self._statement = statement
        self._trace = trace
        self._options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        if custom_payload:
            # Later pages reuse the first request's message, payload included; a resumed
            # request is a new message and gets it here again.
            self._options["custom_payload"] = dict(custom_payload)
        self._on_page: OnPage | None = None
        self._on_error: OnError | None = None
        self._may_ask: Callable[[], bool] | None = None
        #: How many times this read was sent again (each counts as a retry of the policy).
        self._resumes = 0
        #: Where the request in flight starts, and where the next one would.
        self._sent_from = paging_state
        self._next_from: bytes | None = None
        #: How many of the future's traces earlier pages reported.
        self._traces_seen = 0
        self._future: Any = self._send(paging_state)

    @property
    def response_future(self) -> Any:
        return self._future

    def _send(self, paging_state: bytes | None) -> Any:
        return self._session.execute_async(
            self._statement, trace=self._trace, paging_state=paging_state, **self._options
        )

    def _listen_to(self, future: Any) -> None:
        # The future is current before it may call back (at once, if it has finished).
        self._future = future
        future.add_callbacks(
            self._rows_arrived,
            self._error_arrived,
            callback_args=(future,),
            errback_args=(future,),
        )

    def listen(self, on_page: OnPage, on_error: OnError) -> None:
        self._on_page, self._on_error = on_page, on_error
        self._listen_to(self._future)

    def _trace_id(self, future: Any) -> UUID | None:
        if not self._trace:
            return None
        trace_ids = future.get_query_trace_ids()
        if len(trace_ids) <= self._traces_seen:
            return None
        self._traces_seen = len(trace_ids)
        trace_id: UUID = trace_ids[-1]
        return trace_id

    def _rows_arrived(self, rows: Sequence[Any] | None, future: Any) -> None:
        on_page = self._on_page
        if future is not self._future or on_page is None:
            return
        try:
            # Inside its callback a future has its result: this does not wait.
            result = future.result()
            page = Page(
                rows if rows is not None else [],
                column_names=result.column_names,
                column_types=result.column_types,
                paging_state=result.paging_state,
                warnings=future.warnings,
                trace_id=self._trace_id(future),
            )
        except Exception as exc:
            self._error_arrived(exc, future)
            return
        self._next_from = page.paging_state
        may_ask = self._may_ask
        if may_ask is not None and page.has_more and may_ask():
            try:
                self.next_page()
                page.next_requested = True
            except Exception:
                # The loop asks for it itself, and meets the error there.
                page.next_requested = False
        on_page(page)

    def _error_arrived(self, exc: BaseException, future: Any) -> None:
        on_error = self._on_error
        if future is self._future and on_error is not None:
            on_error(exc)

    def next_page(self) -> None:
        future = self._future
        if future is None:
            return
        # Noted first: the page may arrive, or fail and be asked for again, at once.
        self._sent_from = self._next_from
        future.start_fetching_next_page()

    def run_ahead(self, may_ask: Callable[[], bool]) -> None:
        self._may_ask = may_ask

    def _retry_policy(self) -> Any:
        # Whom the driver asks: the statement's policy, else the default profile's.
        policy = getattr(self._statement, "retry_policy", None)
        if policy is not None:
            return policy
        try:
            return self._session.get_execution_profile(EXEC_PROFILE_DEFAULT).retry_policy
        except ValueError:  # a cluster configured the legacy way, without profiles
            return self._session.cluster.default_retry_policy

    def resume(self, error: BaseException) -> bool:
        failed = self._future
        if failed is None:
            return False
        consistency = getattr(self._statement, "consistency_level", None)
        if not resend_allowed(
            self._session,
            self._retry_policy(),
            self._statement,
            consistency,
            error,
            retries=self._resumes,
            resumes=self._resumes,
        ):
            return False
        self._resumes += 1
        failed.clear_callbacks()
        self._traces_seen = 0
        self._listen_to(self._send(self._sent_from))
        return True

    def cancel(self) -> None:
        self._may_ask = None
        future, self._future = self._future, None
        if future is not None:
            future.clear_callbacks()
