"""Rows and fully fetched result sets."""

from __future__ import annotations

import functools
import keyword
import operator
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, SupportsIndex, overload

if TYPE_CHECKING:
    from uuid import UUID

    from cassandra.query import QueryTrace

__all__ = ["AsyncResultSet", "Row"]


class Row(tuple[Any, ...]):
    """A result row: a tuple whose values are also reachable by column name.

    ``row.name``, ``row["name"]`` and ``row[0]`` all work; everywhere else a row is a
    plain tuple (pandas reads ``_fields`` as column names, as for a namedtuple). A column
    whose name the driver would clean for its own rows (``[applied]``, ``ttl(v)``) is
    also reachable by that clean name (``row.applied``, ``row["ttl_v"]``).
    """

    __slots__ = ()

    _fields: ClassVar[tuple[str, ...]] = ()
    _index: ClassVar[dict[str, int]] = {}

    @overload
    def __getitem__(self, key: str) -> Any: ...

    @overload
    def __getitem__(self, key: SupportsIndex) -> Any: ...

    @overload
    def __getitem__(self, key: slice) -> tuple[Any, ...]: ...

    def __getitem__(self, key: str | SupportsIndex | slice) -> Any:
        if isinstance(key, str):
            try:
                position = self._index[key]
            except KeyError:
                raise KeyError(
                    f"no column {key!r} in this row (columns: {', '.join(self._fields)})"
                ) from None
            return tuple.__getitem__(self, position)
        return tuple.__getitem__(self, key)

    def _asdict(self) -> dict[str, Any]:
        """Return the row as a dict from column name to value."""
        return dict(zip(self._fields, self, strict=True))

    def __repr__(self) -> str:
        pairs = zip(self._fields, self, strict=True)
        values = ", ".join(f"{name}={value!r}" for name, value in pairs)
        return f"Row({values})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_row, (self._fields, tuple(self)))


def _rebuild_row(fields: tuple[str, ...], values: tuple[Any, ...]) -> Row:
    return row_class(fields)(values)


_RESERVED = frozenset(dir(Row)) - {"count", "index"}

# The driver's rows (named tuples) rename a column whose name is no identifier: what is
# not a letter or a digit goes, at the ends, and becomes "_" inside. Code written for
# them reads an LWT's "[applied]" column as ``row.applied``.
_BAD_END = re.compile("[^a-zA-Z0-9_]*$")
_BAD_START = re.compile("^[^a-zA-Z0-9]*")
_BAD_INSIDE = re.compile("[^a-zA-Z0-9]")


def clean_name(name: str) -> str:
    """Return the name the driver's own rows give the column ``name``."""
    return _BAD_INSIDE.sub("_", _BAD_START.sub("", _BAD_END.sub("", name)))


def _attribute_allowed(name: str) -> bool:
    # ``count`` and ``index`` are common column names; a column wins over the tuple
    # method of the same name.
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
        and name not in _RESERVED
    )


@functools.lru_cache(maxsize=1024)
def row_class(fields: tuple[str, ...]) -> type[Row]:
    """Return the Row subclass for these column names, made once per tuple of names."""
    index: dict[str, int] = {}
    for position, name in enumerate(fields):
        index.setdefault(name, position)
    # A clean name never hides a column's own name, nor another column's clean name.
    for position, name in enumerate(fields):
        index.setdefault(clean_name(name) or name, position)
    namespace: dict[str, Any] = {"__slots__": (), "_fields": fields, "_index": index}
    for name, position in index.items():
        if _attribute_allowed(name):
            namespace[name] = property(operator.itemgetter(position), doc=f"Column {name!r}.")
    return type("Row", (Row,), namespace)


class Rows(Sequence[Row]):
    """One page of rows as the driver decoded them (plain tuples); a Row is made when read.

    Plain tuples of plain values are dropped from the garbage collector's watch after its
    first pass, while Row objects never are: built only when read, and usually dropped
    soon after, rows streamed by the hundred thousand do not trigger full collections
    (which stop every thread, the loop's included, for as long as the heap is big).
    """

    __slots__ = ("_make", "_raw")

    def __init__(self, raw: list[tuple[Any, ...]], make: type[Row]) -> None:
        self._raw = raw
        self._make = make

    def __len__(self) -> int:
        return len(self._raw)

    def __iter__(self) -> Iterator[Row]:
        return map(self._make, self._raw)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...

    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(index, slice):
            return list(map(self._make, self._raw[index]))
        return self._make(self._raw[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Rows, list, tuple)):
            return len(self) == len(other) and all(
                a == b for a, b in zip(self, other, strict=False)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_rows, (self._make._fields, self._raw))

    def __repr__(self) -> str:
        return f"<Rows {len(self._raw)} rows of {', '.join(self._make._fields)}>"


def _rebuild_rows(fields: tuple[str, ...], raw: list[tuple[Any, ...]]) -> Rows:
    return Rows(raw, row_class(fields))


def row_factory(column_names: Sequence[str], rows: list[tuple[Any, ...]]) -> Rows:
    """Wrap the driver's decoded rows; installed as the driver's row factory."""
    return Rows(rows, row_class(tuple(column_names)))


def join_pages(pages: list[Sequence[Row]]) -> Sequence[Row]:
    """Return the rows of several pages as one sequence."""
    if len(pages) == 1:
        return pages[0]
    first = pages[0]
    if isinstance(first, Rows) and all(
        isinstance(page, Rows) and page._make is first._make for page in pages
    ):
        raw: list[tuple[Any, ...]] = []
        for page in pages:
            raw.extend(page._raw)  # type: ignore[attr-defined]
        return Rows(raw, first._make)
    # Pages with other columns (the table changed between two of them) keep their own
    # names: each row is made by its page.
    return [row for page in pages for row in page]


class AsyncResultSet:
    """Every row of a result, already fetched: iterate it (``for`` or ``async for``),
    ``len()`` it, index it."""

    __slots__ = (
        "_listed",
        "_rows",
        "_trace",
        "_trace_error",
        "column_names",
        "column_types",
        "paging_state",
        "trace_id",
        "warnings",
    )

    def __init__(
        self,
        rows: Sequence[Row],
        *,
        column_names: list[str] | None = None,
        column_types: list[Any] | None = None,
        paging_state: bytes | None = None,
        warnings: list[str] | None = None,
        trace_id: UUID | None = None,
        trace: QueryTrace | None = None,
        trace_error: Exception | None = None,
    ) -> None:
        self._rows = rows
        self._listed: list[Row] | None = None
        self.column_names: list[str] = list(column_names or [])
        """Names of the result's columns, empty for a statement that returns no rows."""
        self.column_types: list[Any] = list(column_types or [])
        """The driver's CQL type classes of the columns, in order."""
        self.paging_state = paging_state
        """Where the next page starts (``execute_page``); None on the last page."""
        self.warnings: list[str] = list(warnings or [])
        """Warnings the server attached to the response."""
        self.trace_id = trace_id
        """The trace of the (last) request, when it was sent with ``trace=True``."""
        self._trace = trace
        self._trace_error = trace_error

    @property
    def rows(self) -> list[Row]:
        """Every row as a list, as ``all()`` returns it (made once, then the same list)."""
        listed = self._listed
        if listed is None:
            listed = self._listed = list(self._rows)
        return listed

    def get_query_trace(self) -> QueryTrace | None:
        """Return the server's trace of the request, or None when it was not traced.

        ``execute(..., trace=True)`` fetched it already, so this does not wait. When the
        server had not written the trace in time, this raises what fetching it raised
        (``cassandra.query.TraceUnavailable``).
        """
        if self._trace_error is not None:
            # A fresh traceback each time: the stored one says where the fetch failed.
            raise self._trace_error.with_traceback(None)
        return self._trace

    def __aiter__(self) -> _AsyncRows:
        return _AsyncRows(iter(self._rows))

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __bool__(self) -> bool:
        return bool(self._rows)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...

    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(index, slice):
            return list(self._rows[index])
        return self._rows[index]

    def one(self) -> Row | None:
        """Return the first row, or None when there is none."""
        return self._rows[0] if self._rows else None

    def all(self) -> list[Row]:
        """Return every row as a list."""
        return list(self._rows)

    def __repr__(self) -> str:
        more = "" if self.paging_state is None else ", more pages"
        return f"<AsyncResultSet {len(self._rows)} rows, columns {self.column_names}{more}>"


class _AsyncRows:
    """The rows of a fetched result for ``async for``; they are all here, so none waits."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Iterator[Row]) -> None:
        self._rows = rows

    def __aiter__(self) -> _AsyncRows:
        return self

    async def __anext__(self) -> Row:
        try:
            return next(self._rows)
        except StopIteration:
            raise StopAsyncIteration from None
