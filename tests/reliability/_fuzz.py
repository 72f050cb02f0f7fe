"""Generated bad input for the reliability suite: CQL-ish statements and parameter values.

Shared by the in-process tests of the core API and the ``%%cql`` child process. Nothing
generated can drop, truncate or alter anything: those words are never produced, and
statements that spell them by chance are left out.
"""

from __future__ import annotations

import datetime
import decimal
import re
from typing import Any

from hypothesis import strategies as st

KEYSPACE = "cassnb_rel_fuzz"
TABLE = f"{KEYSPACE}.typed"
SCHEMA = [
    f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    f"CREATE TABLE IF NOT EXISTS {TABLE} (k int PRIMARY KEY, i bigint, t text, b blob, "
    "f float, d decimal, u uuid, ts timestamp, l list<int>, m map<text, int>, "
    "s set<text>, flag boolean)",
]
#: A statement with a marker of every kind of column: random values are bound to it.
TYPED_INSERT = f"INSERT INTO {TABLE} (k, i, t, b, f, d, u, ts, l, m, s, flag) VALUES " + (
    "(" + ", ".join(["?"] * 12) + ")"
)
HEALTH_CHECK = "SELECT release_version FROM system.local"

_FORBIDDEN = re.compile(r"\b(drop|truncate|alter|revoke|grant|role|user)\b", re.IGNORECASE)

_TOKENS = [
    "SELECT", "*", "FROM", "WHERE", "AND", "=", "<", ">=", "IN", "?", ":name", ":k", "INSERT",
    "INTO", "VALUES", "(", ")", ",", ";", "UPDATE", "SET", "DELETE", "USE", "LIMIT",
    "ALLOW FILTERING", "ORDER BY", "GROUP BY", "DISTINCT", "JSON", "TOKEN(k)", "count(*)",
    "writetime(t)", "ttl(t)", "CAST(k AS text)", "BEGIN BATCH", "APPLY BATCH", "IF EXISTS",
    "IF NOT EXISTS", "USING TTL", "USING TIMESTAMP", "PER PARTITION LIMIT", "DESCRIBE",
    "system.local", "system.peers_v2", "system_schema.tables", TABLE, "cassnb_rel.kv",
    "no_such_table", "no_such_ks.t", KEYSPACE, "k", "i", "t", "b", "f", "d", "u", "ts", "l",
    "m", "s", "flag", "0", "-1", "2147483648", "9223372036854775808", "1.5e308", "NaN",
    "-Infinity", "'text'", "''", "'unterminated", '"Quoted"', '"', "0xdeadbeef", "0x",
    "true", "null", "[1, 2]", "{'a': 1}", "{}", "now()", "uuid()", "--", "//", "/*", "*/",
    "$$", "$$body$$", "\\", "\x00", "é", "🙂", "\n", "\t",
]  # fmt: skip

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
cql_like = st.lists(
    st.one_of(st.sampled_from(_TOKENS), identifiers, st.integers().map(str)),
    min_size=1,
    max_size=14,
).map(" ".join)
#: Statements the node accepts, some with markers, so that binding gets exercised too.
VALID = [
    HEALTH_CHECK,
    f"SELECT * FROM {TABLE} LIMIT 5",
    f"SELECT k, t FROM {TABLE} WHERE k = ?",
    f"SELECT k FROM {TABLE} WHERE k IN (?, ?)",
    f"SELECT count(*) FROM {TABLE} WHERE k > ? ALLOW FILTERING",
    f"SELECT * FROM {TABLE} WHERE k = :k",
    f"INSERT INTO {TABLE} (k, t) VALUES (?, ?)",
    f"INSERT INTO {TABLE} (k, l, m) VALUES (:k, :l, :m) USING TTL 60",
    f"UPDATE {TABLE} SET i = ? WHERE k = ?",
    f"SELECT * FROM {TABLE} WHERE k = 1; SELECT * FROM {TABLE} WHERE k = 2",
    "SELECT * FROM system_schema.keyspaces",
]
statements = st.one_of(st.sampled_from(VALID), cql_like, cql_like, st.text(max_size=120)).filter(
    lambda cql: not _FORBIDDEN.search(cql)
)

values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.uuids(),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.timedeltas(),
    st.lists(st.integers(), max_size=4),
    st.lists(st.text(max_size=5), max_size=4).map(set),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.tuples(st.integers(), st.text(max_size=5)),
    st.just(object()),
    st.just(datetime.UTC),
    st.just(decimal.Decimal("sNaN")),
)
parameters: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.lists(values, max_size=14),
    st.lists(values, min_size=12, max_size=12),
    st.dictionaries(st.sampled_from(["k", "i", "t", "b", "name", "", "K"]), values, max_size=4),
    values,
)
consistencies = st.one_of(
    st.none(), st.sampled_from(["ONE", "QUORUM", "ALL", "SERIAL", "LOCAL_ONE", "each_quorum"]),
    st.text(max_size=8), st.integers(min_value=-2, max_value=20),
)  # fmt: skip
fetch_sizes = st.one_of(st.integers(min_value=1, max_value=500), st.integers(), st.just(0))
