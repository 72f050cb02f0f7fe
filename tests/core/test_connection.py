"""The connections a cluster opens: on the fast path, cassnb's segment reader on the
driver's reactor; without it, the driver's own."""

from __future__ import annotations

import pytest
from _core_data import KEYSPACE, Data
from cassandra.cluster import DefaultConnection

from cassnb import AsyncCluster, AsyncSession, StreamConfig
from cassnb._driver import fast_path

on_the_fast_path = pytest.mark.skipif(
    not fast_path().enabled, reason=f"tests the fast path's connections ({fast_path()})"
)


@on_the_fast_path
async def test_pages_of_many_segments_arrive_whole(session: AsyncSession, data: Data) -> None:
    from cassnb._driver.fast.connection import _UNCOMPRESSED, SegmentReader

    # 20,000 rows of ~30 bytes: every page spans several 128 KiB segments.
    config = StreamConfig(fetch_size=20_000)
    stream = await session.execute_stream(
        f"SELECT p, c, v FROM {KEYSPACE}.big", stream_config=config
    )
    seen = 0
    async with stream:
        async for page in stream.pages():
            assert all(row.v == f"row {row.p}-{row.c}" for row in page)
            seen += len(page)
    assert seen == data.big_rows
    driver_session = session._session
    connections = [c for pool in driver_session._pools.values() for c in pool.get_connections()]
    readers = [connection._segments for connection in connections]
    assert readers and all(isinstance(reader, SegmentReader) for reader in readers)
    # Every request was framed by cassnb's writer, and the server read them all.
    assert all(connection._segment_codec is _UNCOMPRESSED for connection in connections)


@on_the_fast_path
async def test_the_segment_reader_on_the_drivers_reactor_by_default(data: Data) -> None:
    from cassnb._driver.fast.connection import connection_class

    async with AsyncCluster(data.contact_points, data.port) as ours, await ours.connect():
        assert ours._cluster.connection_class is connection_class()


async def test_the_drivers_own_connections_off_the_fast_path_and_a_given_class_as_given(
    data: Data,
) -> None:
    class Mine(DefaultConnection):  # type: ignore[misc,valid-type]
        pass

    plain = AsyncCluster(data.contact_points, data.port, fast_path=False)
    async with plain, await plain.connect() as session:
        assert plain._cluster.connection_class is DefaultConnection
        assert len(await session.execute(f"SELECT c FROM {KEYSPACE}.paged WHERE p = 0")) == 3000
    async with (
        AsyncCluster(data.contact_points, data.port, connection_class=Mine) as theirs,
        await theirs.connect(),
    ):
        assert theirs._cluster.connection_class is Mine
