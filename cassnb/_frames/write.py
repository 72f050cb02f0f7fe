"""DataFrames written to a table with prepared inserts, at bounded concurrency.

``write_frame`` binds a frame column-wise to a prepared INSERT and runs it at bounded
concurrency; missing values are left unset, so a write never creates tombstones unless
asked to.
"""

from __future__ import annotations

import asyncio
import decimal
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import numpy as np
import pandas as pd
from cassandra.query import UNSET_VALUE
from cassandra.util import Date, Duration, OrderedMap

try:
    import pyarrow as pa
except ImportError:  # only ArrowDtype columns need it, and those come with it
    pa = None

from cassnb._core.errors import CassandraError, ConfigurationError, QueryError
from cassnb._frames.types import cql_kind, identity

if TYPE_CHECKING:
    from cassnb._core.session import AsyncSession, Consistency

__all__ = ["WriteFrameError", "quote_identifier", "table_parts", "write_frame"]

Missing: TypeAlias = Literal["unset", "null"]


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
        from cassnb._core.default import get_default_session

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
