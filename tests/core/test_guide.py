"""Every call of the async-session guide, with cassnb, against the real node."""

from __future__ import annotations

import asyncio
import csv
import datetime
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from _core_data import KEYSPACE, Data

from cassnb import (
    AsyncCluster,
    AsyncSession,
    ConnectionError,
    QueryError,
    StreamConfig,
)
from cassnb._core.registry import open_counts
from cassnb.local import ClusterInfo

T = TypeVar("T")


async def add_user(session: AsyncSession, name: str) -> uuid.UUID:
    insert = await session.prepare(
        "INSERT INTO users (id, name, email, created_at) VALUES (?, ?, ?, ?)"
    )
    user_id = uuid.uuid4()
    created = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    await session.execute(insert, [user_id, name, f"{name.lower()}@example.org", created])
    return user_id


async def test_quick_start_reads_rows_by_attribute(data: Data) -> None:
    async with AsyncCluster(data.contact_points) as cluster:
        async with cluster.connect(KEYSPACE) as session:
            await add_user(session, "Ada")
            result = await session.execute("SELECT * FROM users LIMIT 10")
            rows = list(result)
            assert rows
            for row in rows:
                assert isinstance(row.name, str)
                assert row.email.endswith("@example.org")
        assert session.is_closed
    assert cluster.is_closed


async def test_connect_works_with_and_without_await_in_async_with(data: Data) -> None:
    async with AsyncCluster(data.contact_points, data.port) as cluster:
        async with cluster.connect(KEYSPACE) as without_await:
            assert without_await.keyspace == KEYSPACE
            assert (await without_await.execute("SELECT k FROM kv LIMIT 1")) is not None
        assert without_await.is_closed

        async with await cluster.connect(KEYSPACE) as with_await:
            assert with_await.keyspace == KEYSPACE
            assert (await with_await.execute("SELECT k FROM kv LIMIT 1")) is not None
        assert with_await.is_closed


async def test_manual_cleanup_in_finally(data: Data) -> None:
    cluster = AsyncCluster(data.contact_points)
    session = await cluster.connect(KEYSPACE)
    try:
        result = await session.execute("SELECT * FROM users LIMIT 1")
        assert result.column_names == ["id", "created_at", "email", "name"]
    finally:
        await session.close()
        await cluster.shutdown()
    assert session.is_closed
    assert cluster.is_closed
    with pytest.raises(ConnectionError, match="closed"):
        await session.execute("SELECT * FROM users LIMIT 1")


async def test_create_with_auth_logs_in(auth_node: ClusterInfo) -> None:
    assert auth_node.credentials is not None
    username, password = auth_node.credentials
    cluster = AsyncCluster.create_with_auth(
        contact_points=auth_node.contact_points, username=username, password=password
    )
    session = await cluster.connect()
    try:
        row = (await session.execute("SELECT release_version FROM system.local")).one()
        assert row is not None
        assert row.release_version.startswith("5.0")
    finally:
        await session.close()
        await cluster.shutdown()


async def test_create_with_auth_from_environment(
    auth_node: ClusterInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert auth_node.credentials is not None
    monkeypatch.setenv("CASSNB_TEST_USER", auth_node.credentials[0])
    monkeypatch.setenv("CASSNB_TEST_PASS", auth_node.credentials[1])
    cluster = AsyncCluster.create_with_auth(
        contact_points=auth_node.contact_points,
        username=os.environ["CASSNB_TEST_USER"],
        password=os.environ["CASSNB_TEST_PASS"],
    )
    async with cluster, cluster.connect() as session:
        assert (await session.execute("SELECT key FROM system.local")).one() is not None


async def test_parameters_with_a_plain_string_are_refused(session: AsyncSession) -> None:
    with pytest.raises(QueryError, match=r"prepare"):
        await session.execute("SELECT * FROM users WHERE id = ?", [uuid.uuid4()])


async def test_prepared_statements_take_parameters(session: AsyncSession) -> None:
    by_id = await session.prepare("SELECT * FROM users WHERE id = ?")
    insert = await session.prepare("INSERT INTO users (id, name, email) VALUES (?, ?, ?)")
    ids = [uuid.uuid4() for _ in range(5)]
    for number, user_id in enumerate(ids):
        await session.execute(insert, [user_id, f"user {number}", f"u{number}@example.org"])
    for number, user_id in enumerate(ids):
        user = (await session.execute(by_id, [user_id])).one()
        assert user is not None
        assert (user.id, user.name) == (user_id, f"user {number}")
    assert (await session.execute(by_id, [uuid.uuid4()])).one() is None


async def classify(operation: Awaitable[object]) -> tuple[str, str]:
    """Run an operation and say which of the guide's two error families it raised."""
    try:
        await operation
    except ConnectionError as exc:
        return "connection", str(exc)
    except QueryError as exc:
        return "query", str(exc)
    return "none", ""


async def test_errors_split_into_connection_and_query(session: AsyncSession) -> None:
    kind, message = await classify(session.execute("SELECT * FROM no_such_table"))
    assert kind == "query"
    assert "no_such_table" in message

    unreachable = AsyncCluster(["127.0.0.9"], connect_timeout=0.5)
    try:
        kind, message = await classify(unreachable.connect())
    finally:
        await unreachable.shutdown()
    assert kind == "connection"
    assert "127.0.0.9" in message


async def retry_on_connection_errors(
    operation: Callable[[], Awaitable[T]], *, attempts: int = 3, first_delay: float = 0.01
) -> T:
    """Retry what may succeed later (connection trouble); let query errors through."""
    for attempt in range(attempts):
        try:
            return await operation()
        except ConnectionError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(first_delay * 2**attempt)
    raise AssertionError("unreachable")


async def test_retry_pattern_retries_connection_errors_only(data: Data) -> None:
    # The first two attempts go to an address where nothing listens, the third to the node.
    targets = [["127.0.0.9"], ["127.0.0.9"], data.contact_points]
    tried: list[list[str]] = []
    clusters: list[AsyncCluster] = []

    async def connect_next() -> AsyncSession:
        points = targets[len(tried)]
        tried.append(points)
        cluster = AsyncCluster(points, connect_timeout=0.5)
        clusters.append(cluster)
        return await cluster.connect(KEYSPACE)

    try:
        session = await retry_on_connection_errors(connect_next)
        assert tried == targets
        query_attempts = 0

        async def bad_query() -> object:
            nonlocal query_attempts
            query_attempts += 1
            return await session.execute("SELECT * FROM missing_table")

        with pytest.raises(QueryError):
            await retry_on_connection_errors(bad_query)
        assert query_attempts == 1
    finally:
        for cluster in clusters:
            await cluster.shutdown()


async def test_stream_with_page_callback(session: AsyncSession, data: Data) -> None:
    seen: list[tuple[int, int]] = []
    config = StreamConfig(
        fetch_size=1000, page_callback=lambda page, rows: seen.append((page, rows))
    )
    count = 0
    async with await session.execute_stream(
        "SELECT p, c, v FROM paged WHERE p = 0", stream_config=config
    ) as stream:
        async for row in stream:
            assert row.v == f"value {row.c}"
            count += 1
    assert count == data.paged_rows
    assert seen == [(1, 1000), (2, 1000), (3, 1000)]
    assert stream.page_number == 3
    assert stream.rows_fetched == data.paged_rows


async def test_stream_closed_in_finally(session: AsyncSession) -> None:
    stream = await session.execute_stream(
        "SELECT * FROM paged WHERE p = 0", stream_config=StreamConfig(fetch_size=100)
    )
    taken = 0
    try:
        async for _row in stream:
            taken += 1
            if taken == 150:
                break
    finally:
        await stream.close()
    assert stream.is_closed
    assert open_counts().streams == 0
    assert taken == 150


async def export_to_csv(session: AsyncSession, path: Path) -> int:
    """Write every row of the paged table to a CSV file, one page in memory at a time."""
    progress: list[int] = []
    config = StreamConfig(fetch_size=500, page_callback=lambda page, _rows: progress.append(page))
    written = 0
    async with await session.execute_stream(
        "SELECT p, c, v FROM paged WHERE p = 0", stream_config=config
    ) as stream:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["p", "c", "v"])
            async for row in stream:
                writer.writerow(row)
                written += 1
    assert progress == list(range(1, len(progress) + 1))
    return written


async def test_export_to_csv_by_streaming(
    session: AsyncSession, data: Data, tmp_path: Path
) -> None:
    target = tmp_path / "paged.csv"
    assert await export_to_csv(session, target) == data.paged_rows
    with target.open(newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["p", "c", "v"]
    assert len(lines) == data.paged_rows + 1
    assert lines[1] == ["0", "0", "value 0"]
    assert lines[-1] == ["0", str(data.paged_rows - 1), f"value {data.paged_rows - 1}"]


def test_stream_config_comes_from_cassnb_streaming() -> None:
    from cassnb.streaming import AsyncStreamingResultSet
    from cassnb.streaming import StreamConfig as FromStreaming

    assert FromStreaming is StreamConfig
    assert AsyncStreamingResultSet.__name__ == "AsyncStreamingResultSet"
    config = FromStreaming(fetch_size=1000)
    assert (config.fetch_size, config.prefetch, config.max_pages) == (1000, 1, None)
