"""Whole-table reads cut along the token ring, each range read from a replica that owns it.

The Murmur3 ring runs from -2**63 to 2**63-1, and -2**63 is never the token of a row
(Cassandra hashes a key that would land there to 2**63-1). A node's token ``t`` marks the
end of the range it owns, ``(previous token, t]``; the range that ends at the lowest token
wraps around the end of the ring, so it is read as two ranges, ``(highest, 2**63-1]`` and
``(-2**63, lowest]``. Every range read here lies inside one ring range, so all its rows have
the same replicas.

Each range is one prepared ``SELECT ... WHERE token(pk) > ? AND token(pk) <= ?``. The
driver's ``TokenAwarePolicy`` routes a statement by hashing its ``routing_key`` and has no
notion of a routing token, and a token-range statement binds no partition key, so left
alone it would go to any node. Murmur3 is invertible, though: each range statement
carries a 16-byte key that hashes to the range's end token, so the policy sends it to the
replicas of that range, with the driver unchanged.

Ranges are read concurrently, each streamed page by page through the session's
``execute_stream`` and decoded with the frames layer's page decoder; columns are joined
once at the end, in token order, which is the order a single ``SELECT *`` returns.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from cassandra.query import BoundStatement, PreparedStatement

from cassnb._core.errors import ConfigurationError, QueryError
from cassnb._core.stream import StreamConfig
from cassnb._frames import read as _frames
from cassnb._frames.read import Progress, check_backend, concat_chunks, frame_of
from cassnb._frames.types import Column, DtypeBackend, FrameSchema
from cassnb._frames.write import quote_identifier, table_parts

if TYPE_CHECKING:
    import pandas as pd

    from cassnb._core.session import AsyncSession

__all__ = ["read_table"]

MIN_TOKEN: Final = -(2**63)
MAX_TOKEN: Final = 2**63 - 1

_MASK: Final = 2**64 - 1
_C1: Final = 0x87C37B91114253D5
_C2: Final = 0x4CF5AD432745937F
_FMIX1: Final = 0xFF51AFD7ED558CCD
_FMIX2: Final = 0xC4CEB9FE1A85EC53
_KEY_LENGTH: Final = 16


@dataclass(frozen=True, slots=True)
class TokenRange:
    """The tokens in ``(start, end]``; ``owner`` is the ring token whose replicas hold them."""

    start: int
    end: int
    owner: int | None = None

    @property
    def width(self) -> int:
        """How many tokens the range holds."""
        return self.end - self.start


def ring_ranges(ring: Iterable[int]) -> list[TokenRange]:
    """Return the ring's own ranges in token order, the wrap-around one as two ranges."""
    tokens = sorted(set(ring))
    if not tokens:
        return [TokenRange(MIN_TOKEN, MAX_TOKEN)]
    first, last = tokens[0], tokens[-1]
    ranges = [TokenRange(MIN_TOKEN, first, first)] if first > MIN_TOKEN else []
    ranges.extend(TokenRange(start, end, end) for start, end in pairwise(tokens))
    if last < MAX_TOKEN:
        ranges.append(TokenRange(last, MAX_TOKEN, first))
    return ranges


def _pieces(widths: Sequence[int], wanted: int) -> list[int]:
    """Share ``wanted`` pieces among ranges by width: at least one each, never more than width."""
    whole = sum(widths)
    counts = [max(1, min(width, wanted * width // whole)) for width in widths]
    while (missing := wanted - sum(counts)) > 0:
        room = [i for i, width in enumerate(widths) if counts[i] < width]
        if not room:
            break
        # The ranges cut least finely so far get the extra pieces.
        room.sort(key=lambda i: counts[i] / widths[i])
        for i in room[:missing]:
            counts[i] += 1
    return counts


def split_ring(ring: Iterable[int], splits: int) -> list[TokenRange]:
    """Cut the ring into ranges that cover it once, in token order, none across a ring token.

    There are at least ``splits`` ranges, and at least as many as the ring has (plus one
    for the wrap-around); longer ring ranges are cut into more pieces, so that no range is
    more than about twice the ring's length divided by ``splits``.
    """
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ConfigurationError(f"splits must be a positive int, not {splits!r}")
    base = ring_ranges(ring)
    counts = _pieces([r.width for r in base], max(splits, len(base)))
    ranges: list[TokenRange] = []
    for token_range, count in zip(base, counts, strict=True):
        width = token_range.width
        bounds = [token_range.start + width * i // count for i in range(count + 1)]
        ranges.extend(TokenRange(a, b, token_range.owner) for a, b in pairwise(bounds))
    return ranges


def default_splits(hosts: int) -> int:
    """Return how many ranges to cut a ring of ``hosts`` nodes into by default."""
    return max(4 * max(hosts, 1), 2 * (os.cpu_count() or 1))


def default_concurrency(hosts: int) -> int:
    """Return how many ranges to read at once from ``hosts`` nodes by default."""
    return max(4, 2 * hosts)


# --- routing -----------------------------------------------------------------------------


def _rotr(value: int, bits: int) -> int:
    return ((value >> bits) | (value << (64 - bits))) & _MASK


def _times(value: int, factor: int) -> int:
    return (value * factor) & _MASK


def _unshift(value: int) -> int:
    # x ^ (x >> 33) is its own inverse on 64 bits, since 2 * 33 >= 64.
    return value ^ (value >> 33)


def _unfmix(value: int) -> int:
    value = _times(_unshift(value), pow(_FMIX2, -1, 2**64))
    value = _times(_unshift(value), pow(_FMIX1, -1, 2**64))
    return _unshift(value)


def routing_key(token: int) -> bytes:
    """Return a 16-byte key that Murmur3 (as Cassandra uses it) hashes to ``token``.

    It runs the x64 128-bit Murmur3 of one 16-byte block backwards: choose the two halves
    just before the final mix so that the first half mixes to 0 and the second to
    ``token``, then undo each step of the block's mixing.
    """
    if not MIN_TOKEN <= token <= MAX_TOKEN:
        raise ValueError(f"{token} is not a Murmur3 token")
    inverse5 = pow(5, -1, 2**64)
    second = _unfmix(token & _MASK)
    h1 = ((-second) & _MASK) ^ _KEY_LENGTH
    h2 = second ^ _KEY_LENGTH
    k1 = _rotr(_times((h1 - 0x52DCE729) & _MASK, inverse5), 27)
    k2 = _rotr((_times((h2 - 0x38495AB5) & _MASK, inverse5) - h1) & _MASK, 31)
    k1 = _times(_rotr(_times(k1, pow(_C2, -1, 2**64)), 31), pow(_C1, -1, 2**64))
    k2 = _times(_rotr(_times(k2, pow(_C1, -1, 2**64)), 33), pow(_C2, -1, 2**64))
    return k1.to_bytes(8, "little") + k2.to_bytes(8, "little")


class RangeStatement(BoundStatement):  # type: ignore[misc]
    """A token-range read that the driver's TokenAwarePolicy routes to the range's replicas."""

    def __init__(self, prepared: PreparedStatement, token_range: TokenRange) -> None:
        super().__init__(prepared)
        self.bind((token_range.start, token_range.end))
        self.token_range = token_range
        self._replica_key = routing_key(token_range.end)

    @property
    def routing_key(self) -> bytes:
        """A key that hashes to the range's end token, so the range's replicas come first."""
        return self._replica_key


# --- planning ----------------------------------------------------------------------------


def table_names(table: str, keyspace: str | None) -> tuple[str, str]:
    """Return the exact keyspace and table names of ``table`` (``t`` or ``ks.t``)."""
    parts = table_parts(table)
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1 and keyspace:
        return keyspace, parts[0]
    if len(parts) == 1:
        raise ConfigurationError(
            f"{table!r} names no keyspace and the session has none: use keyspace.table"
        )
    raise ConfigurationError(f"{table!r} has more than a keyspace and a table name")


def select_cql(
    keyspace: str,
    table: str,
    key_columns: Sequence[str],
    columns: Sequence[str] | None,
    where: str | None,
) -> str:
    """Return the CQL that reads one token range of a table, its bounds bound as markers."""
    token = f"token({', '.join(map(quote_identifier, key_columns))})"
    selected = "*" if columns is None else ", ".join(map(quote_identifier, columns))
    cql = (
        f"SELECT {selected} FROM {quote_identifier(keyspace)}.{quote_identifier(table)} "
        f"WHERE {token} > ? AND {token} <= ?"
    )
    if where is not None and where.strip():
        cql += f" AND {where.strip()}"
    return cql


def result_schema(prepared: PreparedStatement, dtype_backend: DtypeBackend) -> FrameSchema:
    """Return the frame schema of a prepared SELECT, from its result metadata."""
    metadata = prepared.result_metadata or ()
    return FrameSchema.from_metadata(
        [column[2] for column in metadata], [column[3] for column in metadata], dtype_backend
    )


def empty_frame(schema: FrameSchema) -> pd.DataFrame:
    """Return a frame with no rows and the schema's columns and dtypes."""
    return frame_of(schema.names, schema.empty_columns())


async def partition_key(session: AsyncSession, keyspace: str, table: str) -> list[str]:
    """Return the partition key columns of a table, in key order."""
    statement = await session.prepare(
        "SELECT column_name, kind, position FROM system_schema.columns "
        "WHERE keyspace_name = ? AND table_name = ?"
    )
    rows = await session.execute(statement, (keyspace, table))
    keys = sorted((row[2], row[0]) for row in rows if row[1] == "partition_key")
    if not keys:
        raise QueryError(f"table {keyspace}.{table} does not exist")
    return [name for _, name in keys]


@dataclass(frozen=True)
class TableScan:
    """What reading a table takes: its key, the prepared range read, the ranges and dtypes."""

    keyspace: str
    table: str
    key_columns: tuple[str, ...]
    prepared: PreparedStatement
    schema: FrameSchema
    ranges: tuple[TokenRange, ...]
    hosts: int


def _ring(metadata: Any) -> list[int]:
    partitioner = str(getattr(metadata, "partitioner", "") or "")
    if partitioner and not partitioner.endswith("Murmur3Partitioner"):
        raise ConfigurationError(
            f"reading by token range needs the Murmur3Partitioner; the cluster uses {partitioner}"
        )
    token_map = getattr(metadata, "token_map", None)
    if token_map is None:
        return []
    return [int(token.value) for token in token_map.ring]


async def plan_scan(
    session: AsyncSession,
    keyspace: str,
    table: str,
    *,
    columns: Sequence[str] | None,
    where: str | None,
    splits: int | None,
    dtype_backend: DtypeBackend,
) -> TableScan:
    """Look up a table's key and the ring, prepare the range read, and cut the ring."""
    metadata = session.metadata
    ring = _ring(metadata)
    hosts = max(1, len(metadata.all_hosts()))
    key_columns = await partition_key(session, keyspace, table)
    prepared = await session.prepare(select_cql(keyspace, table, key_columns, columns, where))
    return TableScan(
        keyspace=keyspace,
        table=table,
        key_columns=tuple(key_columns),
        prepared=prepared,
        schema=result_schema(prepared, dtype_backend),
        ranges=tuple(split_ring(ring, default_splits(hosts) if splits is None else splits)),
        hosts=hosts,
    )


# --- reading -----------------------------------------------------------------------------

#: One range's rows: per schema column, its typed arrays page by page.
_Chunks: TypeAlias = "list[list[Column]]"


async def _read_range(
    session: AsyncSession,
    prepared: PreparedStatement,
    token_range: TokenRange,
    schema: FrameSchema,
    fetch_size: int,
    progress: Progress | None,
) -> _Chunks:
    chunks: _Chunks = [[] for _ in schema.names]
    stream = await session.execute_stream(
        RangeStatement(prepared, token_range), stream_config=StreamConfig(fetch_size=fetch_size)
    )
    async with stream:
        async for page in stream.pages():
            names, types = stream.page_column_names or [], stream.page_column_types or []
            if not schema.matches(names, types):
                # Ranges are read concurrently into the columns the scan began with; a
                # page of other columns cannot join them by position.
                raise QueryError(
                    f"the table's columns changed while it was read (now "
                    f"{', '.join(names)}; at the start {', '.join(schema.page_names or ())}): "
                    "read it again"
                )
            # Looked up each time: the frames layer may swap in a compiled decoder.
            arrays = _frames.page_decoder.decode(page, schema)
            for column, array in zip(chunks, arrays, strict=True):
                column.append(array)
            if progress is not None:
                progress.update(len(page))
    return chunks


def _assemble(schema: FrameSchema, parts: list[_Chunks]) -> pd.DataFrame:
    columns: list[Column] = []
    for index, codec in enumerate(schema.codecs):
        pieces = [array for part in parts for array in part[index]]
        columns.append(concat_chunks(pieces) if pieces else codec.to_array(()))
        for part in parts:
            # Free each column's pages once joined: peak memory stays near one frame.
            part[index].clear()
    return frame_of(schema.names, columns)


async def read_ranges(
    session: AsyncSession,
    prepared: PreparedStatement,
    ranges: Sequence[TokenRange],
    schema: FrameSchema,
    *,
    concurrency: int,
    fetch_size: int,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Read token ranges, at most ``concurrency`` at a time, into one frame in range order."""
    parts: list[_Chunks] = [[] for _ in ranges]
    pending = iter(enumerate(ranges))

    async def reader() -> None:
        for index, token_range in pending:
            parts[index] = await _read_range(
                session, prepared, token_range, schema, fetch_size, progress
            )

    tasks = [asyncio.create_task(reader()) for _ in range(max(1, min(concurrency, len(ranges))))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # The first failure (or a cancellation) stops every other range and closes its stream.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return _assemble(schema, parts)


def _check_positive(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{name} must be None or a positive int, not {value!r}")


def check_columns(columns: Sequence[str] | None) -> list[str] | None:
    """Return ``columns`` as a list of names, refusing an empty list or other values."""
    if columns is None:
        return None
    names = [columns] if isinstance(columns, str) else list(columns)
    if not names or not all(isinstance(name, str) for name in names):
        raise ConfigurationError("columns must be None or a non-empty list of column names")
    return names


async def read_table(
    table: str,
    session: AsyncSession | None = None,
    *,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    splits: int | None = None,
    concurrency: int | None = None,
    progress: bool = False,
    dtype_backend: DtypeBackend = "numpy_nullable",
    fetch_size: int = 5000,
) -> pd.DataFrame:
    """Read a whole table into one DataFrame, token range by token range, concurrently.

    The ring is cut into at least ``splits`` ranges (by default four per node, or two per
    local core if more), never across a node's token, and ``concurrency`` ranges (by
    default two per node, at least four) are read at once, each from a replica that owns
    it. The frame has exactly the columns, dtypes and row order of
    ``read_cql("SELECT * FROM table")``; ``columns`` selects some columns in that order.

    ``where`` is extra CQL conditions, joined with AND to each range's
    ``token(partition key) > ? AND token(partition key) <= ?``, so they must be valid
    next to a token range: conditions on clustering or regular columns need
    ``ALLOW FILTERING`` at their end (e.g. ``where="year = 2013 ALLOW FILTERING"``),
    and the server then still reads every row of each range and drops those that do not
    match. ``LIMIT`` there would apply to each range, not to the table. Values are
    literals; there are no bind markers.
    """
    backend = check_backend(dtype_backend)
    _check_positive(splits, "splits")
    _check_positive(concurrency, "concurrency")
    _check_positive(fetch_size, "fetch_size")
    wanted = check_columns(columns)
    if where is not None and not isinstance(where, str):
        raise ConfigurationError(f"where must be a string of CQL conditions, not {where!r}")
    if session is None:
        from cassnb._core.default import get_default_session

        session = get_default_session()
    keyspace, name = table_names(table, session.keyspace)
    scan = await plan_scan(
        session,
        keyspace,
        name,
        columns=wanted,
        where=where,
        splits=splits,
        dtype_backend=backend,
    )
    bar = Progress(progress, None)
    try:
        return await read_ranges(
            session,
            scan.prepared,
            scan.ranges,
            scan.schema,
            concurrency=concurrency or default_concurrency(scan.hosts),
            fetch_size=fetch_size,
            progress=bar,
        )
    finally:
        bar.close()
