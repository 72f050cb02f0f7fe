"""What the native tests against the node share: tables, reference rows, a loop thread
for sync (hypothesis) tests, the switch to the pure-Python path, and frame comparison.

Kept out of conftest.py: test modules import this by its own name, so that several test
directories given on one command line never mix up their ``conftest`` modules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd
import pytest
from _native_pages import assert_same_columns
from _typed_table import reference_rows, typed_columns
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import UNSET_VALUE

from cassnb._frames import columnar as _columnar
from cassnb._frames import read as _frames
from cassnb._frames.types import ColumnwiseDecoder

T = TypeVar("T")

KEYSPACE = "cassnb_native_test"

#: Every CQL type of the type table: (column, CQL type).
TYPED_COLUMNS: list[tuple[str, str]] = typed_columns("point")

_NAMES = [name for name, _ in TYPED_COLUMNS]
UTC = dt.UTC

SCHEMA = [
    f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    f'CREATE TYPE IF NOT EXISTS {KEYSPACE}.point (x int, "Label" text, tags frozen<list<text>>)',
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.types (p int, k int, "
    + ", ".join(f"{name} {cql}" for name, cql in TYPED_COLUMNS)
    + ", PRIMARY KEY (p, k))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.counters (k int PRIMARY KEY, c counter)",
]


class LoopThread:
    """An event loop on its own thread, so that sync tests (hypothesis) can await on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        """Stop and close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


@dataclass
class Remote:
    """A cassnb session living on a LoopThread."""

    session: Any
    thread: LoopThread

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the session's loop and return its result."""
        return self.thread.run(coroutine, timeout)


@contextmanager
def python_path() -> Iterator[None]:
    """Run reads as cassnb does without the compiled decoder."""
    native, decoder = _columnar._native, _frames.page_decoder
    _columnar._native = None  # type: ignore[misc]
    _frames.page_decoder = ColumnwiseDecoder()
    try:
        yield
    finally:
        _columnar._native = native  # type: ignore[misc]
        _frames.page_decoder = decoder


class DecodeSpy:
    """Counts the pages and rows the compiled decoder decoded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pages = 0
        self.rows = 0
        original = _columnar.decode_page

        def spy(page: Any, schema: Any) -> Any:
            self.pages += 1
            self.rows += len(page)
            return original(page, schema)

        monkeypatch.setattr(_columnar, "decode_page", spy)


#: Reference rows of partition 0 by clustering key; a column left out is NULL. Beside
#: the shared values: a tuple's timestamp after the epoch, and more float and uuid edges.
ROWS: dict[int, dict[str, Any]] = reference_rows(
    {
        1: {
            "c_tuple": (1, "a", dt.datetime(2001, 2, 3, tzinfo=UTC)),
            "c_udt": (7, "Main", ["a", "b"]),
        },
        2: {"c_udt": (None, "", None), "c_vector": [0.0, math.nan, -0.0]},
        3: {"c_float": math.inf, "c_double": 5e-324},
        4: {"c_uuid": uuid.UUID(int=2**128 - 1)},
    }
)


def insert_rows(driver: Any, partition: int, rows: list[dict[str, Any]]) -> None:
    """Write rows into one partition of ``types``, clustering keys 0, 1, 2, ..."""
    insert = driver.prepare(
        f"INSERT INTO types (p, k, {', '.join(_NAMES)}) "
        f"VALUES (?, ?, {', '.join('?' for _ in _NAMES)})"
    )
    values = [
        (partition, key, *(row.get(name, UNSET_VALUE) for name in _NAMES))
        for key, row in enumerate(rows)
    ]
    for ok, result in execute_concurrent_with_args(driver, insert, values, concurrency=32):
        assert ok, result


def assert_same_frames(native: pd.DataFrame, python: pd.DataFrame) -> None:
    """Equal column names, index, values and dtypes."""
    assert list(native.columns) == list(python.columns)
    pd.testing.assert_index_equal(native.index, python.index)
    assert list(native.dtypes) == list(python.dtypes)
    assert_same_columns(
        [native.iloc[:, i].array for i in range(native.shape[1])],
        [python.iloc[:, i].array for i in range(python.shape[1])],
    )
