"""Query results streamed into pandas, and DataFrames written back with prepared inserts.

``read_cql`` reads a result page by page: each page becomes typed columns (dtypes from
the result metadata, see ``cassnb._types``), and the columns are joined once at the end,
so no list of every row is ever held (the compiled decoder lays a read's numpy columns
out end to end, so that joining them copies nothing). ``write_frame`` binds a frame column-wise to a
prepared INSERT and runs it at bounded concurrency; missing values are left unset, so a
write never creates tombstones unless asked to.

A statement that returns no rows (DDL, INSERT, UPDATE, ...) reads back as an empty
DataFrame with no columns; a SELECT that matches nothing reads back as an empty frame
with the result's columns and dtypes.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import functools
import gc
import importlib.util
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

import numpy as np
import pandas as pd
from cassandra.query import UNSET_VALUE
from cassandra.util import Date, Duration, OrderedMap
from tqdm.std import tqdm

try:
    import pyarrow as pa
except ImportError:  # only ArrowDtype columns need it, and those come with it
    pa = None

from cassnb import _columnar
from cassnb._errors import CassandraError, ConfigurationError, QueryError
from cassnb._types import (
    DTYPE_BACKENDS,
    Column,
    ColumnwiseDecoder,
    DtypeBackend,
    FrameSchema,
    PageDecoder,
    cql_kind,
    identity,
)

if TYPE_CHECKING:
    from cassnb._session import AsyncSession, Consistency, Query
    from cassnb._stream import AsyncStreamingResultSet

# Besides the public functions: the pieces read_table, to_dask and %%cql build frames with.
__all__ = [
    "Progress",
    "WriteFrameError",
    "bar_class",
    "check_backend",
    "collect_pages",
    "concat_chunks",
    "frame_of",
    "read_cql",
    "stream_frames",
    "stream_to_dataframe",
    "table_parts",
    "write_frame",
]

Missing: TypeAlias = Literal["unset", "null"]

#: The page -> columns implementation every frame in this module is built with: the
#: compiled one when it is built, else the pure-Python one.
page_decoder: PageDecoder = _columnar.page_decoder(ColumnwiseDecoder())


# --- reading -----------------------------------------------------------------------------


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
    joined = _columnar.join_adjacent(chunks)
    if joined is not None:
        return joined
    chunks = _columnar.built(chunks)
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(chunks)  # type: ignore[arg-type]
    # The ExtensionArray interface's own concatenation; pandas-stubs does not declare it.
    return cast(Column, cast(Any, type(first))._concat_same_type(chunks))


def _result_schema(
    stream: AsyncStreamingResultSet,
    dtype_backend: DtypeBackend,
    wanted: Sequence[str] | None,
) -> FrameSchema:
    names: Sequence[str] = stream.column_names or ()
    types: Sequence[Any] = stream.column_types or ()
    if wanted is None:
        return FrameSchema.from_metadata(names, types, dtype_backend)
    position: dict[str, int] = {}
    for index, name in enumerate(names):
        position.setdefault(name, index)
    unknown = [name for name in wanted if name not in position]
    if unknown:
        raise ConfigurationError(
            f"column(s) {', '.join(map(repr, unknown))} not in the result; "
            f"it has {', '.join(map(repr, names)) or 'no columns'}"
        )
    return FrameSchema.from_metadata(names, types, dtype_backend, [position[n] for n in wanted])


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
    schema: FrameSchema | None = None
    chunks: list[list[Column]] = []
    rows = 0
    # Every page ends up in the one frame: a decoder that can lay them out for a join
    # without copies is told so, and may decode them as they arrive when each is read
    # whole.
    decode: Callable[[Sequence[Any], FrameSchema], list[Column]] = page_decoder.decode
    decode_for_join = getattr(page_decoder, "decode_for_join", None)
    if decode_for_join is not None:
        decode = functools.partial(decode_for_join, ahead=max_rows is None)
    # Once pages are decoded as they arrive, the loop has nothing to do per page: the
    # driver's thread may then fetch them back to back and hand them over in batches.
    decoded_ahead = getattr(page_decoder, "decoded_ahead", None) if max_rows is None else None
    async with _pages(stream) as pages:
        with _untraced_by_gc() as spare_kept_objects:
            async for page in pages:
                if schema is None:
                    schema = _result_schema(stream, dtype_backend, wanted)
                    chunks = [[] for _ in schema.names]
                if max_rows is not None and rows + len(page) > max_rows:
                    page = page[: max_rows - rows]
                if page:
                    if decoded_ahead is not None and decoded_ahead(page):
                        stream._run_ahead()
                        decoded_ahead = None
                    for column, array in zip(chunks, decode(page, schema), strict=True):
                        column.append(array)
                    spare_kept_objects()
                    rows += len(page)
                    if progress is not None:
                        progress.update(len(page))
                if max_rows is not None and rows >= max_rows:
                    break
    if schema is None:
        schema = _result_schema(stream, dtype_backend, wanted)
    if rows == 0:
        return frame_of(schema.names, schema.empty_columns())
    arrays = []
    for column in chunks:
        arrays.append(concat_chunks(column))
        # Free each column's pages as soon as it is joined: peak memory stays near one frame.
        column.clear()
    return frame_of(schema.names, arrays)


async def stream_frames(
    stream: AsyncStreamingResultSet, *, dtype_backend: DtypeBackend = "numpy_nullable"
) -> AsyncIterator[pd.DataFrame]:
    """Yield one DataFrame per page of ``stream``; an empty result yields one empty frame."""
    backend = check_backend(dtype_backend)
    schema: FrameSchema | None = None
    empty = True
    async with _pages(stream) as pages:
        async for page in pages:
            if schema is None:
                schema = _result_schema(stream, backend, None)
            if page:
                empty = False
                yield frame_of(schema.names, page_decoder.decode(page, schema))
    if empty:
        # So that pd.concat over the frames always has the result's columns and dtypes.
        schema = schema or _result_schema(stream, backend, None)
        yield frame_of(schema.names, schema.empty_columns())


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
        from cassnb._registry import get_default_session

        session = get_default_session()
    from cassnb._stream import StreamConfig

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


# --- writing -----------------------------------------------------------------------------


class WriteFrameError(QueryError):
    """A row of a frame could not be written; says which, and how many rows were written.

    ``row_label`` is the row's index label, ``row_position`` its position (0-based),
    ``column`` the column at fault when known, and ``rows_written`` how many rows had been
    written when the failure stopped the writing. Rows are written concurrently, so those
    are not necessarily the rows before ``row_position``.
    """

    def __init__(
        self,
        message: str,
        *,
        row_position: int | None,
        row_label: Any,
        column: str | None,
        rows_written: int,
    ) -> None:
        super().__init__(message)
        self.row_position = row_position
        self.row_label = row_label
        self.column = column
        self.rows_written = rows_written


_IDENTIFIER: Final = re.compile(r'"((?:[^"]|"")*)"|([A-Za-z_][A-Za-z0-9_]*)')
_BIND_CHUNK: Final = 4096


def quote_identifier(name: str) -> str:
    """Return ``name`` as a quoted CQL identifier, which keeps its exact case."""
    return '"' + name.replace('"', '""') + '"'


def table_parts(table: str) -> list[str]:
    """Split ``ks.tbl`` / ``"Ks"."Tbl"`` into exact names, folding unquoted parts to lower case."""
    parts: list[str] = []
    position = 0
    while True:
        match = _IDENTIFIER.match(table, position)
        if match is None:
            break
        quoted, bare = match.groups()
        parts.append(quoted.replace('""', '"') if quoted is not None else bare.lower())
        position = match.end()
        if position == len(table):
            return parts
        if table[position] != ".":
            break
        position += 1
    raise ConfigurationError(
        f"{table!r} is not a table name: use name, keyspace.name, or quote names that have "
        'capitals or other characters, e.g. "MyKeyspace"."My Table"'
    )


def _qualified_table(table: str, keyspace: str | None) -> str:
    parts = table_parts(table)
    if len(parts) > 2:
        raise ConfigurationError(f"{table!r} has more than a keyspace and a table name")
    if keyspace is not None:
        if len(parts) == 2:
            raise ConfigurationError(f"{table!r} already names a keyspace; drop keyspace=")
        parts = [*table_parts(keyspace), *parts]
        if len(parts) != 2:
            raise ConfigurationError(f"keyspace={keyspace!r} is not a keyspace name")
    return ".".join(quote_identifier(part) for part in parts)


_INT_KINDS: Final = frozenset({"tinyint", "smallint", "int", "bigint", "varint", "counter"})


def _to_driver(cqltype: Any) -> Callable[[Any], Any] | None:
    """Return how to turn a plain Python value (as Arrow gives it) into one the driver binds."""
    kind, cqltype = cql_kind(cqltype)
    if kind in ("uuid", "timeuuid"):
        return lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))
    if kind == "decimal":
        return lambda v: v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
    if kind in ("list", "set", "vector"):
        inner = _to_driver(cqltype.subtype if kind == "vector" else cqltype.subtypes[0])
        if inner is None:
            return None
        return lambda v: [inner(x) for x in v]
    if kind == "map":
        key = _to_driver(cqltype.subtypes[0]) or identity
        value = _to_driver(cqltype.subtypes[1]) or identity
        # OrderedMap, unlike dict, takes the unhashable keys a frozen collection key gives.
        return lambda v: OrderedMap(
            (key(k), None if x is None else value(x))
            for k, x in (v.items() if isinstance(v, Mapping) else v)
        )
    if kind in ("tuple", "udt"):
        fields = [_to_driver(t) or identity for t in cqltype.subtypes]
        names = list(getattr(cqltype, "fieldnames", None) or [str(i) for i in range(len(fields))])

        def record(v: Any) -> tuple[Any, ...]:
            items = [v.get(n) for n in names] if isinstance(v, Mapping) else list(v)
            return tuple(None if x is None else f(x) for f, x in zip(fields, items, strict=False))

        return record
    return None


def _arrow_temporal_type(dtype: Any) -> Any:
    """Return the Arrow type of an Arrow date/time/duration dtype, else None."""
    if not isinstance(dtype, pd.ArrowDtype):
        return None
    arrow_type = dtype.pyarrow_dtype
    temporal = (pa.types.is_timestamp, pa.types.is_date, pa.types.is_time, pa.types.is_duration)
    return arrow_type if any(test(arrow_type) for test in temporal) else None


def _numpy_temporal(series: pd.Series, arrow_type: Any) -> pd.Series:
    """Return an Arrow date/time column as a numpy datetime64/timedelta64 column.

    Python's date, time and datetime objects cannot hold every value (nanoseconds, years
    beyond 9999), so Arrow temporal columns are converted through their integer ticks.
    """
    is_date32 = pa.types.is_date32(arrow_type)
    arrow = series.array.__arrow_array__().cast(pa.int32() if is_date32 else pa.int64())
    ticks = arrow.fill_null(0).to_numpy().astype(np.int64)
    if is_date32:
        ticks, unit = ticks * 86_400, "s"
    elif pa.types.is_date64(arrow_type):
        unit = "ms"
    else:
        unit = arrow_type.unit
    kind = (
        "timedelta64"
        if pa.types.is_time(arrow_type) or pa.types.is_duration(arrow_type)
        else "datetime64"
    )
    return pd.Series(ticks.view(f"{kind}[{unit}]"), index=series.index)


def _column_values(series: pd.Series, cqltype: Any, missing_value: Any) -> list[Any]:
    """Return one bindable Python value per row of ``series`` for a column of ``cqltype``."""
    kind = cql_kind(cqltype)[0]
    missing = series.isna().to_numpy(dtype=bool)
    arrow_temporal = _arrow_temporal_type(series.dtype)
    if arrow_temporal is not None:
        series = _numpy_temporal(series, arrow_temporal)
    dtype = series.dtype
    values: list[Any]
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        if isinstance(dtype, pd.DatetimeTZDtype):
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        # Naive datetimes are UTC, as in Cassandra and the driver; sub-milliseconds floor.
        millis = series.to_numpy(dtype="datetime64[ms]").view(np.int64)
        if kind == "date":
            values = [Date(days) for days in np.floor_divide(millis, 86_400_000).tolist()]
        else:
            values = millis.tolist()
    elif isinstance(dtype, np.dtype) and dtype.kind == "m":
        nanos = series.to_numpy(dtype="timedelta64[ns]").view(np.int64).tolist()
        values = [Duration(0, 0, n) for n in nanos] if kind == "duration" else nanos
    elif isinstance(dtype, pd.ArrowDtype):
        values = series.array.__arrow_array__().to_pylist()
        convert = _to_driver(cqltype)
        if convert is not None:
            values = [None if v is None else convert(v) for v in values]
    elif isinstance(dtype, np.dtype) and dtype.kind == "f" and kind in _INT_KINDS:
        # An int column with gaps became float64; integral floats bind as ints.
        floats = series.to_numpy(dtype=np.float64)
        if np.all(np.mod(floats[~missing], 1) == 0):
            values = np.where(missing, 0, floats).astype(np.int64).tolist()
        else:
            values = floats.tolist()
    else:
        values = series.tolist()
        if kind in ("uuid", "timeuuid", "decimal"):
            convert = _to_driver(cqltype)
            assert convert is not None
            values = [v if m else convert(v) for v, m in zip(values, missing, strict=True)]
    if missing.any():
        for position in np.flatnonzero(missing).tolist():
            values[position] = missing_value
    return values


class _BadCell(Exception):
    """A cell that cannot be bound, found before its row was sent."""

    def __init__(self, position: int, column: str | None, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.position = position
        self.column = column
        self.cause = cause


_CONVERSION_ERRORS: Final = (TypeError, ValueError, ArithmeticError, decimal.InvalidOperation)


class _Rows:
    """The rows of a frame as bound statements, converted a chunk of rows at a time."""

    def __init__(self, frame: pd.DataFrame, prepared: Any, missing_value: Any) -> None:
        self._frame = frame
        self._prepared = prepared
        self._missing_value = missing_value
        self._names = [str(name) for name in frame.columns]
        self._types = [meta.type for meta in prepared.column_metadata]
        self._keys = tuple(prepared.routing_key_indexes or ())

    def _columns(self, chunk: pd.DataFrame) -> list[list[Any]]:
        return [
            _column_values(chunk.iloc[:, index], cqltype, self._missing_value)
            for index, cqltype in enumerate(self._types)
        ]

    def _first_bad_cell(self, chunk: pd.DataFrame, start: int) -> _BadCell:
        """Find the first cell of a chunk that does not convert, row by row."""
        for offset in range(len(chunk)):
            for index, cqltype in enumerate(self._types):
                try:
                    _column_values(chunk.iloc[offset : offset + 1, index], cqltype, None)
                except _CONVERSION_ERRORS as exc:
                    return _BadCell(start + offset, self._names[index], exc)
        raise AssertionError("a chunk failed to convert but none of its cells does")

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        """Yield ``(position, bound statement)``; raise _BadCell at the first bad cell."""
        frame = self._frame
        for start in range(0, len(frame), _BIND_CHUNK):
            chunk = frame.iloc[start : start + _BIND_CHUNK]
            bad: _BadCell | None = None
            try:
                columns = self._columns(chunk)
            except _CONVERSION_ERRORS:
                # Send the rows before the bad cell, so that what was written is a prefix.
                bad = self._first_bad_cell(chunk, start)
                columns = self._columns(chunk.iloc[: bad.position - start])
            for offset, values in enumerate(zip(*columns, strict=True)):
                yield start + offset, self._bind(start + offset, values)
            if bad is not None:
                raise bad

    def _bind(self, position: int, values: tuple[Any, ...]) -> Any:
        for key in self._keys:
            if values[key] is None or values[key] is UNSET_VALUE:
                raise _BadCell(
                    position, self._names[key], ValueError("a partition key cannot be missing")
                )
        try:
            return self._prepared.bind(values)
        except Exception as exc:
            protocol = self._prepared.protocol_version
            column = next(
                (
                    name
                    for name, cqltype, value in zip(self._names, self._types, values, strict=True)
                    if not _serializes(cqltype, value, protocol)
                ),
                None,
            )
            raise _BadCell(position, column, exc) from exc


def _serializes(cqltype: Any, value: Any, protocol: int) -> bool:
    if value is None or value is UNSET_VALUE:
        return True
    try:
        cqltype.serialize(value, protocol)
    except Exception:
        return False
    return True


async def write_frame(
    df: pd.DataFrame,
    table: str,
    session: AsyncSession | None = None,
    *,
    keyspace: str | None = None,
    concurrency: int = 64,
    consistency: Consistency = None,
    ttl: int | None = None,
    missing: Missing = "unset",
) -> int:
    """Insert every row of ``df`` into ``table`` and return how many rows were written.

    Columns are matched to table columns by exact name (case-sensitive, quoted). Missing
    values (NA, None, NaT, and NaN in plain float columns) are left unset, which writes no
    tombstone and keeps what the row already had; ``missing="null"`` writes them as NULL.
    ``table`` follows CQL: unquoted names are case-insensitive, quote them to keep case.
    """
    if not isinstance(df, pd.DataFrame):
        raise ConfigurationError(f"write_frame needs a pandas DataFrame, not {type(df).__name__}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be a positive int, not {concurrency!r}")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
        raise ConfigurationError(f"ttl must be None or an int of seconds >= 0, not {ttl!r}")
    if missing not in ("unset", "null"):
        raise ConfigurationError(f"missing must be 'unset' or 'null', not {missing!r}")
    names = list(df.columns)
    if not names:
        raise ConfigurationError("the DataFrame has no columns to write")
    if not all(isinstance(name, str) for name in names):
        raise ConfigurationError("every column name must be a str (the CQL column name)")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ConfigurationError(f"duplicate column name(s): {', '.join(map(repr, duplicated))}")
    target = _qualified_table(table, keyspace)
    if session is None:
        from cassnb._registry import get_default_session

        session = get_default_session()

    cql = (
        f"INSERT INTO {target} ({', '.join(quote_identifier(n) for n in names)}) "
        f"VALUES ({', '.join('?' for _ in names)})"
    )
    if ttl is not None:
        cql += f" USING TTL {ttl}"
    try:
        prepared = await session.prepare(cql)
    except CassandraError as exc:
        raise WriteFrameError(
            f"cannot write to {target}: {exc}; 0 rows written",
            row_position=None,
            row_label=None,
            column=None,
            rows_written=0,
        ) from exc

    missing_value = UNSET_VALUE if missing == "unset" else None
    rows = iter(_Rows(df, prepared, missing_value))
    written = 0
    failures: list[tuple[int, str | None, BaseException]] = []

    async def worker() -> None:
        nonlocal written
        while not failures:
            try:
                position, bound = next(rows)
            except StopIteration:
                return
            except _BadCell as bad:
                failures.append((bad.position, bad.column, bad.cause))
                return
            try:
                await session.execute(bound, consistency=consistency)
            except CassandraError as exc:
                failures.append((position, None, exc))
                return
            written += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(df))):
            group.create_task(worker())

    if failures:
        position, column, cause = min(failures, key=lambda failure: failure[0])
        label = df.index[position]
        where = f"row {label!r} (position {position})"
        if column is not None:
            where += f", column {column!r}"
        raise WriteFrameError(
            f"cannot write {where} to {target}: {cause}; "
            f"{written} of {len(df)} rows were written before the failure stopped writing",
            row_position=position,
            row_label=label,
            column=column,
            rows_written=written,
        ) from cause
    return written
