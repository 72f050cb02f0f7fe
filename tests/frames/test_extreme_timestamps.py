"""The smallest timestamp Cassandra stores, -2**63 ms: never read back as NULL.

Its bits are NaT's, the NULL of ``datetime64``. The pyarrow backend keeps NULL apart
(a validity mask) and holds the value; a ``datetime64[ms, UTC]`` column cannot, and the
read fails saying so. The driver itself cannot decode the value (it is far outside
Python's datetime), so where a read goes through the driver's decoding it fails too.
Each case runs on a cluster of its own: the driver drops a connection on which it
failed to decode a response.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from _keyspaces import connected
from frames_reference import KEYSPACE

from cassnb import local
from cassnb._core.errors import CassandraError, QueryError
from cassnb._frames import columnar as _columnar
from cassnb._frames import read as _frames
from cassnb._frames.read import read_cql
from cassnb._frames.types import ColumnwiseDecoder

SMALLEST = -(2**63)


@pytest.fixture(scope="module")
def table(driver: Any) -> Iterator[str]:
    """Row 1 holds the smallest timestamp, row 2 NULL, row 3 the epoch plus a second."""
    name = "smallest_timestamp"
    driver.execute(f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.{name} (k int PRIMARY KEY, t timestamp)")
    driver.execute(f"INSERT INTO {KEYSPACE}.{name} (k, t) VALUES (1, {SMALLEST})")
    driver.execute(f"INSERT INTO {KEYSPACE}.{name} (k) VALUES (2)")
    driver.execute(f"INSERT INTO {KEYSPACE}.{name} (k, t) VALUES (3, 1000)")
    try:
        yield name
    finally:
        driver.execute(f"DROP TABLE IF EXISTS {KEYSPACE}.{name}", timeout=60)


@pytest.mark.parametrize("backend", ["numpy_nullable", "pyarrow"])
@pytest.mark.parametrize("decoder", ["compiled", "python"])
async def test_the_smallest_timestamp_is_never_null(
    node: local.ClusterInfo,
    table: str,
    decoder: str,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kept (pyarrow, compiled decoder), else a clear error: never a NULL in its place."""
    if decoder == "compiled" and not _columnar.native_available():
        pytest.skip("the compiled decoder is not built (or CASSNB_NO_NATIVE is set)")
    if decoder == "python":
        monkeypatch.setattr(_frames, "page_decoder", ColumnwiseDecoder())
    async with connected(node.contact_points, node.port, KEYSPACE) as session:
        cluster = session.cluster
        assert cluster is not None
        # Pages stay in wire form for the compiled decoder only on the fast path.
        columnar = decoder == "compiled" and cluster.fast_path
        query = f"SELECT k, t FROM {table}"
        if columnar and backend == "pyarrow":
            frame = await read_cql(query, session, dtype_backend=backend)
            frame = frame.set_index("k").sort_index()
            assert frame["t"].isna().tolist() == [False, True, False]
            millis = pa.array(frame["t"].array).cast(pa.int64()).to_pylist()
            assert millis == [SMALLEST, None, 1000]
        elif columnar:
            with pytest.raises(
                QueryError, match=r"column 't' holds the timestamp -9223372036854775808"
            ):
                await read_cql(query, session, dtype_backend=backend)
        else:
            with pytest.raises(CassandraError, match=r'column "t" of type timestamp'):
                await read_cql(query, session, dtype_backend=backend)


async def test_a_joined_read_checks_every_page(session: Any, table: str) -> None:
    """The value is found on a later page of a read whose pages are joined in place."""
    if not _columnar.native_available() or not session.cluster.fast_path:
        pytest.skip("the compiled decoder reads raw pages on the fast path only")
    with pytest.raises(QueryError, match=r"column 't' holds the timestamp"):
        # One row a page: the row with the value is never the first page alone.
        await read_cql(f"SELECT k, t FROM {table}", session, fetch_size=1)
