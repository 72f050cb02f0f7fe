"""The connections a cluster opens: cassnb's segment reader on the driver's reactor."""

from __future__ import annotations

from _core_data import KEYSPACE, Data
from cassandra.cluster import DefaultConnection

from cassnb import AsyncCluster, AsyncSession, StreamConfig
from cassnb._driver.fast.connection import _UNCOMPRESSED, SegmentReader, connection_class


async def test_pages_of_many_segments_arrive_whole(session: AsyncSession, data: Data) -> None:
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


async def test_the_driver_reactor_by_default_and_a_given_class_as_given(data: Data) -> None:
    class Mine(DefaultConnection):  # type: ignore[misc,valid-type]
        pass

    async with AsyncCluster(data.contact_points, data.port) as ours, await ours.connect():
        assert ours._cluster.connection_class is connection_class()
    async with (
        AsyncCluster(data.contact_points, data.port, connection_class=Mine) as theirs,
        await theirs.connect(),
    ):
        assert theirs._cluster.connection_class is Mine
