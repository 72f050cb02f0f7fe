"""Streaming a result page by page, with the next page fetched while the current one is used."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import os
import sys
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from cassnb._core import registry
from cassnb._core.bridge import PageFeed, post, run_blocking
from cassnb._core.errors import ConfigurationError, ConnectionError, QueryTimeout, translate
from cassnb._core.results import Row, Rows
from cassnb._driver import Page, PageDecodeError, Read

if TYPE_CHECKING:
    from uuid import UUID

    import pandas as pd
    from cassandra.query import QueryTrace

    from cassnb._core.session import AsyncSession

__all__ = ["AsyncStreamingResultSet", "StreamConfig", "run_ahead"]

# Frames from these directories are cassnb's own (every layer's) or asyncio's, not the user's.
_NOT_USER_CODE = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep,
)
_END: Any = object()
# The native protocol sends the page size as a signed 32-bit int; a larger one fails in the
# driver while it encodes the request, which it reports as the host failing.
MAX_FETCH_SIZE = 2**31 - 1
_DECODE_ON_LOOP_BELOW = 256

logger = logging.getLogger("cassnb")


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    """How a stream fetches: page size, progress callback, limits and read-ahead.

    ``page_callback(page_number, rows_in_page)`` is called as each page is handed to the
    consumer, pages numbered from 1 (it may be a coroutine function). A query that returns
    no rows at all still ran and answered: that counts as one page of 0 rows
    (``page_callback(1, 0)``), though ``pages()`` yields no empty page; an empty page that
    a server may send after others does not count. ``max_pages`` stops after that many
    pages. ``timeout_seconds`` bounds the whole stream, from opening to the last page.
    ``prefetch`` is how many pages may wait, already fetched, while the consumer works on
    the current one; 0 requests a page only when the consumer asks.
    """

    fetch_size: int = 1000
    page_callback: Callable[[int, int], object] | None = None
    max_pages: int | None = None
    timeout_seconds: float | None = None
    prefetch: int = 1

    def __post_init__(self) -> None:
        size = self.fetch_size
        if not isinstance(size, int) or not 1 <= size <= MAX_FETCH_SIZE:
            raise ConfigurationError(
                f"fetch_size must be a positive int up to {MAX_FETCH_SIZE}, not {size!r}"
            )
        if self.max_pages is not None and (
            not isinstance(self.max_pages, int) or self.max_pages < 1
        ):
            raise ConfigurationError(f"max_pages must be a positive int, not {self.max_pages!r}")
        if self.timeout_seconds is not None and not self.timeout_seconds > 0:
            raise ConfigurationError(
                f"timeout_seconds must be positive, not {self.timeout_seconds!r}"
            )
        if not isinstance(self.prefetch, int) or self.prefetch < 0:
            raise ConfigurationError(f"prefetch must be an int >= 0, not {self.prefetch!r}")
        if self.page_callback is not None and not callable(self.page_callback):
            raise ConfigurationError("page_callback must be callable")


@functools.lru_cache(maxsize=512)
def _is_user_code(filename: str) -> bool:
    return not os.path.abspath(filename).startswith(_NOT_USER_CODE)


def _origin() -> str:
    """Describe where user code opened a stream: its first frames outside cassnb."""
    frames: list[str] = []
    frame = sys._getframe(1)
    while frame is not None and len(frames) < 3:
        filename = frame.f_code.co_filename
        if _is_user_code(filename):
            frames.append(f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        frame = frame.f_back  # type: ignore[assignment]
    return " <- ".join(frames) if frames else "an unknown place"


class _State:
    """Loop-side state of one stream; the driver's thread only reaches it through a feed."""

    __slots__ = (
        "__weakref__",
        "ahead",
        "buffer",
        "closed_because",
        "column_names",
        "column_types",
        "error",
        "exhausted",
        "feed",
        "loop",
        "max_pages",
        "page_columns",
        "pages_received",
        "paging_state",
        "prefetch",
        "requesting",
        "trace_ids",
        "waiter",
        "warnings",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, config: StreamConfig) -> None:
        self.loop = loop
        #: Pages received and not yet handed out, with their own column names and types.
        self.buffer: deque[tuple[Sequence[Row], list[str], list[Any], bytes | None]] = deque()
        #: Where the result goes on after the last page handed to the consumer (never a
        #: page fetched ahead of it).
        self.paging_state: bytes | None = None
        self.requesting = True
        self.exhausted = False
        self.error: BaseException | None = None
        self.closed_because: str | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.pages_received = 0
        self.max_pages = config.max_pages
        self.prefetch = config.prefetch
        self.column_names: list[str] | None = None
        self.column_types: list[Any] | None = None
        #: The column names and types of the page last handed out.
        self.page_columns: tuple[list[str], list[Any]] | None = None
        self.feed: PageFeed | None = None
        #: The read asks for pages on the driver's thread, as far as the feed has room.
        self.ahead = False
        self.warnings: list[str] = []
        self.trace_ids: list[UUID] = []

    def attach(self, read: Read) -> None:
        self.feed = PageFeed(read, self.loop, self.on_page, self.on_error)

    def on_page(self, page: Page) -> None:
        if self.closed_because is not None:
            return
        # A feed running ahead has already asked for the next page.
        self.requesting = page.next_requested
        names = list(page.column_names or [])
        types = list(page.column_types or [])
        if self.column_names is None:
            self.column_names = names
            self.column_types = types
        for warning in page.warnings or ():
            # Every page of a read may repeat a warning: it is kept once.
            if warning not in self.warnings:
                self.warnings.append(warning)
        if page.trace_id is not None:
            self.trace_ids.append(page.trace_id)
        # The server may answer with an empty page (typically the last one); consumers
        # never see those, and they do not count as pages.
        if page.rows:
            self.pages_received += 1
            # A schema change between two pages changes the columns of the pages after it.
            self.buffer.append((page.rows, names, types, page.paging_state))
        if not page.has_more or (
            self.max_pages is not None and self.pages_received >= self.max_pages
        ):
            self.exhausted = True
            self.detach()
        else:
            self.maybe_prefetch()
        self.wake()

    def run_ahead(self) -> None:
        """Let the driver's thread fetch the next pages back to back, as far as the
        feed's bound allows."""
        if self.feed is not None and self.max_pages is None:
            self.ahead = True
            self.feed.run_ahead()

    def on_error(self, exc: BaseException) -> None:
        if self.closed_because is not None:
            return
        if self.resume(exc):
            logger.info("a stream's page request failed (%s); asked again from its last page", exc)
            return
        self.requesting = False
        self.error = exc
        self.detach()
        self.wake()

    def resume(self, exc: BaseException) -> bool:
        """Ask for the failed page again, where the statement's retry policy says so.

        The driver has put every other failure to the policy already; a client-side
        timeout (a coordinator that stopped answering) it reports without asking. Sent
        again from the last page received, on a fresh query plan, no row is lost or
        repeated; each time counts as one of the policy's retries.
        """
        feed = self.feed
        if feed is None:
            return False
        try:
            return feed.resume(exc)
        except Exception:
            # Could not even send it (the session is shutting down): report the failure.
            return False

    def take(self) -> Sequence[Row]:
        """Hand the consumer the oldest page waiting, and ask for more if there is room."""
        rows, names, types, self.paging_state = self.buffer.popleft()
        self.page_columns = (names, types)
        feed = self.feed
        if feed is not None:
            # Counted from the first page, so that the count matches the pages handed over.
            feed.consumed(rows)
        self.maybe_prefetch()
        return rows

    def request(self) -> None:
        feed = self.feed
        if feed is None:
            return
        self.requesting = True
        try:
            feed.request_next()
        except Exception as exc:
            self.requesting = False
            self.error = exc
            self.detach()

    def maybe_prefetch(self) -> None:
        if (
            not self.requesting
            and not self.exhausted
            and self.error is None
            and self.closed_because is None
            and self.has_room()
        ):
            self.request()

    def has_room(self) -> bool:
        feed = self.feed
        if self.ahead and feed is not None:
            return feed.has_room()
        return len(self.buffer) < self.prefetch

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def detach(self) -> None:
        feed, self.feed = self.feed, None
        if feed is not None:
            feed.detach()

    def close(self, because: str) -> None:
        """Stop all fetching; safe from any thread."""
        self.closed_because = because
        self.detach()
        self.buffer.clear()
        if self.waiter is not None:
            post(self.loop, self.wake)


class AsyncStreamingResultSet:
    """Rows of a query fetched page by page: ``async for row in stream``.

    Open one with ``await session.execute_stream(...)`` and close it with ``async with``
    or ``await stream.close()``. A stream that is dropped unclosed is closed when
    collected, with a ``ResourceWarning`` naming where it was opened. Cancelling the task
    that awaits a page closes the stream at once; the server may still finish computing
    the page it was working on.
    """

    def __init__(
        self,
        read: Read,
        *,
        config: StreamConfig,
        session: AsyncSession | None = None,
        origin: str | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._finished = False
        self._config = config
        self._session = session
        self._origin = origin or _origin()
        self._rows: Iterator[Row] | None = None
        self._page_number = 0
        self._rows_fetched = 0
        self._deadline = (
            None if config.timeout_seconds is None else loop.time() + config.timeout_seconds
        )
        self._state = _State(loop, config)
        self._state.attach(read)
        registry.track_stream(self)

    @property
    def page_number(self) -> int:
        """How many pages have been handed to the consumer so far (an empty result: 1)."""
        return self._page_number

    @property
    def rows_fetched(self) -> int:
        """How many rows have been handed to the consumer so far."""
        return self._rows_fetched

    @property
    def total_rows_fetched(self) -> int:
        """The same as :attr:`rows_fetched`."""
        return self._rows_fetched

    @property
    def paging_state(self) -> bytes | None:
        """Where the result goes on after the last page handed to the consumer (for
        ``session.execute_page(..., paging_state=...)``). None before the first page, and
        after the last; a page fetched ahead and not handed over yet never counts."""
        return self._state.paging_state

    @property
    def column_names(self) -> list[str] | None:
        """The result's column names, known once the first page has arrived.

        Those of the first page: when the table's columns change while the result is
        read, later pages have others (:attr:`page_column_names`).
        """
        return self._state.column_names

    @property
    def column_types(self) -> list[Any] | None:
        """The driver's CQL type classes of the columns, known once the first page arrived."""
        return self._state.column_types

    @property
    def page_column_names(self) -> list[str] | None:
        """The column names of the page last handed out (None before the first).

        Every page carries its own: a column added to or dropped from the table while the
        result is read appears in, or goes from, the pages read after the change.
        """
        columns = self._state.page_columns
        return None if columns is None else columns[0]

    @property
    def page_column_types(self) -> list[Any] | None:
        """The driver's CQL type classes of the columns of the page last handed out."""
        columns = self._state.page_columns
        return None if columns is None else columns[1]

    @property
    def warnings(self) -> list[str]:
        """The server's warnings about the pages received so far, each once, in order."""
        return list(self._state.warnings)

    @property
    def trace_id(self) -> UUID | None:
        """The trace of the first request, for a stream opened with ``trace=True``."""
        trace_ids = self._state.trace_ids
        return trace_ids[0] if trace_ids else None

    @property
    def trace_ids(self) -> list[UUID]:
        """The trace of every page's request so far (each page is a traced request)."""
        return list(self._state.trace_ids)

    async def get_all_query_traces(self, max_wait_per: float = 2.0) -> list[QueryTrace]:
        """Fetch the traces of :attr:`trace_ids` from the cluster, waiting at most
        ``max_wait_per`` seconds for each (the server writes a trace after answering)."""
        session = self._session
        if session is None or not self._state.trace_ids:
            return []
        return await session.query_traces(self.trace_ids, max_wait_per=max_wait_per)

    @property
    def is_closed(self) -> bool:
        """Whether the stream holds no more driver resources."""
        return self._finished or self._state.closed_because is not None

    def __aiter__(self) -> AsyncStreamingResultSet:
        return self

    async def __anext__(self) -> Row:
        rows = self._rows
        if rows is not None:
            row = next(rows, _END)
            if row is not _END:
                return cast(Row, row)
        while (page := await self._next_page()) is not None:
            self._rows = rows = iter(await self._decoded(page))
            row = next(rows, _END)
            if row is not _END:
                return cast(Row, row)
        self._rows = None
        raise StopAsyncIteration

    async def _decoded(self, page: Sequence[Row]) -> Sequence[Row]:
        """Return the page's rows, decoding a page still in wire form off the loop."""
        if isinstance(page, (list, Rows)):
            return page
        # A page kept as the server sent it decodes when first read; a big one would hold
        # the loop for as long, so it is decoded on a worker thread.
        try:
            if len(page) < _DECODE_ON_LOOP_BELOW:
                return list(page)
            return await run_blocking(list, page)
        except asyncio.CancelledError:
            self._close_now("cancelled")
            raise
        except PageDecodeError as exc:
            raise translate(exc) from exc

    def pages(self) -> AsyncIterator[Sequence[Row]]:
        """Iterate over the pages themselves, each a sequence of rows.

        A page is a list, or a page kept in wire form that decodes when first read (the
        frames layer decodes those column by column instead).
        """
        return _Pages(self)

    async def _next_page(self) -> Sequence[Row] | None:
        state = self._state
        waited = False
        while True:
            if self._finished:
                return None
            if state.closed_because is not None:
                if state.closed_because == "closed":
                    return None
                raise ConnectionError(
                    f"the stream was closed ({state.closed_because}) after "
                    f"{self._rows_fetched} rows"
                )
            if self._deadline is not None and state.loop.time() >= self._deadline:
                self._expire()
            if state.buffer:
                if not waited:
                    # Let other tasks run between pages even when the next one is
                    # already here, so a fast consumer never starves the loop.
                    await self._wait(yield_only=True)
                    waited = True
                    continue
                break
            if state.error is not None:
                error = state.error
                self._finish()
                raise translate(error) from error
            if state.exhausted:
                self._finish()
                if self._page_number == 0:
                    # The query ran and returned nothing: that was one page, of 0 rows.
                    await self._count_page(0)
                return None
            if not state.requesting:
                state.request()
                continue
            await self._wait()
            waited = True
        rows = state.take()
        await self._count_page(len(rows))
        return rows

    async def _count_page(self, rows: int) -> None:
        """Count a page handed to the consumer, and tell the page callback."""
        self._page_number += 1
        self._rows_fetched += rows
        callback = self._config.page_callback
        if callback is not None:
            outcome = callback(self._page_number, rows)
            if inspect.isawaitable(outcome):
                await outcome

    async def _wait(self, *, yield_only: bool = False) -> None:
        """Wait for news from the driver (or only let other tasks run once)."""
        state = self._state
        try:
            if yield_only:
                await asyncio.sleep(0)
                return
            waiter: asyncio.Future[None] = state.loop.create_future()
            state.waiter = waiter
            if self._deadline is None:
                await waiter
            else:
                async with asyncio.timeout_at(self._deadline):
                    await waiter
        except TimeoutError:
            self._expire()
        except asyncio.CancelledError:
            self._close_now("cancelled")
            raise
        finally:
            state.waiter = None

    def _expire(self) -> None:
        self._close_now("timed out")
        raise QueryTimeout(
            f"the stream did not finish within timeout_seconds={self._config.timeout_seconds} "
            f"({self._rows_fetched} rows fetched)"
        )

    def _finish(self) -> None:
        self._finished = True
        self._state.detach()
        registry.forget_stream(self)

    def _close_now(self, because: str = "closed by close_all") -> bool:
        """Stop fetching and drop buffered pages; return whether it was still open."""
        if self.is_closed:
            return False
        self._state.close(because)
        self._rows = None
        registry.forget_stream(self)
        return True

    async def close(self) -> None:
        """Stop fetching and release the stream; closing twice is harmless."""
        self._close_now("closed")

    async def cancel(self) -> None:
        """The same as :meth:`close`: stop fetching; iterating afterwards ends at once."""
        await self.close()

    async def __aenter__(self) -> AsyncStreamingResultSet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def frames(self) -> AsyncIterator[pd.DataFrame]:
        """Iterate over one pandas DataFrame per page, typed from the CQL metadata."""
        frames = importlib.import_module("cassnb._frames.read")
        return cast("AsyncIterator[pd.DataFrame]", frames.stream_frames(self))

    async def to_dataframe(self) -> pd.DataFrame:
        """Read the rest of the stream into one pandas DataFrame, page by page."""
        frames = importlib.import_module("cassnb._frames.read")
        return cast("pd.DataFrame", await frames.stream_to_dataframe(self))

    def __repr__(self) -> str:
        if self._finished:
            status = "finished"
        elif self._state.closed_because is not None:
            status = self._state.closed_because
        else:
            status = "open"
        return (
            f"<AsyncStreamingResultSet {status}, page {self._page_number}, "
            f"{self._rows_fetched} rows>"
        )

    def __del__(self) -> None:
        if getattr(self, "_state", None) is None or self.is_closed:
            return
        self._close_now("garbage collected")
        warnings.warn(
            f"unclosed stream opened at {self._origin}; use 'async with' or 'await stream.close()'",
            ResourceWarning,
            stacklevel=1,
            source=self,
        )


class _Pages:
    """The pages of a stream, as lists of rows."""

    __slots__ = ("_stream",)

    def __init__(self, stream: AsyncStreamingResultSet) -> None:
        self._stream = stream

    def __aiter__(self) -> _Pages:
        return self

    async def __anext__(self) -> Sequence[Row]:
        stream = self._stream
        rest = stream._rows
        if rest is not None:
            stream._rows = None
            remainder = list(rest)
            if remainder:
                return remainder
        page = await stream._next_page()
        if page is None:
            raise StopAsyncIteration
        return page


def run_ahead(stream: AsyncStreamingResultSet) -> None:
    """Let ``stream``'s read ask for each next page as soon as the previous one arrives.

    For a reader in the layers above that takes every page as it comes (the frames
    layer's whole reads); how many pages may wait for it is bounded by the bridge's
    ``AHEAD_PAGES`` and ``AHEAD_BYTES``.
    """
    stream._state.run_ahead()
