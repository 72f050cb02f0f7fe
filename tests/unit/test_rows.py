"""Row and AsyncResultSet as plain Python objects (the node-backed tests are in tests/core)."""

from __future__ import annotations

import pickle

import pytest

from cassnb._core.results import (
    AsyncResultSet,
    Row,
    Rows,
    clean_name,
    join_pages,
    row_class,
    row_factory,
)


def test_one_class_per_tuple_of_column_names() -> None:
    assert row_class(("a", "b")) is row_class(("a", "b"))
    assert row_class(("a", "b")) is not row_class(("b", "a"))
    rows = row_factory(["a", "b"], [(1, 2), (3, 4)])
    assert type(rows[0]) is type(rows[1]) is row_class(("a", "b"))


def test_names_that_are_not_attributes_stay_reachable_by_key() -> None:
    (row,) = row_factory(["Mixed Case", "class", "_hidden", "_fields", "index"], [(1, 2, 3, 4, 5)])
    assert row["Mixed Case"] == 1
    assert row["class"] == 2
    assert row["_hidden"] == 3
    assert row["_fields"] == 4
    assert row._fields == ("Mixed Case", "class", "_hidden", "_fields", "index")
    assert row.index == 5
    assert row[0] == 1


def test_duplicate_column_names_keep_the_first_as_attribute() -> None:
    (row,) = row_factory(["a", "a"], [(1, 2)])
    assert row.a == 1
    assert row[1] == 2


def test_rows_are_tuples() -> None:
    (row,) = row_factory(["x", "y"], [(1, None)])
    assert isinstance(row, tuple)
    assert row == (1, None)
    assert hash(row) == hash((1, None))
    assert list(row) == [1, None]
    x, y = row
    assert (x, y) == (1, None)
    assert pickle.loads(pickle.dumps(row)).x == 1
    assert isinstance(row, Row)


def test_result_set_of_nothing() -> None:
    empty = AsyncResultSet([], column_names=["x"])
    assert empty.one() is None
    assert empty.all() == []
    assert len(empty) == 0
    assert "0 rows" in repr(empty)
    with pytest.raises(IndexError):
        empty[0]


def test_a_page_makes_its_rows_when_read() -> None:
    raw = [(1, "a"), (2, "b"), (3, "c")]
    page = row_factory(["n", "s"], raw)
    assert isinstance(page, Rows)
    assert len(page) == 3
    assert page[0].s == "a"
    assert page[-1] == (3, "c")
    assert page[1:] == [(2, "b"), (3, "c")]
    assert [row.n for row in page] == [1, 2, 3]
    assert page == raw
    assert all(type(row) is row_class(("n", "s")) for row in page)
    assert pickle.loads(pickle.dumps(page)) == page
    assert "3 rows of n, s" in repr(page)


def test_pages_join_into_one_sequence() -> None:
    first = row_factory(["n"], [(1,), (2,)])
    second = row_factory(["n"], [(3,)])
    joined = join_pages([first, second])
    assert isinstance(joined, Rows)
    assert [row.n for row in joined] == [1, 2, 3]
    assert join_pages([first]) is first
    assert join_pages([first, [(9,)]]) == [(1,), (2,), (9,)]


def test_a_result_set_over_a_lazy_page() -> None:
    result = AsyncResultSet(row_factory(["n"], [(1,), (2,)]), column_names=["n"])
    first = result.one()
    assert first is not None
    assert first.n == 1
    assert [row.n for row in result.all()] == [1, 2]
    assert result[1:] == [(2,)]


def test_joined_pages_keep_each_pages_column_names() -> None:
    """A table changed between two pages: each row keeps its own page's names."""
    before = row_factory(["k", "b", "d"], [(1, 10, "d1")])
    after = row_factory(["k", "b", "c2", "d"], [(2, 20, "c", "d2")])
    rows = list(join_pages([before, after]))
    assert [row.d for row in rows] == ["d1", "d2"]
    assert rows[1]["c2"] == "c"
    assert rows[0]._fields == ("k", "b", "d")


def test_a_column_the_driver_would_rename_is_also_reachable_by_that_name() -> None:
    (row,) = row_factory(["[applied]", "ttl(v)", "k"], [(True, 30, "a")])
    assert row.applied is True
    assert row["applied"] is row["[applied]"] is True
    assert row.ttl_v == row["ttl(v)"] == 30
    assert row._fields == ("[applied]", "ttl(v)", "k")
    assert row._asdict() == {"[applied]": True, "ttl(v)": 30, "k": "a"}
    assert pickle.loads(pickle.dumps(row)).applied is True


def test_a_clean_name_never_hides_a_real_column() -> None:
    (row,) = row_factory(["[applied]", "applied", "a b", "a-b"], [(1, 2, 3, 4)])
    assert row.applied == row["applied"] == 2
    assert row["[applied]"] == 1
    # Two columns that clean to the same name: the first one has it.
    assert row.a_b == 3
    assert row["a-b"] == 4


@pytest.mark.parametrize(
    "name",
    ["[applied]", "ttl(v)", "writetime(v)", "system.count(k)", "_x", "a b", "Mixed Case", "ünï"],
)
def test_names_clean_as_the_drivers_rows_clean_them(name: str) -> None:
    from cassandra.query import named_tuple_factory

    (driver_row,) = named_tuple_factory([name], [(1,)])
    assert clean_name(name) == driver_row._fields[0]


def test_a_result_set_offers_its_rows_as_a_list() -> None:
    result = AsyncResultSet(row_factory(["n"], [(1,), (2,)]), column_names=["n"])
    assert result.rows == result.all() == [(1,), (2,)]
    assert result.rows is result.rows
    assert result.get_query_trace() is None
    assert result.trace_id is None


async def test_a_result_set_iterates_with_async_for() -> None:
    result = AsyncResultSet(row_factory(["n"], [(1,), (2,), (3,)]), column_names=["n"])
    assert [row.n async for row in result] == [1, 2, 3]
    # Each ``async for`` starts again from the first row.
    assert [row.n async for row in result] == [1, 2, 3]
    assert [row async for row in AsyncResultSet([])] == []


def test_a_trace_that_could_not_be_fetched_is_raised_when_asked_for() -> None:
    from cassandra.query import TraceUnavailable

    failure = TraceUnavailable("not written yet")
    result = AsyncResultSet([], column_names=["n"], trace_error=failure)
    for _ in range(2):
        with pytest.raises(TraceUnavailable, match="not written yet"):
            result.get_query_trace()
