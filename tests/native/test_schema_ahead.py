"""Pages decoded as they arrive, when the table changes between two of them.

A page whose columns are not those of the schema its read decodes ahead with is left to
the loop, which decodes it by its own columns; the pages after it may then be decoded
ahead again, by theirs.
"""

from __future__ import annotations

from typing import Any

import pytest
from _native_pages import PROTOCOL, assert_same_columns, page_body
from cassandra import cqltypes

from cassnb import CassandraError
from cassnb._driver import Arrivals
from cassnb._driver.fast.pages import RawPage
from cassnb._frames import columnar as _columnar
from cassnb._frames import join
from cassnb._frames.follow import FrameColumns
from cassnb._frames.types import ColumnwiseDecoder

pytestmark = pytest.mark.skipif(
    not _columnar.native_available(), reason="the compiled decoder is not built"
)

BEFORE = [("k", cqltypes.Int32Type), ("b", cqltypes.DoubleType), ("d", cqltypes.UTF8Type)]
#: ``c2`` added: ``d`` moves one place right.
AFTER = [*BEFORE[:2], ("c2", cqltypes.UTF8Type), BEFORE[2]]


def _value(name: str, cqltype: Any, i: int) -> Any:
    if cqltype is cqltypes.Int32Type:
        return i
    if cqltype is cqltypes.DoubleType:
        return i / 2
    return f"{name}{i}"


def _arrive(source: Arrivals, columns: list[tuple[str, Any]], start: int, rows: int) -> RawPage:
    """Hand ``source`` a page of ``rows`` rows from ``start`` with these columns, as the
    driver does when it arrives; its text columns hold their name and the row number."""
    cells = [
        [cqltype.serialize(_value(name, cqltype, i), PROTOCOL) for name, cqltype in columns]
        for i in range(start, start + rows)
    ]
    metadata = [("ks", "tbl", name, cqltype) for name, cqltype in columns]
    page = RawPage(page_body(cells, len(columns)), 0, 8, metadata, PROTOCOL, {}, metadata)
    arrived = source([name for name, _ in columns], page)
    assert isinstance(arrived, RawPage)
    return arrived


def test_a_page_with_other_columns_is_not_decoded_ahead_by_the_old_ones() -> None:
    source = Arrivals(lambda names, rows: rows)
    decoder = _columnar.NativeDecoder(ColumnwiseDecoder())
    first = _arrive(source, BEFORE, 0, 10)
    columns = FrameColumns(first.column_names, first.column_types, "numpy_nullable")
    schema = columns.follow(first.column_names, first.column_types).schema
    decoder.decode_for_join(first, schema, ahead=True)
    assert _arrive(source, BEFORE, 10, 10).decoded is not None
    changed = _arrive(source, AFTER, 20, 10)
    assert changed.decoded is None
    # Decoded by the old positions, its values would go under other names: refused.
    with pytest.raises(CassandraError, match="not those the frame's columns were made for"):
        decoder.decode(changed, schema)
    page = columns.follow(changed.column_names, changed.column_types)
    decoded = decoder.decode_for_join(changed, page.schema, ahead=True)
    assert columns.names == ["k", "b", "d", "c2"]
    placed = columns.place(page, join.built(decoded), len(changed))
    assert list(placed[2]) == [f"d{i}" for i in range(20, 30)]
    assert list(placed[3]) == [f"c2{i}" for i in range(20, 30)]
    # The pages after it are decoded ahead again, by their own columns.
    later = _arrive(source, AFTER, 30, 10)
    assert later.decoded is not None and later.decoded[0] is page.schema
    reference = ColumnwiseDecoder().decode(list(later), page.schema)
    assert_same_columns(join.built(decoder.decode_for_join(later, page.schema)), reference)
