"""Result pages still in wire form, decoded into columns in C.

On the fast path a stream's pages arrive as :class:`~cassnb._driver.WirePage`: the rows
still bytes. The frames path hands such a page to :class:`NativeDecoder`, which writes
each column straight into numpy or Arrow buffers with the compiled decoder
(:mod:`cassnb._frames.compiled`) as each column's plan says (:mod:`cassnb._frames.plans`),
into memory of :mod:`cassnb._frames.memory`; the pages of a read joined into one frame
are written end to end (:mod:`cassnb._frames.blocks`). Pages of rows (the driver's
public API only, or a read whose rows someone iterated) go to the pure-Python decoder.

Without the compiled module frames use the pure-Python decoder, which reads raw pages
row by row.

This module imports neither numpy nor pandas until a page is decoded into columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from cassnb._core.errors import CassandraError
from cassnb._driver import Arrivals, WirePage
from cassnb._frames.blocks import FixedBlock, InRun, ObjectRun, Piece
from cassnb._frames.compiled import SCANNED, native_available
from cassnb._frames.compiled import native as _native
from cassnb._frames.memory import SLAB_MIN_ROWS, Slab
from cassnb._frames.plans import Decoded, Plan, plan_for

if TYPE_CHECKING:
    from cassnb._frames.types import Column, FrameSchema, PageDecoder

__all__ = ["Layout", "NativeDecoder", "decode_page", "native_available", "page_decoder"]


class _ReadState:
    """What the decoder keeps for one read's pages (in its :class:`Arrivals`' consumer slot)."""

    __slots__ = ("ahead", "block", "joined", "runs", "slabs")

    def __init__(self) -> None:
        #: Where the read's pages take their column buffers (values, then NULL masks), by
        #: column position.
        self.slabs: dict[int, tuple[Slab, Slab]] = {}
        #: Where a joined read's object columns gather their pages, by column position.
        self.runs: dict[int, ObjectRun] = {}
        #: Every page is joined into one frame: write each column's pages end to end.
        self.joined = False
        #: Where a joined read's fixed-width columns go (False: they cannot, go per page).
        self.block: FixedBlock | bool | None = None
        #: The schema pages are decoded into on the driver's thread as they arrive.
        self.ahead: FrameSchema | None = None

    def decode_arrived(self, page: WirePage) -> None:
        """Decode a page as it arrives (on the driver's thread); never raise."""
        schema = self.ahead
        assert schema is not None
        if not schema.matches(page.column_names, page.column_types):
            # The table changed: the loop decodes the page by its own columns.
            return
        try:
            page.decoded = (schema, decode_page(page, schema))
        except Exception as exc:  # raised where the page is read, on the loop
            page.decoded = (schema, exc)


def _state_of(source: Arrivals) -> _ReadState:
    state = source.consumer
    if state is None:
        state = source.consumer = _ReadState()
    assert isinstance(state, _ReadState)
    return state


def _decode_ahead(source: Arrivals, schema: FrameSchema) -> None:
    """Decode the read's next pages into ``schema``'s columns on the driver's thread.

    The loop then only collects them: their bytes are decoded on the thread that just
    received them, while they are still in its CPU's cache, and the loop wakes to nothing
    but bookkeeping.
    """
    state = _state_of(source)
    state.ahead = schema
    if source.on_arrival is None:
        source.on_arrival = state.decode_arrived


class Layout:
    """How a page's columns are decoded for one schema: kinds, and plans by position."""

    __slots__ = ("kinds", "plans", "scan", "schema")

    def __init__(self, schema: FrameSchema, types: Sequence[Any]) -> None:
        if schema.positions and max(schema.positions) >= len(types):
            raise ValueError(
                f"the page has {len(types)} columns; the frame wants column {max(schema.positions)}"
            )
        self.schema = schema
        self.plans: dict[int, Plan] = {}
        kinds = bytearray(len(types))
        for position, codec in zip(schema.positions, schema.codecs, strict=True):
            if position not in self.plans:
                plan = plan_for(types[position], codec)
                self.plans[position] = plan
                kinds[position] = plan.kind
        self.kinds = bytes(kinds)
        self.scan = any(plan.kind in SCANNED for plan in self.plans.values())


#: Recent layouts by schema and column types: pages of one result share one.
_LAYOUTS: dict[tuple[int, tuple[str, ...]], Layout] = {}
_MAX_LAYOUTS: Final = 64


def _layout(schema: FrameSchema, types: Sequence[Any]) -> Layout:
    # A parameterized type is a new class on every page; its name says what it is.
    key = (id(schema), tuple(t.__name__ for t in types))
    layout = _LAYOUTS.get(key)
    if layout is None or layout.schema is not schema:
        layout = Layout(schema, types)
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


def decode_page(page: WirePage, schema: FrameSchema) -> list[Column]:
    """Decode a raw page into one array per schema column; raise ValueError if malformed."""
    source = page.source
    if source is None:
        return _decode_page(page, schema)
    with source.claim(page):
        return _decode_page(page, schema)


def _decode_page(page: WirePage, schema: FrameSchema) -> list[Column]:
    import numpy as np

    c = _native
    if c is None:
        raise RuntimeError("the native page decoder is not available")
    metadata = page.column_metadata
    types = [column[3] for column in metadata]
    if not schema.matches([column[2] for column in metadata], types):
        # Decoded by another page's positions, its values would land under other names.
        raise ValueError("the page's columns are not those the frame's columns were made for")
    layout = _layout(schema, types)
    rows = len(page)
    body, start = page.body, page.rows_start
    if layout.scan:
        scanned, _, sizes = c.scan(body, start, layout.kinds, rows)
        if scanned != rows:
            raise ValueError(f"the page holds {scanned} rows, not {rows}")
    else:
        # Every cell takes 4 bytes at least: a row count beyond that is a lie, and would
        # allocate before fill() finds the page too short.
        if rows * 4 * len(metadata) > len(body) - start - 4:
            raise ValueError(f"truncated page: {rows} rows cannot fit in its bytes")
        sizes = None
    plans = layout.plans
    source = page.source
    state = None if source is None else _state_of(source)
    joined = state is not None and state.joined
    block = _block(state, layout, rows)
    if block is not None:
        first_row = block.take(rows)
        outs = block.outs.copy()
    else:
        first_row = 0
        outs = [None] * len(metadata)
    # Buffers the frame keeps come from slabs (see Slab) for every page of a joined read,
    # the short last one too, and for the big pages of any other read.
    slabs = state.slabs if state is not None and (joined or rows >= SLAB_MIN_ROWS) else None
    for position, plan in plans.items():
        if outs[position] is not None:
            continue  # in the block
        slab = None
        if slabs is not None and plan.kept:
            slab = slabs.get(position)
            if slab is None:
                slab = slabs[position] = (Slab(), Slab())
        outs[position] = plan.allocate(rows, 0 if sizes is None else sizes[position], slab)
    objects, nulls = c.fill(body, start, layout.kinds, rows, outs, first_row)
    arrays: list[Column] = []
    built: set[int] = set()
    for position, codec in zip(schema.positions, schema.codecs, strict=True):
        if block is not None and position in block.values:
            piece = Piece(block, position, first_row, rows, nulls[position])
            if position in built:
                # The same result column twice: never let two frame columns share memory.
                arrays.append(piece.array().copy())
            else:
                # Built once for the whole frame by join_adjacent, not once per page.
                built.add(position)
                arrays.append(cast("Column", piece))
            continue
        plan = plans[position]
        decoded = Decoded(
            rows,
            nulls[position],
            outs[position],
            objects[position],
            codec,
            metadata[position],
            page,
        )
        array = plan.build(decoded)
        if position in built:
            array = array.copy()
        elif joined and isinstance(array, np.ndarray) and array.dtype == object:
            assert state is not None
            run = state.runs.get(position)
            if run is None:
                run = state.runs[position] = ObjectRun()
            array = cast("Column", InRun(run, run.append(array), rows))
        built.add(position)
        arrays.append(array)
    return arrays


def _block(state: _ReadState | None, layout: Layout, rows: int) -> FixedBlock | None:
    """Return the block a joined read's page writes its fixed-width columns into, if any."""
    if state is None or not state.joined:
        return None
    block = state.block
    if block is None:
        block = state.block = FixedBlock.reserve(layout) or False
    if block is False:
        return None
    assert isinstance(block, FixedBlock)
    return block if block.fits(layout, rows) else None


class NativeDecoder:
    """Decode raw pages in C; hand pages of ready rows to a row-wise decoder."""

    def __init__(self, rows_decoder: PageDecoder) -> None:
        self._rows_decoder = rows_decoder

    def decode(self, rows: Sequence[Sequence[Any]], schema: FrameSchema) -> list[Column]:
        """Decode ``rows`` into columns of the schema's dtypes, each ``len(rows)`` long."""
        if not isinstance(rows, WirePage) or not rows:
            return self._rows_decoder.decode(rows, schema)
        try:
            decoded = rows.decoded
            if decoded is None or decoded[0] is not schema:
                return decode_page(rows, schema)
            rows.decoded = None
            columns: list[Column] | Exception = decoded[1]
            if isinstance(columns, Exception):
                raise columns
            return columns
        except ValueError as exc:
            raise CassandraError(f"could not decode a result page: {exc}") from exc

    def decode_for_join(
        self, rows: Sequence[Sequence[Any]], schema: FrameSchema, *, ahead: bool = False
    ) -> list[Column]:
        """Decode a page of a result whose pages are all joined into one frame.

        The result's fixed-width columns are then written end to end, so that
        :func:`join_adjacent` joins them without a copy. With ``ahead``, the result's next
        pages are decoded as they arrive (every page must then be read whole, in order).
        """
        source = rows.source if isinstance(rows, WirePage) else None
        if source is not None:
            _state_of(source).joined = True
        columns = self.decode(rows, schema)
        if ahead and source is not None:
            _decode_ahead(source, schema)
        return columns

    def decoded_ahead(self, rows: Sequence[Sequence[Any]]) -> bool:
        """Whether ``rows`` was decoded on the driver's thread when it arrived (every later
        page of its result then is too); ask before :meth:`decode` takes the columns."""
        return isinstance(rows, WirePage) and rows.decoded is not None


def page_decoder(rows_decoder: PageDecoder) -> PageDecoder:
    """Return the native decoder in front of ``rows_decoder``, or it alone without one."""
    return rows_decoder if _native is None else NativeDecoder(rows_decoder)
