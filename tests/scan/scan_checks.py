"""Checks shared by the one-node and three-node scan tests."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from _keyspaces import count_rows

from cassnb import AsyncSession, read_cql


def keys_of(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[object, ...]]:
    """Return each row's key as a tuple, in row order."""
    return list(frame[list(columns)].itertuples(index=False, name=None))


async def assert_every_row_once(
    session: AsyncSession, table: str, scanned: pd.DataFrame, keys: Sequence[str]
) -> pd.DataFrame:
    """The scan has count(*) rows, no key twice, and is the single-stream read, row for row."""
    reference = await read_cql(f"SELECT * FROM {table}", session)
    assert len(scanned) == await count_rows(session, table)
    found = keys_of(scanned, keys)
    assert len(set(found)) == len(found), "a row was read twice"
    assert set(found) == set(keys_of(reference, keys))
    # Same columns, dtypes, values and even order: ranges are joined in token order.
    pd.testing.assert_frame_equal(scanned, reference)
    return reference
