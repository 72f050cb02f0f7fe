"""Row and AsyncResultSet as plain Python objects (the node-backed tests are in tests/core)."""

from __future__ import annotations

import pickle

import pytest

from cassnb._core.results import AsyncResultSet, Row, Rows, join_pages, row_class, row_factory


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
