"""A frame's columns followed by name across a result's pages.

Every page of a result carries its own column specs, and they change when the table
does while the result is read: after ``ALTER TABLE ... ADD c2 text`` the next pages of
``SELECT *`` hold ``pk, ck, b, c2, d`` where the first held ``pk, ck, b, d``. Decoding
such a page by the first page's positions would put ``c2``'s values under ``d``. Here
each page is decoded by name instead: a column the table gained becomes a new frame
column (NULL in the rows read before), a column it lost stays in the frame, NULL from
then on, and a column whose type changed fails the read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cassnb._core.errors import ConfigurationError, QueryError
from cassnb._frames.types import (
    Column,
    ColumnCodec,
    DtypeBackend,
    FrameSchema,
    column_codec,
    cql_type_name,
    type_signature,
)

__all__ = ["FrameColumns", "PageColumns"]

#: A result column by name, and which of the columns of that name it is (``SELECT a, a``).
_Key = tuple[str, int]


def _keys(names: Sequence[str]) -> list[_Key]:
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        keys.append((name, occurrence))
    return keys


class PageColumns:
    """How the pages with one set of column specs fill the frame's columns."""

    __slots__ = ("absent", "schema", "targets")

    def __init__(self, schema: FrameSchema, targets: Sequence[int], absent: Sequence[int]) -> None:
        #: What the page decoder decodes such a page with.
        self.schema = schema
        #: The frame column each of the schema's columns goes to.
        self.targets = tuple(targets)
        #: The frame columns such pages do not have: NULL in their rows.
        self.absent = tuple(absent)


class FrameColumns:
    """The columns of one frame made from a result's pages, in the first page's order,
    then any the result gained, followed by name from page to page."""

    __slots__ = ("_backend", "_current", "_grow", "_keys", "_signatures", "codecs", "names")

    def __init__(
        self,
        names: Sequence[str],
        types: Sequence[Any],
        dtype_backend: DtypeBackend,
        wanted: Sequence[str] | None = None,
    ) -> None:
        """Start from the first page's columns; ``wanted`` keeps those, in that order."""
        page_keys = _keys(names)
        if wanted is None:
            keys = page_keys
        else:
            unknown = [name for name in wanted if name not in names]
            if unknown:
                raise ConfigurationError(
                    f"column(s) {', '.join(map(repr, unknown))} not in the result; "
                    f"it has {', '.join(map(repr, names)) or 'no columns'}"
                )
            keys = [(name, 0) for name in wanted]
        position = {key: index for index, key in enumerate(page_keys)}
        positions = [position[key] for key in keys]
        self._backend = dtype_backend
        #: Only a frame of every column takes in the columns the result gains.
        self._grow = wanted is None
        self._keys = keys
        self._signatures = [type_signature(types[p]) for p in positions]
        schema = FrameSchema.from_metadata(names, types, dtype_backend, positions)
        self.names: list[str] = list(schema.names)
        self.codecs: list[ColumnCodec] = list(schema.codecs)
        self._current = PageColumns(schema, range(len(keys)), ())

    def empty(self) -> list[Column]:
        """Return one empty typed array per frame column."""
        return [codec.to_array(()) for codec in self.codecs]

    def follow(self, names: Sequence[str], types: Sequence[Any]) -> PageColumns:
        """Return how a page with these columns fills the frame (adding columns it gained).

        Raise QueryError when one of the frame's columns has another type in it.
        """
        current = self._current
        if not current.schema.matches(names, types):
            current = self._current = self._remap(names, types)
        return current

    def _remap(self, names: Sequence[str], types: Sequence[Any]) -> PageColumns:
        page_keys = _keys(names)
        position = {key: index for index, key in enumerate(page_keys)}
        if self._grow:
            known = set(self._keys)
            for key, cqltype in zip(page_keys, types, strict=True):
                if key not in known:
                    self._keys.append(key)
                    self._signatures.append(type_signature(cqltype))
                    self.names.append(key[0])
                    self.codecs.append(column_codec(cqltype, self._backend))
        targets: list[int] = []
        positions: list[int] = []
        absent: list[int] = []
        for index, key in enumerate(self._keys):
            found = position.get(key)
            if found is None:
                absent.append(index)
                continue
            if type_signature(types[found]) != self._signatures[index]:
                raise QueryError(
                    f"column {key[0]!r} changed type from {self.codecs[index].cql_type} to "
                    f"{cql_type_name(types[found])} while the result was read (the table "
                    "changed between two pages); read it again"
                )
            targets.append(index)
            positions.append(found)
        schema = FrameSchema(
            names=tuple(self.names[index] for index in targets),
            positions=tuple(positions),
            codecs=tuple(self.codecs[index] for index in targets),
            page_names=tuple(names),
            page_types=tuple(types),
        )
        return PageColumns(schema, targets, absent)

    def place(self, page: PageColumns, arrays: Sequence[Column], rows: int) -> list[Column]:
        """Return a page's arrays (decoded with ``page.schema``) as the frame's columns."""
        columns: list[Column | None] = [None] * len(self.names)
        for target, array in zip(page.targets, arrays, strict=True):
            columns[target] = array
        for index in page.absent:
            columns[index] = self.codecs[index].missing(rows)
        placed = [column for column in columns if column is not None]
        assert len(placed) == len(columns)
        return placed
