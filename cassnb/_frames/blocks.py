"""The columns of a read whose pages all end up in one frame, written end to end.

Fixed-width columns go into one reservation per column (:class:`FixedBlock`), each page
right after the one before; object columns into one array that grows in place
(:class:`ObjectRun`). A page's share of either is a :class:`Piece` or an :class:`InRun`
until the frame is joined (:mod:`cassnb._frames.join`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast

from cassnb._frames.memory import populate_write, reservation
from cassnb._frames.plans import Decoded

if TYPE_CHECKING:
    import numpy as np

    from cassnb._frames.columnar import Layout
    from cassnb._frames.types import Column

__all__ = ["FixedBlock", "InRun", "ObjectRun", "Piece"]

#: Address space reserved per column buffer of a joined read: pages of memory are only
#: used as rows are written, and a column that outgrows it goes on in a new reservation.
_RESERVED_BYTES: Final = 1 << 30
#: Rows a joined read backs with memory beyond those it writes, at least; and bytes of its
#: widest fixed-width column, at most: little beside a frame, however many columns it has.
_POPULATED_AHEAD_ROWS_MIN: Final = 4096
_POPULATED_AHEAD: Final = 256 * 1024


class FixedBlock:
    """The fixed-width columns of a read whose pages all end up in one frame.

    Each column's values, and its NULL mask, go into one large reservation of address
    space (the kernel only backs what is written), and fill() writes every page right
    after the one before (its ``first_row``): a page costs no Python per fixed-width
    column, and joining the pages is a view of the rows written (:func:`join_adjacent`),
    with no copy and no second frame's worth of memory.
    """

    __slots__ = (
        "ahead_rows",
        "capacity",
        "codecs",
        "kinds",
        "mappings",
        "masks",
        "names",
        "outs",
        "plans",
        "populated",
        "schema",
        "used",
        "values",
    )

    def __init__(self, layout: Layout, positions: list[int]) -> None:
        self.schema = layout.schema
        self.kinds = layout.kinds
        self.plans = {position: layout.plans[position] for position in positions}
        self.codecs = dict(zip(layout.schema.positions, layout.schema.codecs, strict=True))
        self.names = dict(zip(layout.schema.positions, layout.schema.names, strict=True))
        widest = max(self.plans[position].values.itemsize for position in positions)
        #: Rows every column has room for, and rows backed with memory ahead at most.
        self.capacity = _RESERVED_BYTES // widest
        self.ahead_rows = _POPULATED_AHEAD // widest
        #: Rows written so far, and rows backed with memory ahead of the writes.
        self.used = 0
        self.populated = 0
        self.values: dict[int, Any] = {}
        self.masks: dict[int, Any] = {}
        #: Each column's values mapping, and where the values start in it.
        self.mappings: list[tuple[Any, int, int]] = []
        #: fill()'s outs with this block's columns in place; the others are set per page.
        self.outs: list[tuple[Any, ...] | None] = [None] * len(layout.kinds)

    @classmethod
    def reserve(cls, layout: Layout) -> FixedBlock | None:
        """Return a block for ``layout``'s fixed-width columns, or None (none, or no room)."""
        positions = [
            position
            for position, plan in layout.plans.items()
            if plan.joined and plan.values is not None
        ]
        if not positions:
            return None
        block = cls(layout, positions)
        for position in positions:
            width = block.plans[position].values.itemsize
            values = reservation(block.capacity * width)
            mask = reservation(block.capacity)
            if values is None or mask is None:
                return None
            block.values[position] = values[0]
            block.masks[position] = mask[0]
            block.mappings.append((values[1], values[2], width))
            # The mask is fresh zeroed memory: fill() writes only the NULLs (and its pages
            # are never backed for a column without them).
            block.outs[position] = (values[0], mask[0], True)
        return block

    def fits(self, layout: Layout, rows: int) -> bool:
        """Whether a page of ``rows`` rows decoded with ``layout`` goes into this block."""
        return (
            layout.schema is self.schema
            and layout.kinds == self.kinds
            and self.used + rows <= self.capacity
        )

    def take(self, rows: int) -> int:
        """Make room for the next ``rows`` rows; return the first of them."""
        first = self.used
        self.used = end = first + rows
        if end > self.populated:
            # One call that backs the next rows with memory costs less than a page fault
            # for every 4 KiB of them while the decoder writes. Backing as many rows again
            # as the read has so far, up to a few hundred KiB of the widest column, keeps
            # both the calls and the memory backed beyond the last row few.
            ahead = end + min(max(end, _POPULATED_AHEAD_ROWS_MIN), self.ahead_rows)
            ahead = min(ahead, self.capacity)
            for mapping, skip, width in self.mappings:
                populate_write(mapping, skip + self.populated * width, skip + ahead * width)
            self.populated = ahead
        return first

    def array(self, position: int, start: int, rows: int, nulls: int) -> Column:
        """Build the array of ``rows`` rows of a column from row ``start`` on: a view."""
        plan = self.plans[position]
        width = plan.values.itemsize
        decoded = Decoded(
            rows,
            nulls,
            (
                self.values[position][start * width : (start + rows) * width],
                self.masks[position][start : start + rows],
            ),
            None,
            self.codecs[position],
            (),
            None,
            self.names[position],
        )
        return plan.build(plan.typed(decoded))


class Piece:
    """A page's fixed-width column in a joined read: rows of its block."""

    __slots__ = ("block", "nulls", "position", "rows", "start")

    def __init__(self, block: FixedBlock, position: int, start: int, rows: int, nulls: int) -> None:
        self.block = block
        self.position = position
        self.start = start
        self.rows = rows
        self.nulls = nulls

    def __len__(self) -> int:
        return self.rows

    def array(self) -> Column:
        """Build this page's array alone (a view of the block)."""
        return self.block.array(self.position, self.start, self.rows, self.nulls)


class ObjectRun:
    """A joined read's object column: its pages' values one after another in one array.

    Kept as an array per page until the join, an object column would need its pointers
    twice at the end (the pages' arrays and the joined one), and the pages' memory, freed
    to the C heap, would stay in the process. This array instead grows in place as pages
    come (a large block is remapped, not copied) and is cut to its length at the join:
    the frame's column is this array.
    """

    __slots__ = ("used", "values")

    def __init__(self) -> None:
        self.values: np.ndarray[Any, Any] | None = None
        self.used = 0

    def append(self, page: np.ndarray[Any, Any]) -> int:
        """Copy a page's values after the others; return where they start."""
        import numpy as np

        start = self.used
        end = start + len(page)
        if self.values is None:
            self.values = np.empty(max(end, _RUN_FIRST_ROWS), object)
        elif end > len(self.values):
            # Growing by a quarter at a time keeps the room written ahead (numpy zeroes
            # what an object array grows by) to a quarter of the column at most.
            self.values.resize(max(end, len(self.values) * 5 // 4), refcheck=False)
        self.values[start:end] = page
        self.used = end
        return start

    def take(self) -> np.ndarray[Any, Any]:
        """Return the column, as long as its values: the run holds nothing more."""
        values = self.values
        assert values is not None
        self.values = None
        # No view of it has been handed out (a page's own array is a copy), so it may
        # be cut in place.
        values.resize(self.used, refcheck=False)
        return values


#: Rows a joined read's object column makes room for at first.
_RUN_FIRST_ROWS: Final = 1 << 16


class InRun:
    """A page's object column in a joined read: where its values lie in the run."""

    __slots__ = ("rows", "run", "start")

    def __init__(self, run: ObjectRun, start: int, rows: int) -> None:
        self.run = run
        self.start = start
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def array(self) -> Column:
        """Return this page's values as an array of their own."""
        values = self.run.values
        assert values is not None
        return cast("Column", values[self.start : self.start + self.rows].copy())
