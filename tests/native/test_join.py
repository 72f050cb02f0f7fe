"""Pages of one frame laid end to end: joining their numpy columns copies nothing."""

from __future__ import annotations

import datetime as dt
import mmap
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _native_pages import assert_same_columns, raw_page
from cassandra import cqltypes
from cassandra.util import Date, Time

from cassnb._driver import Arrivals
from cassnb._driver.fast.pages import RawPage
from cassnb._frames import columnar as _columnar
from cassnb._frames import join, memory
from cassnb._frames import read as _frames
from cassnb._frames.types import ColumnwiseDecoder, FrameSchema

pytestmark = pytest.mark.skipif(
    not _columnar.native_available(), reason="the compiled decoder is not built"
)

TYPES = [
    cqltypes.Int32Type,
    cqltypes.LongType,
    cqltypes.FloatType,
    cqltypes.BooleanType,
    cqltypes.ByteType,
    cqltypes.UTF8Type,
    cqltypes.TimeType,
]


def _rows(start: int, count: int) -> list[list[Any]]:
    return [
        [
            None if i % 7 == 0 else i,
            i * 1_000_003,
            i / 4,
            None if i % 5 == 0 else i % 2 == 0,
            i % 100,
            f"r{i}",
            Time(i * 1_000),
        ]
        for i in range(start, start + count)
    ]


def _pages(count: int, rows: int) -> tuple[list[RawPage], FrameSchema]:
    return _sized_pages([rows] * count)


def _sized_pages(
    sizes: list[int],
    types: list[type[Any]] = TYPES,
    rows_from: Callable[[int, int], list[list[Any]]] = _rows,
) -> tuple[list[RawPage], FrameSchema]:
    """Return pages of one request holding ``sizes`` rows, one after another."""
    source = Arrivals(lambda names, rows: rows)
    pages = []
    start = 0
    for rows in sizes:
        names = [f"c{index}" for index in range(len(types))]
        page = source(names, raw_page(types, rows_from(start, rows)))
        assert isinstance(page, RawPage)
        pages.append(page)
        start += rows
    schema = FrameSchema.from_metadata(
        pages[0].column_names, pages[0].column_types, "numpy_nullable"
    )
    return pages, schema


def _mapping_of(array: np.ndarray[Any, Any]) -> Any:
    base: Any = array
    while base is not None and not isinstance(base, mmap.mmap):
        parent = getattr(base, "base", None)
        base = getattr(base, "obj", None) if parent is None else parent
    return base


def _joined(decode: Any, pages: list[RawPage], schema: FrameSchema) -> list[Any]:
    columns: list[list[Any]] = [[] for _ in schema.names]
    for page in pages:
        for column, array in zip(columns, decode(page, schema), strict=True):
            column.append(array)
    return [_frames.concat_chunks(column) for column in columns]


def _joined_natively(pages: list[RawPage], schema: FrameSchema) -> list[Any]:
    """Join ``pages`` decoded for a join, checked against the pure-Python decoder."""
    decoder = _columnar.NativeDecoder(ColumnwiseDecoder())
    joined = _joined(decoder.decode_for_join, pages, schema)
    reference = _joined(ColumnwiseDecoder().decode, [list(p) for p in pages], schema)  # type: ignore[arg-type]
    assert_same_columns(joined, reference)
    return joined


def test_joined_pages_are_one_view_of_one_mapping() -> None:
    pages, schema = _pages(4, 2000)
    joined = _joined_natively(pages, schema)
    for array in joined[:5]:
        assert isinstance(
            array, pd.arrays.IntegerArray | pd.arrays.FloatingArray | pd.arrays.BooleanArray
        )
        assert _mapping_of(array._data) is not None
        assert _mapping_of(array._mask) is not None
    # Each column's values, and its NULL mask, lie in a mapping of their own.
    owners = {id(_mapping_of(array._data)) for array in joined[:5]}
    owners |= {id(_mapping_of(array._mask)) for array in joined[:5]}
    assert len(owners) == 10
    # A plain numpy column (time of day) too; text stays in Arrow chunks, one per page.
    assert isinstance(joined[6], np.ndarray) and _mapping_of(joined[6]) is not None
    assert joined[5]._pa_array.num_chunks == 4


def test_a_short_last_page_is_cut_from_the_same_mapping() -> None:
    # A page too small for a mapping of its own still goes after the others: on the heap,
    # it would make the join copy every column.
    pages, schema = _sized_pages([2000, 2000, 7])
    joined = _joined_natively(pages, schema)
    for array in joined[:5]:
        assert len(array) == 4007
        assert _mapping_of(array._data) is not None
        assert _mapping_of(array._mask) is not None


def test_arrow_columns_of_a_joined_read_are_one_chunk() -> None:
    pages, _ = _sized_pages([2000, 2000, 7])
    schema = FrameSchema.from_metadata(pages[0].column_names, pages[0].column_types, "pyarrow")
    joined = _joined_natively(pages, schema)
    # Numbers, booleans and times: one Arrow array over the whole read, not one per page.
    for index in (0, 1, 2, 3, 4, 6):
        assert joined[index]._pa_array.num_chunks == 1
        assert len(joined[index]) == 4007


def test_pages_of_two_reads_are_joined_by_a_copy() -> None:
    # Decoded for a join, but into two requests' blocks: each page's array is built, then
    # the arrays are concatenated.
    first, schema = _pages(2, 2000)
    second, _ = _sized_pages([2000])
    pages = [first[0], second[0], first[1]]
    joined = _joined_natively(pages, schema)
    assert all(_mapping_of(array._data) is None for array in joined[:5])


def test_pages_not_laid_end_to_end_are_copied() -> None:
    pages, schema = _pages(3, 2000)
    decoder = _columnar.NativeDecoder(ColumnwiseDecoder())
    chunks = [decoder.decode(page, schema)[0] for page in pages]
    assert join.join_adjacent(chunks) is None
    joined = _frames.concat_chunks(chunks)
    assert joined.tolist() == [pd.NA if i % 7 == 0 else i for i in range(6000)]


def test_adjacent_views_of_other_buffers_are_not_taken_for_one() -> None:
    left = np.arange(10, dtype=np.int32)
    right = np.arange(10, 20, dtype=np.int32)
    mask = np.zeros(10, dtype=bool)
    chunks = [pd.arrays.IntegerArray(left, mask), pd.arrays.IntegerArray(right, mask)]
    assert join.join_adjacent(chunks) is None
    region = np.zeros(80, dtype=np.uint8)
    assert join._adjacent([region[:40].view(np.int32), region[40:].view(np.int64)]) is None
    assert join._adjacent([region[:40].view(np.int32), region[44:].view(np.int32)]) is None
    whole = join._adjacent([region[:40].view(np.int32), region[40:].view(np.int32)])
    assert whole is not None and len(whole) == 20 and np.shares_memory(whole, region)


def _dated_rows(start: int, count: int) -> list[list[Any]]:
    epoch = dt.datetime(1970, 1, 1)
    return [
        [
            None if i % 3 == 0 else epoch + dt.timedelta(milliseconds=i * 86_400_123),
            None if i % 4 == 0 else Date(i - 3000),
        ]
        for i in range(start, start + count)
    ]


def test_timestamps_and_dates_of_a_joined_read_view_their_mapping() -> None:
    # Both are written by C in their final form (milliseconds; seconds, NaT for NULL),
    # so the frame's columns are the memory the pages were decoded into, not a copy.
    types = [cqltypes.DateType, cqltypes.SimpleDateType]
    pages, schema = _sized_pages([2000] * 3, types, _dated_rows)
    joined = _joined_natively(pages, schema)
    timestamps, days = joined
    assert str(timestamps.dtype) == "datetime64[ms, UTC]" and days.dtype == "datetime64[s]"
    assert _mapping_of(timestamps._ndarray) is not None
    assert _mapping_of(days) is not None
    assert int(pd.isna(timestamps).sum()) == 2000 and int(pd.isna(days).sum()) == 1500
    assert days[1] == np.datetime64("1961-10-16")  # 2999 days before 1970


def _object_rows(start: int, count: int) -> list[list[Any]]:
    return [
        [
            None if i % 6 == 0 else uuid.UUID(int=i * 2**70 + i),
            None if i % 4 == 0 else [i, -i, 2**31 - 1],
        ]
        for i in range(start, start + count)
    ]


def _object_pages(sizes: list[int]) -> tuple[list[RawPage], FrameSchema]:
    types = [cqltypes.UUIDType, cqltypes.ListType.apply_parameters([cqltypes.Int32Type])]
    return _sized_pages(sizes, types, _object_rows)


def test_object_columns_of_a_joined_read_are_written_into_one_array() -> None:
    # Enough pages for the array to grow several times; the column the frame gets is
    # that array, cut to its length: no page's array is left to join by a copy.
    pages, schema = _object_pages([5000] * 20 + [3])
    decoder = _columnar.NativeDecoder(ColumnwiseDecoder())
    columns: list[list[Any]] = [[], []]
    for page in pages:
        for column, chunk in zip(columns, decoder.decode_for_join(page, schema), strict=True):
            column.append(chunk)
    runs = [column[0].run for column in columns]
    gathered = [run.values for run in runs]
    joined = [_frames.concat_chunks(column) for column in columns]
    assert [array is values for array, values in zip(joined, gathered, strict=True)] == [
        True,
        True,
    ]
    reference = _joined(ColumnwiseDecoder().decode, [list(p) for p in pages], schema)  # type: ignore[arg-type]
    assert_same_columns(joined, reference)
    assert all(len(array) == 100_003 and array.base is None for array in joined)
    assert joined[0][7] == uuid.UUID(int=7 * 2**70 + 7) and joined[0][6] is None
    assert joined[1][5] == [5, -5, 2**31 - 1] and joined[1][4] is None


def test_object_pages_of_two_reads_are_joined_by_a_copy() -> None:
    first, schema = _object_pages([300, 300])
    second, _ = _object_pages([300])
    pages = [first[0], second[0], first[1]]
    joined = _joined_natively(pages, schema)
    assert [len(array) for array in joined] == [900, 900]


def test_a_column_read_twice_in_a_joined_read_gets_two_arrays() -> None:
    pages, _ = _object_pages([300, 300])
    schema = FrameSchema.from_metadata(
        pages[0].column_names, pages[0].column_types, "numpy_nullable", [0, 0]
    )
    decoder = _columnar.NativeDecoder(ColumnwiseDecoder())
    first, again = _joined(decoder.decode_for_join, pages, schema)
    assert not np.shares_memory(first, again)
    assert list(first) == list(again) and len(first) == 600


def test_a_number_column_read_twice_in_a_joined_read_gets_two_arrays() -> None:
    pages, _ = _pages(3, 2000)
    schema = FrameSchema.from_metadata(
        pages[0].column_names, pages[0].column_types, "numpy_nullable", [1, 0, 1]
    )
    joined = _joined_natively(pages, schema)
    assert not np.shares_memory(joined[0]._data, joined[2]._data)
    assert _mapping_of(joined[0]._data) is not None
    assert joined[0].tolist() == joined[2].tolist() == [i * 1_000_003 for i in range(6000)]


def test_a_joined_read_without_mappings_left_joins_heap_pages_by_a_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "_mappings", [memory._MAPPINGS_MAX])
    pages, schema = _sized_pages([2000, 2000, 7])
    joined = _joined_natively(pages, schema)
    for array in joined[:5]:
        assert len(array) == 4007
        assert _mapping_of(array._data) is None


def test_pages_of_a_block_after_other_pages_are_joined_by_a_copy() -> None:
    pages, schema = _pages(3, 2000)
    decoder = _columnar.NativeDecoder(ColumnwiseDecoder())
    chunks = [decoder.decode(pages[0], schema)[0]]
    chunks += [decoder.decode_for_join(page, schema)[0] for page in pages[1:]]
    assert join.join_adjacent(chunks) is None
    joined = _frames.concat_chunks(chunks)
    assert joined.tolist() == [pd.NA if i % 7 == 0 else i for i in range(6000)]
