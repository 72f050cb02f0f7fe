"""The compiled page decoder on pages built by hand: same columns as the Python path, and
clean errors on hostile bytes.

The reference is the driver decoding the same bytes into rows, then the type table's
pure-Python decoder; both must give equal arrays of equal dtypes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import mmap
import random
import struct
import time
import uuid
from typing import Any

import hypothesis.strategies as st
import pandas as pd
import pytest
from _native_pages import (
    CQL_TYPES,
    EDGES,
    VALUES,
    assert_same_columns,
    both_ways,
    page_body,
    raw_page,
    raw_page_of_cells,
)
from cassandra import cqltypes
from cassandra.util import Date
from hypothesis import HealthCheck, given, settings

from cassnb._core.errors import CassandraError
from cassnb._driver import Arrivals
from cassnb._driver.fast.pages import RawPage
from cassnb._frames import columnar as _columnar
from cassnb._frames import memory, plans
from cassnb._frames.types import ColumnwiseDecoder, FrameSchema

pytestmark = pytest.mark.skipif(
    not _columnar.native_available(), reason="the compiled decoder is not built"
)

BACKENDS = ["numpy_nullable", "pyarrow"]
NAMES = sorted(CQL_TYPES)
native = _columnar._native


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[Any]]]:
    """A few columns of random types and rows of their values, NULLs and edge values."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6))
    null_rate = draw(st.sampled_from([0.0, 0.3, 1.0]))
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        row = []
        for name in names:
            if draw(st.floats(0, 1)) < null_rate:
                row.append(None)
            elif name in EDGES and draw(st.booleans()):
                row.append(draw(st.sampled_from(EDGES[name])))
            else:
                row.append(draw(VALUES[name]))
        rows.append(row)
    return names, rows


@pytest.mark.parametrize("backend", BACKENDS)
@given(table=tables())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_native_equals_python(backend: str, table: tuple[list[str], list[list[Any]]]) -> None:
    """Any table of any types decodes to the same columns both ways."""
    names, rows = table
    page = raw_page([CQL_TYPES[n] for n in names], rows)
    native_columns, reference = both_ways(page, backend)
    assert_same_columns(native_columns, reference)
    assert all(len(column) == len(rows) for column in native_columns)


@pytest.mark.parametrize("backend", BACKENDS)
@given(table=tables(), data=st.data())
@settings(max_examples=100, deadline=None)
def test_prefix_and_chosen_columns(
    backend: str, table: tuple[list[str], list[list[Any]]], data: st.DataObject
) -> None:
    """A page cut to its first rows, and a schema that picks, reorders or repeats columns."""
    names, rows = table
    page = raw_page([CQL_TYPES[n] for n in names], rows)
    keep = data.draw(st.integers(0, len(rows)))
    cut = page[:keep]
    assert isinstance(cut, RawPage)
    assert len(cut) == keep
    positions = data.draw(st.lists(st.integers(0, len(names) - 1), min_size=1, max_size=8))
    schema = FrameSchema.from_metadata(page.column_names, page.column_types, backend, positions)  # type: ignore[arg-type]
    native_columns = _columnar.decode_page(cut, schema)
    reference = ColumnwiseDecoder().decode(list(cut), schema)
    if keep:
        assert_same_columns(native_columns, reference)
    assert [len(c) for c in native_columns] == [keep] * len(positions)


def test_repeated_column_owns_its_memory() -> None:
    """SELECT a, a: writing to one frame column never changes the other."""
    page = raw_page([cqltypes.Int32Type], [[1], [2]])
    schema = FrameSchema.from_metadata(
        page.column_names, page.column_types, "numpy_nullable", [0, 0]
    )
    first, second = _columnar.decode_page(page, schema)
    first[0] = 99
    assert second[0] == 1


def test_rows_of_a_raw_page_are_the_drivers() -> None:
    """Iterating a RawPage gives the rows the driver makes, through the row factory."""
    types = [
        cqltypes.Int32Type,
        cqltypes.UTF8Type,
        cqltypes.ListType.apply_parameters([cqltypes.Int32Type]),
    ]
    page = raw_page(types, [[1, "a", [1, 2]], [None, "", None]])
    assert list(page) == [(1, "a", [1, 2]), (None, "", None)]
    source = Arrivals(lambda names, rows: [dict(zip(names, row, strict=True)) for row in rows])
    page = source(["c0", "c1", "c2"], raw_page(types, [[1, "a", [1, 2]], [None, "", None]]))
    assert isinstance(page, RawPage)
    assert page[:1] == [{"c0": 1, "c1": "a", "c2": [1, 2]}]
    assert page[1] == {"c0": None, "c1": "", "c2": None}
    # Rows were read: the request's later pages are decoded into rows on arrival.
    later = source(["c0", "c1", "c2"], raw_page(types, [[2, "b", None]]))
    assert later == [{"c0": 2, "c1": "b", "c2": None}]


def test_empty_values_of_fixed_width_types_are_null() -> None:
    """A zero-length int cell (written as an empty blob) reads as NULL both ways."""
    cells = [[b"", b"", b"", b""], [b"\x00\x00\x00\x07", b"x", b"\x01", b""]]
    types = [cqltypes.Int32Type, cqltypes.UTF8Type, cqltypes.BooleanType, cqltypes.UUIDType]
    page = raw_page_of_cells(types, cells)
    for backend in BACKENDS:
        native_columns, reference = both_ways(page, backend)
        assert_same_columns(native_columns, reference)
    assert pd.isna(native_columns[0][0]) and native_columns[1][0] == ""


# --- hostile input ------------------------------------------------------------------------

ALL_KINDS = [
    native.K_SKIP, native.K_FIX1, native.K_FIX2, native.K_FIX4, native.K_FIX8, native.K_BOOL,
    native.K_DATE, native.K_UUID, native.K_UTF8, native.K_ASCII, native.K_BLOB,
    native.K_UUID_TEXT, native.K_UTF8_OBJ, native.K_ASCII_OBJ, native.K_BLOB_OBJ,
    native.K_UUID_OBJ, native.K_RAW, native.K_DATE_SECONDS,
] if native is not None else []  # fmt: skip


def decode_kinds(body: bytes, kinds: bytes, offset: int = 8, limit: int = -1) -> list[Any]:
    """Run scan and fill on ``body`` with the given kinds, allocating as decode_page does."""
    rows, _, sizes = native.scan(body, offset, kinds, limit)
    outs = [
        plans.column_buffers(kind, rows, sizes[i], wide=i % 2 == 0) for i, kind in enumerate(kinds)
    ]
    objects, nulls = native.fill(body, offset, kinds, rows, outs)
    assert len(nulls) == len(kinds)
    return list(objects)


def _sample_page() -> tuple[bytes, list[type[Any]]]:
    types = [CQL_TYPES[n] for n in ("int", "text", "uuid", "bigint", "blob", "list<int>", "date")]
    rows = [
        [7, "héllo", uuid.UUID(int=2**100 + 5), 2**40, b"\x00\xff", [1, 2], Date(-5)],
        [None, "", None, -1, b"", None, None],
    ]
    page = raw_page(types, rows)
    return page.body, types


def test_every_truncation_raises_value_error() -> None:
    """A page cut at any byte fails with ValueError, for every kind of column."""
    body, _ = _sample_page()
    for kind in ALL_KINDS:
        kinds = bytes([kind] * 7)
        for end in range(len(body)):
            with pytest.raises(ValueError):
                decode_kinds(body[:end], kinds)


def test_truncated_raw_page_raises_cassnb_error_through_the_seam() -> None:
    """The frames seam turns a malformed page into a cassnb error."""
    body, types = _sample_page()
    metadata = [("ks", "tbl", f"c{i}", t) for i, t in enumerate(types)]
    page = RawPage(body[:-3], 0, 8, metadata, 5, {}, metadata)
    schema = FrameSchema.from_metadata(page.column_names, page.column_types, "numpy_nullable")
    with pytest.raises(CassandraError):
        _columnar.NativeDecoder(ColumnwiseDecoder()).decode(page, schema)


def test_corrupted_pages_never_crash() -> None:
    """Random byte flips, length rewrites and garbage give values or ValueError, nothing else."""
    body, _ = _sample_page()
    generator = random.Random(1234)
    for _ in range(3000):
        mutated = bytearray(body)
        for _ in range(generator.randint(1, 6)):
            position = generator.randrange(len(mutated))
            if generator.random() < 0.3 and position + 4 <= len(mutated):
                length = generator.choice([-2, -1, 0, 1, 15, 16, 17, 2**31 - 1, -(2**31)])
                mutated[position : position + 4] = struct.pack(">i", length)
            else:
                mutated[position] = generator.randrange(256)
        kinds = bytes(generator.choice(ALL_KINDS) for _ in range(7))
        limit = generator.choice([-1, 0, 1, 2, 5])
        with contextlib.suppress(ValueError):
            decode_kinds(bytes(mutated), kinds, limit=limit)


def test_wrong_fixed_width_is_a_value_error() -> None:
    """An int cell of 3 bytes is refused, not read past its end."""
    body = page_body([[b"\x00\x00\x01"]], 1)
    for kind in (
        native.K_FIX4,
        native.K_UUID,
        native.K_UUID_OBJ,
        native.K_UUID_TEXT,
        native.K_BOOL,
    ):
        with pytest.raises(ValueError, match="fixed width"):
            decode_kinds(body, bytes([kind]))


def test_bad_text_is_a_value_error() -> None:
    """Invalid UTF-8 in text, and non-ASCII in ascii, are refused like the driver does."""
    for data, kinds in (
        (b"\xff", (native.K_UTF8, native.K_UTF8_OBJ)),
        (b"\xed\xa0\x80", (native.K_UTF8, native.K_UTF8_OBJ)),
        (b"\xc3", (native.K_UTF8, native.K_UTF8_OBJ)),
        (b"caf\xc3\xa9", (native.K_ASCII, native.K_ASCII_OBJ)),
    ):
        body = page_body([[data]], 1)
        for kind in kinds:
            with pytest.raises(ValueError):
                decode_kinds(body, bytes([kind]))


def test_bad_arguments_are_refused() -> None:
    """Unknown kinds, short output buffers and wrong row counts raise, never write."""
    body = page_body([[b"\x00\x00\x00\x01"], [b"\x00\x00\x00\x02"]], 1)
    with pytest.raises(ValueError, match="unknown column kind"):
        native.scan(body, 8, bytes([200]), -1)
    with pytest.raises(ValueError, match="values buffer"):
        native.fill(body, 8, bytes([native.K_FIX4]), 2, [(bytearray(4), bytearray(2))])
    with pytest.raises(ValueError, match="rows of a page"):
        native.fill(body, 8, bytes([native.K_FIX4]), 3, [(bytearray(12), bytearray(3))])
    with pytest.raises(TypeError):
        native.fill(body, 8, bytes([native.K_FIX4]), 2, [None])
    with pytest.raises(ValueError, match="row count"):
        native.scan(body, len(body) - 2, bytes([native.K_FIX4]), -1)
    with pytest.raises(ValueError, match="negative row count"):
        native.scan(b"\xff\xff\xff\xff", 0, b"", -1)
    with pytest.raises(BufferError):
        native.fill(body, 8, bytes([native.K_FIX4]), 2, [(b"readonly!", bytearray(2))])


def test_rows_of_no_columns_take_no_time() -> None:
    """A page claiming two billion rows of no columns is read at once, not row by row."""
    body = struct.pack(">iii", 0x0004, 0, 2**31 - 1)
    started = time.perf_counter()
    assert native.scan(body, 8, b"", -1)[:2] == (2**31 - 1, 12)
    assert native.fill(body, 8, b"", 2**31 - 1, []) == ([], [])
    assert time.perf_counter() - started < 1.0


def test_a_zeroed_mask_gets_only_its_nulls_written() -> None:
    """(values, mask, True): the mask is taken as zeros, and only NULL rows are written."""
    body = page_body([[struct.pack(">i", 7)], [None], [struct.pack(">i", 9)], [b""]], 1)
    kinds = bytes([native.K_FIX4])
    values, mask = bytearray(16), bytearray(b"\xee" * 4)
    _, nulls = native.fill(body, 8, kinds, 4, [(values, mask, True)])
    assert nulls == [2]
    assert struct.unpack("<4i", values) == (7, 0, 9, 0)
    # Rows with a value are left as they were: in a fresh mapping, pages never touched.
    assert bytes(mask) == b"\xee\x01\xee\x01"
    values, mask = bytearray(16), bytearray(b"\xee" * 4)
    native.fill(body, 8, kinds, 4, [(values, mask, False)])
    assert bytes(mask) == b"\x00\x01\x00\x01"
    values, mask = bytearray(16), bytearray(b"\xee" * 4)
    native.fill(body, 8, kinds, 4, [(values, mask)])
    assert bytes(mask) == b"\x00\x01\x00\x01"
    with pytest.raises(TypeError):
        native.fill(body, 8, kinds, 4, [(values, mask, True, True)])


def test_fixed_width_columns_go_from_the_first_row_asked() -> None:
    """first_row: fixed-width values and NULLs go after the rows already in the buffers,
    which must have room for them; other kinds are written from their start as always."""
    body = page_body([[struct.pack(">i", 7), b"a"], [None, b"b"]], 2)
    kinds = bytes([native.K_FIX4, native.K_BLOB])
    values, mask = bytearray(b"\xee" * 20), bytearray(b"\xee" * 5)
    text = (bytearray(12), bytearray(2), bytearray(2))
    _, nulls = native.fill(body, 8, kinds, 2, [(values, mask, True), text], 3)
    assert nulls == [1, 0]
    assert bytes(values[:12]) == b"\xee" * 12 and struct.unpack("<2i", values[12:]) == (7, 0)
    assert bytes(mask) == b"\xee" * 4 + b"\x01"
    assert bytes(text[1]) == b"ab" and struct.unpack("<3i", text[0]) == (0, 1, 2)
    with pytest.raises(ValueError, match="values buffer"):
        native.fill(body, 8, kinds, 2, [(values, mask, True), text], 4)
    with pytest.raises(ValueError, match="first_row"):
        native.fill(body, 8, kinds, 2, [(values, mask, True), text], -1)
    with pytest.raises(ValueError, match="first_row"):
        native.fill(body, 8, kinds, 2, [(values, mask, True), text], 2**62)


@given(st.binary(max_size=64))
@settings(max_examples=2000)
def test_utf8_check_agrees_with_python(data: bytes) -> None:
    """The C UTF-8 check accepts exactly what Python's strict decoder accepts."""
    try:
        data.decode("utf-8")
        expected = True
    except UnicodeDecodeError:
        expected = False
    assert native.valid_utf8(data) is expected


@given(st.text())
def test_utf8_check_accepts_all_text(text: str) -> None:
    """Every encodable str passes (surrogates cannot be encoded, so never appear)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert native.valid_utf8(data)


def _big_page(rows: int) -> tuple[RawPage, FrameSchema]:
    types = [cqltypes.Int32Type, cqltypes.DoubleType, cqltypes.UTF8Type, cqltypes.DateType]
    values = [
        [None if i % 7 == 0 else i, i / 3, f"r{i}", None if i % 5 else dt.datetime(2020, 1, 1)]
        for i in range(rows)
    ]
    keep = Arrivals(lambda names, rows: rows)
    page = keep(["c0", "c1", "c2", "c3"], raw_page(types, values))
    assert isinstance(page, RawPage)
    return page, FrameSchema.from_metadata(page.column_names, page.column_types, "numpy_nullable")


def _mapped(array: Any) -> bool:
    """Tell whether an array's memory is a mapping (following views to their owner)."""
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        parent = getattr(base, "base", None)
        base = getattr(base, "obj", None) if parent is None else parent
    return base is not None


def test_big_pages_of_a_stream_use_mappings() -> None:
    """A stream's big pages put numpy columns in mappings, and decode to the same columns."""
    page, schema = _big_page(3000)
    columns = _columnar.decode_page(page, schema)
    assert_same_columns(columns, ColumnwiseDecoder().decode(list(page), schema))
    assert _mapped(columns[0]._data) and _mapped(columns[0]._mask)
    assert not _mapped(columns[2]._pa_array.chunks[0].buffers()[2])


def test_without_mappings_left_pages_use_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cap on mappings, buffers come from the heap and decode the same."""
    monkeypatch.setattr(memory, "_mappings", [memory._MAPPINGS_MAX])
    page, schema = _big_page(3000)
    columns = _columnar.decode_page(page, schema)
    assert_same_columns(columns, ColumnwiseDecoder().decode(list(page), schema))
    assert not _mapped(columns[0]._data)
