"""AsyncSession against the node: rows, result sets, pages, statements, batches, keyspaces."""

from __future__ import annotations

import pickle
import time
import uuid

import pandas as pd
import pytest
from _core_data import KEYSPACE, Data
from cassandra import ConsistencyLevel
from cassandra.query import BatchStatement, BatchType, SimpleStatement

from cassnb import AsyncCluster, AsyncResultSet, AsyncSession, QueryError, Row, StreamConfig


async def test_rows_by_attribute_key_and_position(session: AsyncSession) -> None:
    row = (await session.execute("SELECT p, c, v FROM paged WHERE p = 0 AND c = 7")).one()
    assert isinstance(row, Row)
    assert isinstance(row, tuple)
    assert (row.p, row.c, row.v) == (0, 7, "value 7")
    assert (row["p"], row["c"], row["v"]) == (0, 7, "value 7")
    assert (row[0], row[1], row[2], row[-1]) == (0, 7, "value 7", "value 7")
    assert row[1:] == (7, "value 7")
    assert row == (0, 7, "value 7")
    assert row._fields == ("p", "c", "v")
    assert row._asdict() == {"p": 0, "c": 7, "v": "value 7"}
    assert repr(row) == "Row(p=0, c=7, v='value 7')"
    with pytest.raises(KeyError, match="no column 'missing'"):
        row["missing"]
    assert pickle.loads(pickle.dumps(row)) == row


async def test_rows_of_the_same_columns_share_one_class(session: AsyncSession) -> None:
    result = await session.execute("SELECT p, c, v FROM paged WHERE p = 0 LIMIT 10")
    assert len({type(row) for row in result}) == 1
    again = await session.execute("SELECT p, c, v FROM paged WHERE p = 0 LIMIT 1")
    assert type(again.one()) is type(result.one())


async def test_a_column_named_like_a_tuple_method_wins(session: AsyncSession) -> None:
    row = (await session.execute("SELECT count(*) FROM paged WHERE p = 0")).one()
    assert row is not None
    assert row.count == row["count"] == row[0]


async def test_rows_work_as_plain_tuples_for_pandas(session: AsyncSession, data: Data) -> None:
    result = await session.execute("SELECT p, c, v FROM paged WHERE p = 0")
    frame = pd.DataFrame(result.all())
    assert list(frame.columns) == ["p", "c", "v"]
    assert len(frame) == data.paged_rows
    records = pd.DataFrame.from_records(list(result), columns=result.column_names)
    assert records["c"].sum() == sum(range(data.paged_rows))


async def test_result_set_interface(session: AsyncSession, data: Data) -> None:
    result = await session.execute("SELECT c FROM paged WHERE p = 0")
    assert isinstance(result, AsyncResultSet)
    assert len(result) == data.paged_rows
    assert result
    assert [row.c for row in result] == list(range(data.paged_rows))
    assert result.all()[:3] == [(0,), (1,), (2,)]
    assert result[0] == (0,)
    first = result.one()
    assert first is not None
    assert first.c == 0
    assert result.column_names == ["c"]
    assert result.paging_state is None

    empty = await session.execute("SELECT c FROM paged WHERE p = 12345")
    assert len(empty) == 0
    assert not empty
    assert empty.one() is None
    assert empty.all() == []
    assert empty.column_names == ["c"]


async def test_execute_page_resumes_exactly(session: AsyncSession, data: Data) -> None:
    query = "SELECT c FROM paged WHERE p = 0"
    seen: list[int] = []
    pages = 0
    state: bytes | None = None
    while True:
        page = await session.execute_page(query, fetch_size=700, paging_state=state)
        pages += 1
        assert len(page) <= 700
        seen.extend(row.c for row in page)
        state = page.paging_state
        if state is None:
            break
        assert len(page) == 700
    assert seen == list(range(data.paged_rows))
    assert pages >= 5


async def test_execute_page_with_a_prepared_statement(session: AsyncSession) -> None:
    statement = await session.prepare("SELECT c FROM paged WHERE p = ? AND c >= ?")
    first = await session.execute_page(statement, [0, 100], fetch_size=50)
    assert [row.c for row in first] == list(range(100, 150))
    assert first.paging_state is not None
    second = await session.execute_page(
        statement, [0, 100], fetch_size=50, paging_state=first.paging_state
    )
    assert [row.c for row in second] == list(range(150, 200))


async def test_last_page_has_no_paging_state(session: AsyncSession) -> None:
    page = await session.execute_page("SELECT c FROM paged WHERE p = 0 LIMIT 10", fetch_size=50)
    assert len(page) == 10
    assert page.paging_state is None


async def test_statement_settings_are_honoured(session: AsyncSession) -> None:
    strict = SimpleStatement(
        "SELECT c FROM paged WHERE p = 0", consistency_level=ConsistencyLevel.THREE
    )
    with pytest.raises(QueryError, match="THREE"):
        await session.execute(strict)
    relaxed = await session.execute(strict, consistency="ONE")
    assert len(relaxed) > 0
    assert strict.consistency_level == ConsistencyLevel.THREE

    prepared = await session.prepare("SELECT c FROM paged WHERE p = ?")
    bound = prepared.bind([0])
    bound.consistency_level = ConsistencyLevel.THREE
    with pytest.raises(QueryError, match="THREE"):
        await session.execute(bound)

    sizes: list[int] = []
    small_pages = SimpleStatement("SELECT c FROM paged WHERE p = 0", fetch_size=250)
    config = StreamConfig(page_callback=lambda _page, rows: sizes.append(rows))
    async with await session.execute_stream(small_pages, stream_config=config) as stream:
        assert len([row async for row in stream]) == 3000
    assert set(sizes) == {250}


async def test_bound_statement_and_parameters_together_are_refused(session: AsyncSession) -> None:
    prepared = await session.prepare("SELECT c FROM paged WHERE p = ?")
    with pytest.raises(QueryError, match="carries its own values"):
        await session.execute(prepared.bind([0]), [0])
    simple = SimpleStatement("SELECT c FROM paged WHERE p = %s")
    with pytest.raises(QueryError, match="prepare"):
        await session.execute(simple, [0])


async def test_batch_from_pairs_and_from_a_batch_statement(session: AsyncSession) -> None:
    insert = await session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
    tag = uuid.uuid4().hex
    await session.execute_batch(
        [
            (insert, [f"{tag}-a", 1]),
            (insert, (f"{tag}-b", 2)),
            (f"INSERT INTO kv (k, v) VALUES ('{tag}-c', 3)", None),
        ]
    )
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    batch.add(insert, (f"{tag}-d", 4))
    await session.execute_batch(batch)
    read = await session.prepare("SELECT v FROM kv WHERE k = ?")
    values = [(await session.execute(read, [f"{tag}-{suffix}"])).one() for suffix in "abcd"]
    assert [row.v for row in values if row is not None] == [1, 2, 3, 4]

    with pytest.raises(QueryError, match="prepare"):
        await session.execute_batch([("INSERT INTO kv (k, v) VALUES (?, ?)", ["x", 1])])
    with pytest.raises(QueryError, match="could not bind"):
        await session.execute_batch([(insert, ["x", "not a number"])])


async def test_set_keyspace(cluster: AsyncCluster) -> None:
    async with cluster.connect() as session:
        assert session.keyspace is None
        await session.set_keyspace(KEYSPACE)
        assert session.keyspace == KEYSPACE
        assert len(await session.execute("SELECT c FROM paged WHERE p = 0 LIMIT 5")) == 5


async def test_writes_and_ddl_return_at_once(session: AsyncSession) -> None:
    started = time.perf_counter()
    result = await session.execute("INSERT INTO kv (k, v) VALUES ('at-once', 1)")
    write = time.perf_counter() - started
    assert len(result) == 0
    assert result.one() is None

    table = f"ddl_{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    await session.execute(f"CREATE TABLE {table} (k int PRIMARY KEY)")
    await session.execute(f"DROP TABLE {table}")
    ddl = time.perf_counter() - started
    print(f"\nwrite {write * 1000:.1f} ms, create + drop table {ddl * 1000:.0f} ms")
    assert write < 0.5
    assert ddl < 5


async def test_server_warnings_come_with_the_result(session: AsyncSession) -> None:
    result = await session.execute("SELECT count(*) FROM big")
    assert any("Aggregation query used without partition key" in w for w in result.warnings)
