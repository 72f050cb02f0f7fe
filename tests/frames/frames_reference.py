"""Reference data for the frames tests: one column per CQL type, and rows of values.

The rows are written with the plain driver; a column left out of a row is NULL. The
columns and most values are the type table's, shared with the native suite.
"""

from __future__ import annotations

from typing import Any

from _typed_table import reference_rows, typed_columns

KEYSPACE = "cassnb_frames_test"

#: Every CQL type the type table covers: (column, CQL type).
TYPED_COLUMNS: list[tuple[str, str]] = typed_columns("address")

#: Reference rows by key; a column left out is NULL. Row 0 is NULL everywhere.
ROWS: dict[int, dict[str, Any]] = reference_rows(
    {
        1: {"c_udt": ("Main", 12345, ["a", "b"])},
        2: {"c_udt": ("", None, None)},
    }
)
