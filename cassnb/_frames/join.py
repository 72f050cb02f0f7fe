"""A column's pages joined into one array, without a copy where they lie end to end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from cassnb._frames.blocks import InRun, Piece

if TYPE_CHECKING:
    import numpy as np

    from cassnb._frames.types import Column

__all__ = ["built", "join_adjacent"]


def _join_run(chunks: Sequence[Any]) -> Column | None:
    """Return the run that holds exactly ``chunks``, in order, else None."""
    run = chunks[0].run
    end = 0
    for chunk in chunks:
        if type(chunk) is not InRun or chunk.run is not run or chunk.start != end:
            return None
        end += chunk.rows
    if end != run.used or run.values is None:
        return None
    return cast("Column", run.take())


def built(chunks: Sequence[Column]) -> list[Column]:
    """Return ``chunks`` with every page still pending built into its array."""
    return [
        chunk.array() if isinstance(chunk, Piece | InRun) else chunk
        for chunk in cast(Sequence[Any], chunks)
    ]


def _root(array: np.ndarray[Any, Any]) -> Any:
    """Return the array whose memory ``array`` views (itself if it owns its memory)."""
    import numpy as np

    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _adjacent(arrays: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any] | None:
    """Return one view of 1-d arrays that lie end to end in one buffer, else None."""
    import numpy as np

    first = arrays[0]
    root = _root(first)
    if root.dtype != np.uint8 or root.ndim != 1 or not root.flags.c_contiguous:
        return None
    start = end = first.__array_interface__["data"][0]
    for array in arrays:
        if (
            array.dtype != first.dtype
            or array.ndim != 1
            or not array.flags.c_contiguous
            or array.__array_interface__["data"][0] != end
            or _root(array) is not root
        ):
            return None
        end += array.nbytes
    offset = start - root.__array_interface__["data"][0]
    joined: np.ndarray[Any, Any] = root[offset : offset + end - start].view(first.dtype)
    return joined


def join_adjacent(chunks: Sequence[Column]) -> Column | None:
    """Join a column's pages without copying when they lie end to end; else return None.

    Pages decoded with ``decode_for_join`` do, for their fixed-width columns, which are
    still rows of a block then: their one array is built here. A single page is itself.
    """
    import numpy as np
    import pandas as pd

    first: Any = chunks[0]
    if isinstance(first, InRun):
        return _join_run(cast(Sequence[Any], chunks))
    if isinstance(first, Piece):
        return _join_pieces(cast(Sequence[Any], chunks))
    if any(isinstance(chunk, Piece) for chunk in cast(Sequence[Any], chunks)):
        return None  # built into arrays first, then joined by a copy
    if len(chunks) == 1:
        return cast("Column", first)
    if isinstance(first, np.ndarray):
        return _adjacent(cast(Sequence[Any], chunks))
    masked = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)
    if not isinstance(first, masked) or any(type(chunk) is not type(first) for chunk in chunks):
        return None
    parts = cast(Sequence[Any], chunks)
    values = _adjacent([chunk._data for chunk in parts])
    mask = _adjacent([chunk._mask for chunk in parts]) if values is not None else None
    if values is None or mask is None:
        return None
    return type(first)(values, mask)


def _join_pieces(chunks: Sequence[Any]) -> Column | None:
    """Build one array over a column's pages when they are one run of rows of its block."""
    first: Piece = chunks[0]
    block, position = first.block, first.position
    end = first.start
    nulls = 0
    for chunk in chunks:
        if (
            type(chunk) is not Piece
            or chunk.block is not block
            or chunk.position != position
            or chunk.start != end
        ):
            return None
        end += chunk.rows
        nulls += chunk.nulls
    return block.array(position, first.start, end - first.start, nulls)
