"""The type table the frames and native suites both read: one column per CQL type, and
reference rows of values for it.

Each suite keeps the table in a keyspace of its own, with a user type of its own in
``c_udt``, and may add values of its own to the rows; what they share lives here.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

from cassandra.util import Date, Duration, Time

UTC = dt.UTC
BEFORE_EPOCH = dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


def typed_columns(udt: str) -> list[tuple[str, str]]:
    """Return (column, CQL type) for every type the table covers, with ``c_udt`` of ``udt``."""
    return [
        ("c_ascii", "ascii"),
        ("c_text", "text"),
        ("c_varchar", "varchar"),
        ("c_tinyint", "tinyint"),
        ("c_smallint", "smallint"),
        ("c_int", "int"),
        ("c_bigint", "bigint"),
        ("c_varint", "varint"),
        ("c_float", "float"),
        ("c_double", "double"),
        ("c_decimal", "decimal"),
        ("c_boolean", "boolean"),
        ("c_timestamp", "timestamp"),
        ("c_date", "date"),
        ("c_time", "time"),
        ("c_duration", "duration"),
        ("c_uuid", "uuid"),
        ("c_timeuuid", "timeuuid"),
        ("c_inet", "inet"),
        ("c_blob", "blob"),
        ("c_list", "list<int>"),
        ("c_set", "set<text>"),
        ("c_map", "map<text, bigint>"),
        ("c_tuple", "tuple<int, text, timestamp>"),
        ("c_frozen", "frozen<map<text, frozen<list<int>>>>"),
        ("c_nested", "list<frozen<set<date>>>"),
        ("c_udt", udt),
        ("c_vector", "vector<float, 3>"),
    ]


#: Values of every column but ``c_udt``, by key; a column left out is NULL.
_SHARED_ROWS: dict[int, dict[str, Any]] = {
    0: {},
    1: {
        "c_ascii": "plain ascii",
        "c_text": "héllo wörld ✓",
        "c_varchar": "varchar",
        "c_tinyint": -128,
        "c_smallint": 32767,
        "c_int": -(2**31),
        "c_bigint": 2**63 - 1,
        "c_varint": 2**100 + 7,
        "c_float": 1.5,
        "c_double": 0.1,
        "c_decimal": Decimal("-123456789.123456789123456789"),
        "c_boolean": True,
        "c_timestamp": BEFORE_EPOCH,
        "c_date": dt.date(1900, 1, 1),
        "c_time": Time(86_399_999_999_999),
        "c_duration": Duration(1, 2, 3),
        "c_uuid": uuid.UUID("3b241101-e2bb-4255-8caf-4136c566a962"),
        "c_timeuuid": uuid.UUID("5d6a8a60-8b1d-11ee-b9d1-0242ac120002"),
        "c_inet": "192.168.0.1",
        "c_blob": b"\x00\x01\xfe\xff",
        "c_list": [3, 1, 2],
        "c_set": {"b", "a"},
        "c_map": {"x": 1, "y": -(2**63)},
        "c_tuple": (1, "a", BEFORE_EPOCH),
        "c_frozen": {"a": [1, 2], "b": []},
        "c_nested": [{dt.date(2020, 1, 1), dt.date(1960, 6, 15)}],
        "c_vector": [1.5, -2.0, 3.25],
    },
    2: {
        "c_ascii": "",
        "c_text": "",
        "c_varchar": "",
        "c_tinyint": 0,
        "c_smallint": -1,
        "c_int": 0,
        "c_bigint": -(2**63),
        "c_varint": -(2**80),
        "c_float": math.nan,
        "c_double": -math.inf,
        "c_decimal": Decimal("0"),
        "c_boolean": False,
        "c_timestamp": dt.datetime(1970, 1, 1, tzinfo=UTC),
        "c_date": dt.date(1970, 1, 1),
        "c_time": Time(0),
        "c_duration": Duration(-1, -2, -3),
        "c_uuid": uuid.UUID(int=0),
        "c_timeuuid": uuid.UUID("00000000-0000-1000-8000-000000000000"),
        "c_inet": "2001:db8::ff00:42:8329",
        "c_blob": b"",
        "c_list": [],
        "c_set": set(),
        "c_map": {},
        "c_tuple": (None, None, None),
        "c_frozen": {},
        "c_nested": [set()],
        "c_vector": [0.0, 0.0, 0.0],
    },
    3: {
        "c_timestamp": dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        "c_date": Date(2**31 - 1),
    },
    4: {
        "c_timestamp": dt.datetime(1, 1, 1, tzinfo=UTC),
        "c_date": Date(-(2**31)),
    },
}


def reference_rows(own: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Return the reference rows by key, a suite's ``own`` values put over the shared ones.

    A suite's own values include its ``c_udt`` values; a column left out is NULL.
    """
    return {key: {**row, **own.get(key, {})} for key, row in _SHARED_ROWS.items()}
