"""Rendering: the limited view of a cell's frame, its footer, one-line errors, traces."""

from __future__ import annotations

import datetime as dt
import gc
from types import SimpleNamespace

import pandas as pd
from IPython.core.formatters import DisplayFormatter

from cassnb._magics.render import (
    FrameNote,
    FrameViews,
    error_line,
    footer,
    limited_html,
    limited_text,
    trace_frame,
)
from cassnb._magics.run import server_message


def test_footer_tells_total_shown_and_cut() -> None:
    assert footer(1, FrameNote(limit=10)) == "1 row"
    assert footer(3, FrameNote(limit=10)) == "3 rows"
    assert footer(12_345, FrameNote(limit=10)).startswith("12,345 rows, showing the first 10")
    cut = footer(100, FrameNote(limit=10, cut_at=100))
    assert "stopped at max_rows=100" in cut


def test_limited_views_show_at_most_the_limit() -> None:
    frame = pd.DataFrame({"k": range(1000), "v": [f"value {i}" for i in range(1000)]})
    text = limited_text(frame, FrameNote(limit=5))
    assert "value 4" in text and "value 5" not in text
    assert text.endswith("1,000 rows, showing the first 5 (%config CQLMagic.displaylimit)")
    html = limited_html(frame, FrameNote(limit=5))
    assert html.count("</tr>") == 6  # header + 5 rows
    assert "1,000 rows" in html


def test_limit_above_pandas_own_limit_is_honoured() -> None:
    frame = pd.DataFrame({"k": range(200)})
    text = limited_text(frame, FrameNote(limit=100))
    assert "..." not in text and "\n99 " in text


def test_limit_zero_leaves_the_view_to_pandas() -> None:
    frame = pd.DataFrame({"k": range(1000)})
    text = limited_text(frame, FrameNote(limit=0))
    assert "..." in text and len(text.splitlines()) < 30
    assert text.endswith("1,000 rows")


def test_describe_shows_the_create_statements() -> None:
    frame = pd.DataFrame(
        {
            "keyspace_name": ["ks"],
            "type": ["table"],
            "name": ["t"],
            "create_statement": ["CREATE TABLE ks.t (\n    k int PRIMARY KEY\n);"],
        }
    )
    assert limited_text(frame, FrameNote(limit=10, describe=True)).startswith("CREATE TABLE ks.t")
    assert "<pre>CREATE TABLE" in limited_html(frame, FrameNote(limit=10, describe=True))


def test_formatters_limit_only_remembered_frames() -> None:
    formatter = DisplayFormatter()
    views = FrameViews()
    views.install(formatter)
    try:
        ours = pd.DataFrame({"k": range(50)})
        other = pd.DataFrame({"k": range(50)})
        views.remember(ours, FrameNote(limit=3))
        data, _ = formatter.format(ours)
        assert data["text/plain"].endswith(
            "50 rows, showing the first 3 (%config CQLMagic.displaylimit)"
        )
        assert data["text/html"].count("</tr>") == 4
        data, _ = formatter.format(other)
        assert data["text/plain"] == repr(other)
        assert data["text/html"] == other._repr_html_()
        key = id(ours)
        del ours
        gc.collect()
        assert key not in views._notes
    finally:
        views.uninstall()
    assert pd.DataFrame not in formatter.formatters["text/html"].type_printers


def test_error_line_is_one_line_with_the_servers_message() -> None:
    raw = (
        'Error from server: code=2200 [Invalid query] message="Undefined column name vv\n'
        'in table ks.t"'
    )
    message = server_message(Exception(raw))
    assert message == "Undefined column name vv in table ks.t [Invalid query]"
    line = error_line("QueryError", message, "a hint")
    assert line == "QueryError: Undefined column name vv in table ks.t [Invalid query] (a hint)"
    assert "\n" not in line
    assert server_message(Exception("plain\ntext")) == "plain text"


def test_trace_frame() -> None:
    event = SimpleNamespace(
        description="Parsing SELECT",
        source="127.0.0.1",
        source_elapsed=dt.timedelta(microseconds=363),
        thread_name="Native-Transport-Requests-1",
    )
    frame = trace_frame([event])
    assert list(frame.columns) == ["elapsed_us", "source", "thread", "activity"]
    assert frame.iloc[0]["elapsed_us"] == 363
