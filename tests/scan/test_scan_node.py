"""read_table against the single node: every row exactly once, with read_cql's dtypes."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest
from scan_checks import assert_every_row_once, keys_of
from scan_data import ScanData, driver_cluster, skewed_keys

from cassnb import AsyncSession, QueryError, read_cql, set_default_session
from cassnb._core.registry import open_counts
from cassnb._frames import read as _frames
from cassnb._scan.ranges import MAX_TOKEN, MIN_TOKEN, plan_scan, read_ranges, read_table, split_ring


@pytest.mark.parametrize("splits", [None, 1, 2, 7, 64])
async def test_skewed_table_every_row_once(
    node_session: AsyncSession, node_data: ScanData, splits: int | None
) -> None:
    """Huge and small partitions, any number of splits: each row once, as read_cql reads it."""
    frame = await read_table("skewed", node_session, splits=splits)
    assert len(frame) == node_data.skewed_rows
    await assert_every_row_once(node_session, "skewed", frame, ["p", "c"])
    assert set(keys_of(frame, ["p", "c"])) == skewed_keys()


async def test_single_partition_table(node_session: AsyncSession, node_data: ScanData) -> None:
    """One partition falls in one range; the others are empty and add nothing."""
    frame = await read_table("single", node_session, splits=16)
    assert len(frame) == node_data.single_rows
    await assert_every_row_once(node_session, "single", frame, ["p", "c"])


async def test_empty_table(node_session: AsyncSession) -> None:
    """No rows: an empty frame with the table's columns and read_cql's dtypes."""
    frame = await read_table("empty", node_session)
    reference = await read_cql("SELECT * FROM empty", node_session)
    assert frame.empty
    pd.testing.assert_frame_equal(frame, reference)
    assert list(frame.columns) == ["p", "v"]


async def test_keys_on_every_boundary_are_read_once(
    node_session: AsyncSession, node_data: ScanData
) -> None:
    """Keys hashed onto the ring's token, the split boundaries and the ring's ends: once each."""
    tokens = await read_cql("SELECT k, t, token(k) AS tok FROM edges", node_session)
    # Cassandra gives each key the token it was made for: routing_key is Murmur3 run backwards.
    assert (tokens["t"] == tokens["tok"]).all()
    assert len(tokens) == len(node_data.edges)
    frame = await read_table("edges", node_session, splits=8)
    await assert_every_row_once(node_session, "edges", frame, ["k"])
    assert {bytes(k): int(t) for k, t in keys_of(frame, ["k", "t"])} == node_data.edges
    assert {MIN_TOKEN + 1, 0, 1, MAX_TOKEN} <= set(frame["t"].astype(int))


async def test_each_range_reads_exactly_its_tokens(
    node_session: AsyncSession, node_data: ScanData
) -> None:
    """Read range by range, every key lands in the range (start, end] that holds its token."""
    scan = await plan_scan(
        node_session,
        node_data.keyspace,
        "edges",
        columns=["k", "t"],
        where=None,
        splits=8,
        dtype_backend="numpy_nullable",
    )
    assert list(scan.ranges) == split_ring(node_data.ring, 8)
    seen = 0
    for token_range in scan.ranges:
        part = await read_ranges(
            node_session, scan.prepared, [token_range], scan.schema, concurrency=1, fetch_size=3
        )
        assert all(token_range.start < int(t) <= token_range.end for t in part["t"])
        seen += len(part)
    assert seen == len(node_data.edges)


async def test_columns_and_where(node_session: AsyncSession) -> None:
    """``columns`` picks and orders columns; ``where`` filters each range like the whole table."""
    frame = await read_table(
        "skewed", node_session, columns=["x", "p", "c"], where="c < 10 ALLOW FILTERING"
    )
    reference = await read_cql(
        "SELECT x, p, c FROM skewed WHERE c < 10 ALLOW FILTERING", node_session
    )
    pd.testing.assert_frame_equal(frame, reference)
    assert len(frame) > 0
    assert list(frame.columns) == ["x", "p", "c"]


async def test_pyarrow_backend(node_session: AsyncSession) -> None:
    """The pyarrow backend gives read_cql's pyarrow dtypes too."""
    frame = await read_table("skewed", node_session, dtype_backend="pyarrow", concurrency=3)
    reference = await read_cql("SELECT * FROM skewed", node_session, dtype_backend="pyarrow")
    pd.testing.assert_frame_equal(frame, reference)


async def test_default_session_and_keyspace_in_the_name(
    node_session: AsyncSession, node_data: ScanData
) -> None:
    """With no session, the default one is used; ``ks.table`` overrides its keyspace."""
    set_default_session(node_session)
    try:
        frame = await read_table(f"{node_data.keyspace}.single")
    finally:
        set_default_session(None)
    assert len(frame) == node_data.single_rows


async def test_unknown_table_or_column_fails_cleanly(node_session: AsyncSession) -> None:
    """A missing table or column is a QueryError, and no stream is left open."""
    streams = open_counts().streams
    with pytest.raises(QueryError, match="does not exist"):
        await read_table("no_such_table", node_session)
    with pytest.raises(QueryError, match="nope"):
        await read_table("skewed", node_session, columns=["p", "nope"])
    assert open_counts().streams == streams


async def test_cancelling_stops_every_range(node_session: AsyncSession) -> None:
    """Cancelled mid-read, every range's stream is closed and the session still reads."""
    streams = open_counts().streams
    task = asyncio.create_task(
        read_table("skewed", node_session, concurrency=4, fetch_size=50, splits=32)
    )
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_counts().streams == streams
    assert len(await read_table("single", node_session)) > 0


async def test_a_table_changed_while_it_is_read_fails_the_read(
    node_session: AsyncSession, node_data: ScanData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column added mid-scan is a QueryError naming the change, never values moved
    under another column's name."""
    await node_session.execute("DROP TABLE IF EXISTS altered")
    await node_session.execute("CREATE TABLE altered (p int PRIMARY KEY, b int, d text)")
    insert = await node_session.prepare("INSERT INTO altered (p, b, d) VALUES (?, ?, ?)")
    for p in range(400):
        await node_session.execute(insert, (p, p, f"d{p}"))
    cluster = driver_cluster(node_data.contact_points, node_data.port)
    other_client = cluster.connect(node_data.keyspace)
    decode = _frames.page_decoder.decode
    pages = 0

    def alter_after_the_first_page(page: Any, schema: Any) -> Any:
        nonlocal pages
        pages += 1
        if pages == 1:
            # Another client, waiting for the change to be applied.
            other_client.execute("ALTER TABLE altered ADD c2 text")
            other_client.execute("UPDATE altered SET c2 = 'c2' WHERE p IN (0, 1, 2, 3)")
        return decode(page, schema)

    monkeypatch.setattr(_frames.page_decoder, "decode", alter_after_the_first_page)
    try:
        with pytest.raises(QueryError, match=r"columns changed while it was read.*c2"):
            await read_table("altered", node_session, splits=1, concurrency=1, fetch_size=20)
        assert open_counts().streams == 0
    finally:
        cluster.shutdown()
        await node_session.execute("DROP TABLE IF EXISTS altered")
