"""Memory for the columns of decoded pages: anonymous mappings, cut into buffers.

Buffers that a frame keeps come from mappings rather than the C heap, so that their
memory goes back to the system once the frame lets go of them; a read that joins every
page into one frame reserves address space per column and has the kernel back it only
as rows are written.
"""

from __future__ import annotations

import weakref
from typing import Any, Final

__all__ = ["SLAB_MIN_ROWS", "Slab", "anonymous_mapping", "populate_write", "reservation"]


class Slab:
    """Buffers for one column's pages, cut one after another from anonymous mappings.

    A frame keeps each page's arrays until it joins them into one array per column. Page
    buffers from the C heap would stay in the process once freed (glibc keeps such
    medium blocks), so the join would need the frame's size a second time. Buffers cut
    from mappings give their memory back to the system when a joined column lets go of
    its pages. A mapping is released when every array cut from it is gone.
    """

    __slots__ = ("region", "used")

    def __init__(self) -> None:
        self.region: Any = None
        self.used = 0

    def take(self, nbytes: int) -> Any:
        """Return ``nbytes`` of fresh memory as uint8, or None to use the heap instead."""
        # Each buffer starts on a 64-byte boundary, as numpy and Arrow like them.
        step = (nbytes + 63) & ~63
        region = self.region
        if region is None or self.used + step > len(region):
            region = anonymous_mapping(max(step, _SLAB_BYTES))
            if region is None:
                return None
            self.region, self.used = region, 0
        start = self.used
        self.used = start + step
        return region[start : start + nbytes]


def reservation(nbytes: int) -> tuple[Any, Any, int] | None:
    """Reserve ``nbytes`` of address space for a column: its uint8 view, the mapping, and
    where the view starts in it; None if no mapping is left."""
    region = anonymous_mapping(nbytes + 4096, populate=False)
    if region is None:
        return None
    # Mappings start on page boundaries: start each column's data at another offset within
    # the page, or the same row of every column would fall in one set of the CPU cache,
    # which then keeps evicting them.
    _stagger[0] = skip = (_stagger[0] + 7 * 64) % 4096
    return region[skip : skip + nbytes], region.base.obj, skip


def populate_write(mapping: Any, start: int, end: int) -> None:
    """Back bytes ``start`` to ``end`` of ``mapping`` with memory, if the kernel can."""
    if not _populating[0]:
        return
    first = start & ~4095
    try:
        mapping.madvise(_MADV_POPULATE_WRITE, first, end - first)
    except (OSError, AttributeError, ValueError):
        _populating[0] = False  # a kernel before 5.14


_MADV_POPULATE_WRITE: Final = 23
_populating = [True]
_SLAB_BYTES: Final = 256 * 1024
_stagger = [0]
#: Pages smaller than this stay on the heap: a mapping would cost more than it saves.
SLAB_MIN_ROWS: Final = 1024
_MAPPINGS_MAX: Final = 16_384
_mappings = [0]


def _unmapped() -> None:
    _mappings[0] -= 1


def anonymous_mapping(nbytes: int, *, populate: bool = True) -> Any:
    """Return an anonymous mapping of ``nbytes`` as a uint8 array, or None if none is left."""
    import mmap

    import numpy as np

    # The kernel caps how many mappings a process has; stay far below it.
    if _mappings[0] >= _MAPPINGS_MAX:
        return None
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if populate:
        # Faulting the pages in with the mapping is cheaper than one fault per page later.
        flags |= getattr(mmap, "MAP_POPULATE", 0)
    try:
        mapping = mmap.mmap(-1, nbytes, flags=flags)
    except OSError:
        return None
    _mappings[0] += 1
    weakref.finalize(mapping, _unmapped)
    return np.frombuffer(mapping, np.uint8)
