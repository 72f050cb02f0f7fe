"""Fuzz the compiled page decoder: any bytes give columns or a clean error, never a crash.

    python fuzz/fuzz_decoder.py -runs=20000            # a bounded run, as CI runs it
    python fuzz/fuzz_decoder.py -max_total_time=600    # longer, by hand

Each input picks column kinds (or CQL types), a row limit, and either raw bytes or a
page assembled from lengths and bytes taken from the input, so that most inputs get past
the row count into the cells. Two targets are exercised per input: scan()/fill() with any
kinds (fixed-width columns written from a first row, into buffers with or without room),
and decode_page() with a schema of CQL types in both dtype backends, alone or as two pages
of one joined read. The only
exceptions allowed are ValueError (the decoder's, pyarrow's) and cassnb errors.
"""

from __future__ import annotations

import contextlib
import struct
import sys
from typing import Any

import atheris
import numpy  # noqa: F401  (imported before instrumenting: only cassnb is instrumented)
import pandas  # noqa: F401
import pyarrow  # noqa: F401
from cassandra import cqltypes

with atheris.instrument_imports(include=["cassnb"]):
    from cassnb._core.errors import CassandraError
    from cassnb._driver import Arrivals
    from cassnb._driver.fast.pages import RawPage
    from cassnb._frames import columnar as _columnar
    from cassnb._frames import compiled, join, plans
    from cassnb._frames.types import FrameSchema

native = _columnar._native
if native is None:
    sys.exit("the compiled decoder is not built: pip install -e . first")

KINDS = list(range(native.K_DATE_SECONDS + 1))  # every kind there is
TYPES: list[type[Any]] = [
    cqltypes.ByteType,
    cqltypes.ShortType,
    cqltypes.Int32Type,
    cqltypes.LongType,
    cqltypes.FloatType,
    cqltypes.DoubleType,
    cqltypes.BooleanType,
    cqltypes.UTF8Type,
    cqltypes.AsciiType,
    cqltypes.BytesType,
    cqltypes.DateType,
    cqltypes.SimpleDateType,
    cqltypes.TimeType,
    cqltypes.UUIDType,
    cqltypes.TimeUUIDType,
    cqltypes.IntegerType,
    cqltypes.DecimalType,
    cqltypes.InetAddressType,
    cqltypes.DurationType,
    cqltypes.ListType.apply_parameters([cqltypes.Int32Type]),
    cqltypes.MapType.apply_parameters([cqltypes.UTF8Type, cqltypes.LongType]),
    cqltypes.TupleType.apply_parameters([cqltypes.Int32Type, cqltypes.UTF8Type]),
]
CELL_LENGTHS = [-1, -2, 0, 1, 2, 3, 4, 8, 15, 16, 17, 36, 2**31 - 1, -(2**31)]


def _page(fdp: atheris.FuzzedDataProvider, columns: int) -> bytes:
    """Bytes that start like a page: a row count, then cells whose lengths mostly fit."""
    if fdp.ConsumeBool():
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512))
    rows = fdp.ConsumeIntInRange(0, 6)
    out = [struct.pack(">i", rows if fdp.ConsumeIntInRange(0, 9) else fdp.ConsumeInt(4))]
    for _ in range(rows * columns):
        if fdp.ConsumeIntInRange(0, 5) == 0:
            length = fdp.PickValueInList(CELL_LENGTHS)
            data = fdp.ConsumeBytes(max(0, min(length, 64)))
        else:
            data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20))
            length = len(data)
        out.append(struct.pack(">i", length) + data)
    if fdp.ConsumeBool():
        out.append(fdp.ConsumeBytes(8))
    return b"".join(out)


def _scan_and_fill(body: bytes, kinds: bytes, limit: int, first_row: int, roomy: bool) -> None:
    rows, _, sizes = native.scan(body, 0, kinds, limit)
    # Fixed-width columns are written from first_row on, as a joined read's are; buffers
    # without room for that must be refused.
    outs = [
        plans.column_buffers(
            kind,
            rows + first_row if roomy and kind in compiled.WIDTHS else rows,
            sizes[i],
            wide=bool(i % 2),
        )
        for i, kind in enumerate(kinds)
    ]
    # Every third fixed-width column says its mask is zeroed, as a joined read's do.
    outs = [
        (*out, True) if out is not None and len(out) == 2 and i % 3 == 0 else out
        for i, out in enumerate(outs)
    ]
    native.fill(body, 0, kinds, rows, outs, first_row)


def _decode(body: bytes, types: list[type[Any]], limit: int, backend: str, joined: bool) -> None:
    metadata = [("ks", "tbl", f"c{i}", t) for i, t in enumerate(types)]
    try:
        page = RawPage(body, 0, 0, metadata, 5, {}, metadata)
    except CassandraError:
        return
    if limit >= 0:
        page = page[:limit]  # type: ignore[assignment]
    schema = FrameSchema.from_metadata(page.column_names, page.column_types, backend)  # type: ignore[arg-type]
    if joined:
        # Decoded twice for one joined read: the second page's rows go after the first's.
        source = Arrivals(lambda names, rows: rows)
        _columnar._state_of(source).joined = True
        page.source = source
        _columnar.decode_page(page, schema)
    columns = join.built(_columnar.decode_page(page, schema))
    assert all(len(column) == len(page) for column in columns)


def test_one_input(data: bytes) -> None:
    """Decode one input both ways; anything but a clean error is a finding."""
    fdp = atheris.FuzzedDataProvider(data)
    columns = fdp.ConsumeIntInRange(0, 6)
    kinds = bytes(fdp.PickValueInList(KINDS) for _ in range(columns))
    types = [fdp.PickValueInList(TYPES) for _ in range(columns)]
    limit = fdp.ConsumeIntInRange(-1, 8)
    backend = "pyarrow" if fdp.ConsumeBool() else "numpy_nullable"
    first_row = fdp.ConsumeIntInRange(0, 3)
    roomy = fdp.ConsumeIntInRange(0, 3) != 0
    joined = fdp.ConsumeBool()
    body = _page(fdp, columns)
    with contextlib.suppress(ValueError):
        _scan_and_fill(body, kinds, limit, first_row, roomy)
    with contextlib.suppress(ValueError, CassandraError):
        _decode(body, types, limit, backend, joined)


def main() -> None:
    """Run libFuzzer over test_one_input with the command line's options."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
