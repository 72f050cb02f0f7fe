"""Result pages kept as the server sent them, for a decoder that reads them column by column.

A read started ``raw`` on the fast path has its ROWS pages arrive as a :class:`WirePage`:
the driver parses the metadata as usual but leaves the rows as bytes. Whoever iterates
such a page gets the rows the driver would have made (its own decoder runs then, once),
so row by row nothing changes; a columnar decoder reads ``body`` from ``rows_start`` on
instead.

The request's row factory is an :class:`Arrivals`: it hands pages over raw until someone
reads rows, and lets a decoder work on each page on the driver's thread as it arrives
(:attr:`Arrivals.on_arrival`).

This module is the interface only and touches nothing of the driver; the pages
themselves are made, and decoded the driver's way, by :mod:`cassnb._driver.fast.pages`.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

__all__ = ["Arrivals", "PageDecodeError", "WirePage"]


class PageDecodeError(ValueError):
    """A result page whose bytes cannot be decoded."""


class WirePage(Sequence[Any], abc.ABC):
    """One ROWS page whose rows are still bytes: a sequence of rows, decoded when read."""

    __slots__ = ()

    #: The driver's column specs: (keyspace, table, name, CQL type class).
    column_metadata: list[tuple[Any, ...]]
    #: The native protocol version the page was read with.
    protocol_version: int
    #: The request's row factory, once the page has reached it.
    source: Arrivals | None
    #: What a decoder made of the page as it arrived (see Arrivals.on_arrival).
    decoded: Any
    #: Counted in its source's ``raw_pending`` until a decoder claims it.
    raw_pending: bool

    @property
    @abc.abstractmethod
    def body(self) -> bytes:
        """The RESULT body the page was read from."""

    @property
    @abc.abstractmethod
    def rows_start(self) -> int:
        """Where the row count starts in the body."""

    @property
    def column_names(self) -> list[str]:
        """The page's column names."""
        return [column[2] for column in self.column_metadata]

    @property
    def column_types(self) -> list[Any]:
        """The driver's CQL type classes of the page's columns."""
        return [column[3] for column in self.column_metadata]

    @abc.abstractmethod
    def materialize(self) -> list[Any]:
        """Return the page's rows, decoded by the driver once (and by its row factory)."""

    @abc.abstractmethod
    def decode_cells(self, cells: bytes | bytearray, column: tuple[Any, ...]) -> list[Any]:
        """Decode a body of one-column rows of ``column``'s type with the driver's code.

        ``cells`` is a row count and that many cells, as a ROWS body without metadata
        lays them out; the values come back in order, None for NULL.
        """

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...

    @abc.abstractmethod
    def __getitem__(self, index: int | slice) -> Any:
        """A row, or a slice of rows; a prefix of a page not yet read stays in wire form."""


class Arrivals:
    """A raw request's row factory: it passes RawPages through until someone reads rows.

    From then on, each page is decoded into rows when it arrives, as the driver itself
    does. A decoder may instead have each page handed to :attr:`on_arrival` as it
    arrives, on the driver's thread; pages handed over raw before that are still the
    loop's to decode, in order, so pages after them wait for them (:meth:`claim`).
    """

    __slots__ = ("consumer", "lock", "on_arrival", "raw_pending", "row_factory", "rows_wanted")

    def __init__(self, row_factory: Callable[[list[str], list[Any]], Any]) -> None:
        self.row_factory = row_factory
        self.rows_wanted = False
        #: Called with each page with rows as it arrives, once set; must not raise (what
        #: it makes of the page goes to ``page.decoded``).
        self.on_arrival: Callable[[WirePage], None] | None = None
        #: Pages with rows handed over raw that no decoder has claimed yet.
        self.raw_pending = 0
        #: Held while a decoder works on one of the request's pages, on whichever thread.
        self.lock = threading.Lock()
        #: Whatever decodes the request's pages keeps its state for the request here.
        self.consumer: Any = None

    def __call__(self, column_names: list[str], rows: Any) -> Any:
        if not isinstance(rows, WirePage):
            return self.row_factory(column_names, rows)
        rows.source = self
        if self.rows_wanted:
            return rows.materialize()
        if rows:
            on_arrival = self.on_arrival
            # Only this thread adds to raw_pending: once it is 0, it stays 0 meanwhile.
            if on_arrival is None or self.raw_pending:
                with self.lock:
                    self.raw_pending += 1
                    rows.raw_pending = True
                return rows
            on_arrival(rows)
        return rows

    @contextlib.contextmanager
    def claim(self, page: WirePage) -> Iterator[None]:
        """Hold the request's lock while decoding ``page``, which is no longer pending."""
        with self.lock:
            if page.raw_pending:
                page.raw_pending = False
                self.raw_pending -= 1
            yield
