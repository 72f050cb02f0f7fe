"""Query results streamed into pandas: a frame per page, or one frame page by page.

``read_cql`` reads a result page by page: each page becomes typed columns (dtypes from
the result metadata, see ``cassnb._frames.types``), and the columns are joined once at
the end, so no list of every row is ever held (the compiled decoder lays a read's numpy
columns out end to end, so that joining them copies nothing).

A statement that returns no rows (DDL, INSERT, UPDATE, ...) reads back as an empty
DataFrame with no columns; a SELECT that matches nothing reads back as an empty frame
with the result's columns and dtypes.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.util
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from tqdm.std import tqdm

from cassnb._core.errors import ConfigurationError, translate
from cassnb._core.stream import StreamConfig, run_ahead
from cassnb._driver import PageDecodeError
from cassnb._frames import columnar as _columnar
from cassnb._frames.follow import FrameColumns
from cassnb._frames.join import built, join_adjacent
from cassnb._frames.types import (
    DTYPE_BACKENDS,
    Column,
    ColumnwiseDecoder,
    DtypeBackend,
    FrameSchema,
    PageDecoder,
)

if TYPE_CHECKING:
    from cassnb._core.session import AsyncSession, Query
    from cassnb._core.stream import AsyncStreamingResultSet

# Besides the public functions: the pieces read_table, to_dask and %%cql build frames with.
__all__ = [
    "Progress",
    "bar_class",
    "check_backend",
    "collect_pages",
    "concat_chunks",
    "frame_of",
    "read_cql",
    "stream_frames",
    "stream_to_dataframe",
]

#: The page -> columns implementation every frame in this module is built with: the
#: compiled one when it is built, else the pure-Python one.
page_decoder: PageDecoder = _columnar.page_decoder(ColumnwiseDecoder())


def check_backend(dtype_backend: str) -> DtypeBackend:
    for backend in DTYPE_BACKENDS:
        if dtype_backend == backend:
            return backend
    raise ConfigurationError(
        f"dtype_backend must be one of {', '.join(map(repr, DTYPE_BACKENDS))}, "
        f"not {dtype_backend!r}"
    )


def frame_of(names: Sequence[str], arrays: Sequence[Column]) -> pd.DataFrame:
    if not names:
        return pd.DataFrame()
    # Keyed by position so that duplicate column names (SELECT a, a) survive.
    frame = pd.DataFrame(dict(enumerate(arrays)), copy=False)
    frame.columns = pd.Index(list(names))
    return frame


def concat_chunks(chunks: list[Column]) -> Column:
    joined = join_adjacent(chunks)
    if joined is not None:
        return joined
    chunks = built(chunks)
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(chunks)  # type: ignore[arg-type]
    # The ExtensionArray interface's own concatenation; pandas-stubs does not declare it.
    return cast(Column, cast(Any, type(first))._concat_same_type(chunks))


def _frame_columns(
    stream: AsyncStreamingResultSet, dtype_backend: DtypeBackend, wanted: Sequence[str] | None
) -> FrameColumns:
    """Start a frame's columns from the page the stream handed out last (or its first)."""
    names = stream.page_column_names
    types = stream.page_column_types
    if names is None or types is None:
        names, types = stream.column_names or [], stream.column_types or []
    return FrameColumns(names, types, dtype_backend, wanted)


def _page_columns(stream: AsyncStreamingResultSet) -> tuple[list[str], list[Any]]:
    """The columns of the page the stream handed out last: each page has its own."""
    return stream.page_column_names or [], stream.page_column_types or []


def _decoding(
    decode: Callable[[Sequence[Any], FrameSchema], list[Column]],
) -> Callable[[Sequence[Any], FrameSchema], list[Column]]:
    """Return ``decode`` raising cassnb's error for a page whose bytes cannot be decoded."""

    def decoded(page: Sequence[Any], schema: FrameSchema) -> list[Column]:
        try:
            return decode(page, schema)
        except PageDecodeError as exc:
            # A page in wire form that the row-wise decoder reads the driver's way.
            raise translate(exc) from exc

    return decoded


def bar_class() -> type[tqdm[Any]]:
    """Return tqdm's widget bar inside a Jupyter kernel that has ipywidgets, else the text bar.

    What tqdm.auto does, minus its warning when ipywidgets is missing: the text bar
    works in a notebook too, on stderr.
    """
    if "ipykernel.zmqshell" in sys.modules and importlib.util.find_spec("ipywidgets"):
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    return tqdm


class Progress:
    """A tqdm bar of rows read, pages read and rows per second; silent when disabled."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        bar = bar_class() if enabled else None
        self._bar = bar(total=total, unit=" rows", unit_scale=True) if bar else None
        self._pages = 0

    def update(self, rows: int) -> None:
        if self._bar is not None:
            self._pages += 1
            self._bar.set_postfix(pages=self._pages, refresh=False)
            self._bar.update(rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.asynccontextmanager
async def _pages(stream: AsyncStreamingResultSet) -> AsyncIterator[AsyncIterator[Sequence[Any]]]:
    pages = stream.pages()
    try:
        yield pages
    finally:
        # Leaving early must not leave a suspended generator for the collector to finish.
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


@contextlib.contextmanager
def _untraced_by_gc() -> Iterator[Callable[[], None]]:
    """Yield a function that hides every object alive from the cyclic GC until the block ends.

    A frame's object columns (UUIDs, lists, ...) are millions of GC-tracked objects that
    live on; each full collection during the read would walk them all again, which costs
    more than the read itself. Frozen objects are skipped (``gc.freeze``) and given back to
    the collector at the end. When something else has frozen objects, or the collector is
    off, nothing is changed.
    """
    if not gc.isenabled() or gc.get_freeze_count():
        yield _nothing
        return
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


def _nothing() -> None:
    return None


async def collect_pages(
    stream: AsyncStreamingResultSet,
    dtype_backend: DtypeBackend,
    *,
    wanted: Sequence[str] | None = None,
    max_rows: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    columns: FrameColumns | None = None
    chunks: list[list[Column]] = []
    rows = 0
    # Every page ends up in the one frame: a decoder that can lay them out for a join
    # without copies is told so, and may decode them as they arrive when each is read
    # whole.
    decode: Callable[[Sequence[Any], FrameSchema], list[Column]] = page_decoder.decode
    decode_for_join = getattr(page_decoder, "decode_for_join", None)
    if decode_for_join is not None:
        decode = functools.partial(decode_for_join, ahead=max_rows is None)
    decode = _decoding(decode)
    # Once pages are decoded as they arrive, the loop has nothing to do per page: the
    # driver's thread may then fetch them back to back and hand them over in batches.
    decoded_ahead = getattr(page_decoder, "decoded_ahead", None) if max_rows is None else None
    async with _pages(stream) as pages:
        with _untraced_by_gc() as spare_kept_objects:
            async for page in pages:
                if columns is None:
                    columns = _frame_columns(stream, dtype_backend, wanted)
                # Each page by its own columns: the table may change while it is read.
                page_columns = columns.follow(*_page_columns(stream))
                for added in columns.codecs[len(chunks) :]:
                    # A column the result gained: NULL in the rows read before it.
                    chunks.append([added.missing(rows)] if rows else [])
                if max_rows is not None and rows + len(page) > max_rows:
                    page = page[: max_rows - rows]
                if page:
                    if decoded_ahead is not None and decoded_ahead(page):
                        run_ahead(stream)
                        decoded_ahead = None
                    arrays = columns.place(
                        page_columns, decode(page, page_columns.schema), len(page)
                    )
                    for column, array in zip(chunks, arrays, strict=True):
                        column.append(array)
                    spare_kept_objects()
                    rows += len(page)
                    if progress is not None:
                        progress.update(len(page))
                if max_rows is not None and rows >= max_rows:
                    break
    if columns is None:
        columns = _frame_columns(stream, dtype_backend, wanted)
    if rows == 0:
        return frame_of(columns.names, columns.empty())
    arrays = []
    for column in chunks:
        arrays.append(concat_chunks(column))
        # Free each column's pages as soon as it is joined: peak memory stays near one frame.
        column.clear()
    return frame_of(columns.names, arrays)


async def stream_frames(
    stream: AsyncStreamingResultSet, *, dtype_backend: DtypeBackend = "numpy_nullable"
) -> AsyncIterator[pd.DataFrame]:
    """Yield one DataFrame per page of ``stream``; an empty result yields one empty frame.

    Each frame has the columns of the frames before it, and any the result gained since.
    """
    backend = check_backend(dtype_backend)
    columns: FrameColumns | None = None
    empty = True
    decode = _decoding(page_decoder.decode)
    async with _pages(stream) as pages:
        async for page in pages:
            if columns is None:
                columns = _frame_columns(stream, backend, None)
            page_columns = columns.follow(*_page_columns(stream))
            if page:
                empty = False
                arrays = decode(page, page_columns.schema)
                yield frame_of(columns.names, columns.place(page_columns, arrays, len(page)))
    if empty:
        # So that pd.concat over the frames always has the result's columns and dtypes.
        columns = columns or _frame_columns(stream, backend, None)
        yield frame_of(columns.names, columns.empty())


async def stream_to_dataframe(
    stream: AsyncStreamingResultSet, *, dtype_backend: DtypeBackend = "numpy_nullable"
) -> pd.DataFrame:
    """Read every remaining page of ``stream`` into one DataFrame."""
    return await collect_pages(stream, check_backend(dtype_backend))


def _as_names(value: str | Sequence[str] | None, argument: str) -> list[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) for name in names):
        raise ConfigurationError(f"{argument} must be a column name or a list of column names")
    return names


async def read_cql(
    query: Query,
    session: AsyncSession | None = None,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    fetch_size: int = 5000,
    max_rows: int | None = None,
    columns: Sequence[str] | None = None,
    index_col: str | Sequence[str] | None = None,
    dtype_backend: DtypeBackend = "numpy_nullable",
    progress: bool = False,
) -> pd.DataFrame:
    """Run a CQL query and return its rows as a DataFrame typed from the result metadata.

    ``params`` is a sequence for ``?`` markers or a mapping for ``:name`` markers; a string
    query with params is prepared first. ``max_rows`` stops reading (and closes the stream)
    once that many rows arrived; ``columns`` keeps those result columns in that order;
    ``index_col`` makes one or more columns the index. A statement that returns no rows
    gives an empty DataFrame with no columns.
    """
    backend = check_backend(dtype_backend)
    if isinstance(fetch_size, bool) or not isinstance(fetch_size, int) or fetch_size < 1:
        raise ConfigurationError(f"fetch_size must be a positive int, not {fetch_size!r}")
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0
    ):
        raise ConfigurationError(f"max_rows must be None or an int >= 0, not {max_rows!r}")
    wanted = _as_names(columns, "columns")
    index = _as_names(index_col, "index_col")
    if wanted is not None and index is not None:
        wanted = [*index, *(name for name in wanted if name not in index)]
    if session is None:
        from cassnb._core.default import get_default_session

        session = get_default_session()
    statement = query
    if params is not None and isinstance(query, str):
        statement = await session.prepare(query)
    if max_rows is not None:
        # Ask for no more than is wanted: a small max_rows should not fetch a whole page.
        fetch_size = max(1, min(fetch_size, max_rows))
    progress_bar = Progress(progress, max_rows)
    try:
        stream = await session.execute_stream(
            statement, params, stream_config=StreamConfig(fetch_size=fetch_size)
        )
        async with stream:
            frame = await collect_pages(
                stream, backend, wanted=wanted, max_rows=max_rows, progress=progress_bar
            )
    finally:
        progress_bar.close()
    if index is not None:
        frame = frame.set_index(index)
    return frame
