"""Run the statements of a cell on a session: stream, collect into pandas, report.

Rows are read through the core's streams and collected with the frames layer's page
decoder, so a cell's frame has the same dtypes as ``read_cql``. A stream is always
closed when its statement ends, also when the cell is interrupted: the interrupt
arrives as a cancellation of the cell's coroutine, is turned into
:class:`CellInterrupted` saying how many rows had arrived, and the session stays usable.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
from cassandra.query import PreparedStatement

from cassnb._core.stream import StreamConfig
from cassnb._frames.read import Progress, bar_class, collect_pages
from cassnb._magics.parse import Statement, table_of

if TYPE_CHECKING:
    from cassnb._core.session import AsyncSession
    from cassnb._frames.types import DtypeBackend

__all__ = ["CellInterrupted", "Outcome", "Settings", "filtering_hint", "run_statement"]

#: Seconds to wait for the server to write a trace, which it does after answering.
TRACE_WAIT: Final = 2.0


@dataclass(frozen=True)
class Settings:
    """How the statements of one cell run, options and configuration merged."""

    fetch_size: int
    max_rows: int
    consistency: str | None = None
    timeout: float | None = None
    trace: bool = False
    progress: bool = True
    progress_min_pages: int = 3
    dtype_backend: DtypeBackend = "numpy_nullable"


@dataclass
class Outcome:
    """What one statement gave: its rows (None if it returns none) and what came with them."""

    statement: Statement
    frame: pd.DataFrame | None
    cut: bool = False
    warnings: list[str] = field(default_factory=list)
    traces: list[Any] = field(default_factory=list)
    trace_error: str | None = None


class CellInterrupted(KeyboardInterrupt):
    """The user interrupted a cell; says how many rows had arrived."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one line shown in the notebook."""
        arrived = "no row had arrived" if not self.rows else f"{self.rows:,} rows had arrived"
        return (
            f"interrupted: {arrived}; the query was stopped and the connection is ready "
            "for the next cell"
        )

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self.message}"]


class _LateProgress(Progress):
    """The frames layer's progress bar, shown only once a stream is a few pages long.

    Short results then print nothing, and the bar is removed when it closes, so a cell's
    saved output does not change from one run to the next.
    """

    def __init__(self, enabled: bool, min_pages: int) -> None:
        super().__init__(False, None)
        self._enabled = enabled
        self._min_pages = min_pages
        self._early_rows = 0
        self._early_pages = 0

    def update(self, rows: int) -> None:
        if self._bar is None:
            self._early_pages += 1
            self._early_rows += rows
            if not self._enabled or self._early_pages < self._min_pages:
                return
            bar = bar_class()
            self._bar = bar(
                total=None, unit=" rows", unit_scale=True, leave=False, initial=self._early_rows
            )
            self._pages = self._early_pages
            self._bar.set_postfix(pages=self._pages)
            return
        super().update(rows)


async def run_statement(
    session: AsyncSession, statement: Statement, values: list[Any], settings: Settings
) -> Outcome:
    """Run one statement and collect its rows into a DataFrame, at most ``max_rows``."""
    query: str | PreparedStatement = statement.text
    if statement.placeholders:
        query = await session.prepare(statement.with_markers())
    fetch_size = min(settings.fetch_size, settings.max_rows + 1)
    config = StreamConfig(fetch_size=fetch_size, prefetch=1)
    stream = await session.execute_stream(
        query,
        values or None,
        stream_config=config,
        timeout=settings.timeout,
        consistency=settings.consistency,
        trace=settings.trace,
    )
    progress = _LateProgress(settings.progress, settings.progress_min_pages)
    try:
        async with stream:
            frame = await collect_pages(
                stream,
                settings.dtype_backend,
                max_rows=settings.max_rows + 1,
                progress=progress,
            )
    except asyncio.CancelledError:
        raise CellInterrupted(stream.rows_fetched) from None
    finally:
        progress.close()
    outcome = Outcome(statement, None if not len(frame.columns) else frame)
    if outcome.frame is not None and len(outcome.frame) > settings.max_rows:
        outcome.frame = outcome.frame.iloc[: settings.max_rows]
        outcome.cut = True
    outcome.warnings = stream.warnings
    if settings.trace:
        try:
            outcome.traces = await stream.get_all_query_traces(TRACE_WAIT)
        except Exception as exc:
            outcome.trace_error = str(exc) or type(exc).__name__
    return outcome


def partition_key(session: AsyncSession, keyspace: str | None, table: str) -> list[str] | None:
    """Return the partition key columns of a table from the driver's schema metadata."""
    keyspace = keyspace or session.keyspace
    if keyspace is None:
        return None
    metadata = session.metadata
    keyspace_meta = metadata.keyspaces.get(keyspace)
    table_meta = None if keyspace_meta is None else keyspace_meta.tables.get(table)
    if table_meta is None:
        return None
    return [str(column.name) for column in table_meta.partition_key]


def filtering_hint(session: AsyncSession, statement: Statement, exc: BaseException) -> str | None:
    """For a query refused for needing ALLOW FILTERING, name the partition key to filter on."""
    if "ALLOW FILTERING" not in str(exc):
        return None
    target = table_of(statement)
    if target is None:
        return None
    keyspace, table = target
    columns = partition_key(session, keyspace, table)
    if not columns:
        return None
    name = f"{keyspace or session.keyspace}.{table}"
    key = ", ".join(columns)
    return f"partition key of {name}: ({key}); restrict {key} with = or IN to read directly"


_SERVER_ERROR: Final = re.compile(
    r'Error from server: code=(?P<code>\w+) \[(?P<kind>[^\]]*)\] message="(?P<message>.*?)"'
    r"(?: info=(?P<info>.*))?\Z",
    re.DOTALL,
)


def server_message(exc: BaseException) -> str:
    """Return the server's own words from a driver error, else the error's text."""
    text = str(exc)
    prefix = ""
    match = _SERVER_ERROR.search(text)
    if match is None:
        return " ".join(text.split())
    prefix = text[: match.start()]
    message = f"{prefix}{match['message']} [{match['kind']}]"
    return " ".join(message.split())
