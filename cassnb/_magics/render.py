"""How results look in a notebook: a row-limited view of a full DataFrame, traces, errors.

A cell's value is a real ``pandas.DataFrame`` holding every row. So that showing it
stays cheap and short, frames returned by a cell are remembered (weakly, by identity)
and IPython's HTML and plain-text formatters render those as their first
``displaylimit`` rows plus a footer with the total row count. Every other DataFrame
renders exactly as before.
"""

from __future__ import annotations

import contextlib
import html
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd

__all__ = ["FrameNote", "FrameViews", "error_line", "footer", "trace_frame"]


@dataclass(frozen=True)
class FrameNote:
    """What the footer of a cell's frame says, beyond its length."""

    limit: int
    cut_at: int | None = None
    describe: bool = False


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def footer(total: int, note: FrameNote) -> str:
    """Return the line under a cell's table: total rows, what is shown, what was cut."""
    text = _plural(total, "row")
    if note.limit and total > note.limit:
        text += f", showing the first {note.limit:,} (%config CQLMagic.displaylimit)"
    if note.cut_at is not None:
        text += (
            f"; stopped at max_rows={note.cut_at:,}, more rows exist "
            "(--max-rows N, %config CQLMagic.max_rows, or add a LIMIT)"
        )
    return text


def _describe_text(frame: pd.DataFrame) -> str:
    statements = [str(value) for value in frame["create_statement"].tolist() if value]
    return "\n\n".join(statements)


def _pandas_html(frame: pd.DataFrame) -> str | None:
    html_text: str | None = cast(Any, frame)._repr_html_()
    return html_text


def _head(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    return frame if len(frame) <= limit else frame.head(limit)


def _showing(rows: int) -> contextlib.AbstractContextManager[Any]:
    """Let pandas print ``rows`` rows without eliding any (its own limit is 60)."""
    return pd.option_context("display.max_rows", rows + 1, "display.min_rows", rows)


def limited_html(frame: pd.DataFrame, note: FrameNote) -> str:
    """Render a cell's frame as HTML: the shown rows, then the footer."""
    if note.describe and "create_statement" in frame.columns:
        return f"<pre>{html.escape(_describe_text(frame))}</pre>"
    if not note.limit:
        table = _pandas_html(frame) or html.escape(repr(frame))
    else:
        shown = _head(frame, note.limit)
        with _showing(len(shown)):
            table = _pandas_html(shown) or html.escape(repr(shown))
    return f"{table}\n<p><small>{html.escape(footer(len(frame), note))}</small></p>"


def limited_text(frame: pd.DataFrame, note: FrameNote) -> str:
    """Render a cell's frame as plain text: the shown rows, then the footer."""
    if note.describe and "create_statement" in frame.columns:
        return _describe_text(frame)
    if not note.limit:
        table = repr(frame)
    else:
        shown = _head(frame, note.limit)
        with _showing(len(shown)):
            table = repr(shown)
    return f"{table}\n{footer(len(frame), note)}"


class FrameViews:
    """Frames a cell returned, and the IPython formatters that render them limited."""

    def __init__(self) -> None:
        self._notes: dict[int, tuple[weakref.ref[pd.DataFrame], FrameNote]] = {}
        self._previous: dict[str, Any] = {}
        self._formatters: dict[str, Any] = {}

    def remember(self, frame: pd.DataFrame, note: FrameNote) -> None:
        """Render ``frame`` limited from now on, as long as it lives."""
        key = id(frame)

        def forget(_: object, key: int = key) -> None:
            self._notes.pop(key, None)

        self._notes[key] = (weakref.ref(frame, forget), note)

    def note(self, frame: object) -> FrameNote | None:
        """Return the note of a remembered frame, or None for any other object."""
        entry = self._notes.get(id(frame))
        if entry is None or entry[0]() is not frame:
            return None
        return entry[1]

    def install(self, display_formatter: Any) -> None:
        """Register the HTML and plain-text printers for DataFrames with IPython."""
        formatters = display_formatter.formatters
        html_formatter = formatters["text/html"]
        text_formatter = formatters["text/plain"]
        self._formatters = {"text/html": html_formatter, "text/plain": text_formatter}
        self._previous["text/html"] = html_formatter.for_type(pd.DataFrame, self._html)
        self._previous["text/plain"] = text_formatter.for_type(pd.DataFrame, self._pretty)

    def uninstall(self) -> None:
        """Put back whatever printers were registered for DataFrames before."""
        for mime, formatter in self._formatters.items():
            previous = self._previous.get(mime)
            if previous is None:
                formatter.type_printers.pop(pd.DataFrame, None)
            else:
                formatter.for_type(pd.DataFrame, previous)
        self._formatters.clear()
        self._previous.clear()

    def _html(self, frame: pd.DataFrame) -> str | None:
        note = self.note(frame)
        if note is not None:
            return limited_html(frame, note)
        previous: Callable[[pd.DataFrame], str | None] | None = self._previous.get("text/html")
        if previous is not None:
            return previous(frame)
        return _pandas_html(frame)

    def _pretty(self, frame: pd.DataFrame, printer: Any, cycle: bool) -> None:
        note = self.note(frame)
        if note is not None:
            printer.text(limited_text(frame, note))
            return
        previous = self._previous.get("text/plain")
        if previous is not None:
            previous(frame, printer, cycle)
            return
        printer.text(repr(frame))


def error_line(name: str, message: str, hint: str | None = None) -> str:
    """Return one line naming the error and giving its message (and a hint)."""
    line = f"{name}: {' '.join(message.split())}"
    return f"{line} ({hint})" if hint else line


def trace_frame(events: Iterable[Any]) -> pd.DataFrame:
    """Turn the driver's trace events into a table, one row per event."""
    rows = []
    for event in events:
        elapsed = event.source_elapsed
        rows.append(
            {
                "elapsed_us": None if elapsed is None else int(elapsed.total_seconds() * 1e6),
                "source": None if event.source is None else str(event.source),
                "thread": event.thread_name,
                "activity": event.description,
            }
        )
    frame = pd.DataFrame(rows, columns=["elapsed_us", "source", "thread", "activity"])
    frame["elapsed_us"] = frame["elapsed_us"].astype("Int64")
    return frame
