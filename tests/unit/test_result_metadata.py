"""A ROWS result's metadata: read as the driver reads it, its column specs parsed once a query."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from cassandra.protocol import ResultMessage

from cassnb._driver.fast import pages as fast_pages

INT, BIGINT, TEXT, LIST, UDT = 0x0009, 0x0002, 0x000D, 0x0020, 0x0030
GLOBAL_SPEC, MORE_PAGES, NO_METADATA = 0x0001, 0x0002, 0x0004


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def _option(*codes: int) -> bytes:
    return b"".join(struct.pack(">H", code) for code in codes)


def _body(
    columns: list[tuple[str, bytes]], paging_state: bytes | None = None, *, rows: bytes = b"tail"
) -> bytes:
    flags = GLOBAL_SPEC | (MORE_PAGES if paging_state is not None else 0)
    out = struct.pack(">ii", flags, len(columns))
    if paging_state is not None:
        out += struct.pack(">i", len(paging_state)) + paging_state
    out += _string("ks") + _string("t")
    for name, option in columns:
        out += _string(name) + option
    return out + rows


COLUMNS = [("a", _option(INT)), ("b", _option(LIST, BIGINT)), ("c", _option(TEXT))]


def _read(body: bytes, user_types: Any = None) -> tuple[ResultMessage, int]:
    message = ResultMessage(kind=2)
    f = io.BytesIO(body)
    fast_pages._read_metadata(message, f, {} if user_types is None else user_types)
    return message, f.tell()


def _driver(body: bytes) -> tuple[ResultMessage, int]:
    message = ResultMessage(kind=2)
    f = io.BytesIO(body)
    message.recv_results_metadata(f, {})
    return message, f.tell()


def _described(message: ResultMessage) -> list[tuple[Any, ...]]:
    return [(*column[:3], column[3].cql_parameterized_type()) for column in message.column_metadata]


@pytest.fixture(autouse=True)
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the driver's parses of result metadata (one entry per parse)."""
    monkeypatch.setattr(fast_pages, "_last_specs", None)
    calls: list[int] = []
    parse = ResultMessage.recv_results_metadata

    def counted(self: ResultMessage, f: io.BytesIO, user_type_map: Any) -> None:
        calls.append(1)
        parse(self, f, user_type_map)

    monkeypatch.setattr(ResultMessage, "recv_results_metadata", counted)
    return calls


def test_pages_of_one_query_read_like_the_driver_and_parse_their_specs_once(
    parsed: list[int],
) -> None:
    user_types: dict[str, Any] = {}
    first, first_end = _read(_body(COLUMNS, b"state-1"), user_types)
    second, second_end = _read(_body(COLUMNS, b"the-second-state"), user_types)
    last, last_end = _read(_body(COLUMNS), user_types)
    assert len(parsed) == 1
    for message, end, state in (
        (first, first_end, b"state-1"),
        (second, second_end, b"the-second-state"),
        (last, last_end, None),
    ):
        reference, reference_end = _driver(_body(COLUMNS, state))
        assert _described(message) == _described(reference)
        assert message.paging_state == reference.paging_state == state
        assert end == reference_end
    # The later pages took the first page's parsed types: the list type is one class.
    assert second.column_metadata[1][3] is first.column_metadata[1][3]
    assert last.column_metadata[1][3] is first.column_metadata[1][3]
    assert second.column_metadata is not first.column_metadata


def test_other_specs_are_parsed_afresh(parsed: list[int]) -> None:
    user_types: dict[str, Any] = {}
    _read(_body(COLUMNS, b"s"), user_types)
    renamed = [("z", COLUMNS[0][1]), *COLUMNS[1:]]
    second, _ = _read(_body(renamed, b"s"), user_types)
    # The same bytes at first, then fewer columns: the count tells them apart.
    fewer, _ = _read(_body(renamed[:2], b"s", rows=_string("c") + COLUMNS[2][1]), user_types)
    assert [column[2] for column in second.column_metadata] == ["z", "b", "c"]
    assert [column[2] for column in fewer.column_metadata] == ["z", "b"]
    assert len(parsed) == 3


def test_another_user_type_map_is_parsed_afresh(parsed: list[int]) -> None:
    _read(_body(COLUMNS, b"s"), {})
    _read(_body(COLUMNS, b"s"), {})
    assert len(parsed) == 2


def test_user_types_are_never_reused(parsed: list[int]) -> None:
    udt = _option(UDT) + _string("ks") + _string("point") + struct.pack(">H", 1)
    udt += _string("x") + _option(INT)
    columns = [("p", udt)]
    user_types: dict[str, Any] = {}
    first, _ = _read(_body(columns, b"s"), user_types)
    second, _ = _read(_body(columns, b"s"), user_types)
    assert _described(first) == _described(second)
    assert len(parsed) == 2


def test_metadata_the_cache_does_not_know_goes_to_the_driver(parsed: list[int]) -> None:
    body = struct.pack(">ii", NO_METADATA, 2) + b"rows"
    message, end = _read(body)
    assert message.column_metadata is None
    assert end == 8
    with pytest.raises(Exception, match=r"."):
        _read(_body(COLUMNS, b"s")[:20])
    # A paging state longer than the body: the driver's reading, and its error.
    short = struct.pack(">iii", MORE_PAGES, 1, 1000) + b"abc"
    with pytest.raises(Exception, match=r"."):
        _read(short)
    assert len(parsed) == 3
