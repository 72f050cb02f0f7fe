"""Pure parsing: cell and line options, statement splitting, placeholders, connect lines."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from cassnb._magics.parse import (
    CellOptions,
    bind_placeholders,
    parse_cell_options,
    parse_connect,
    parse_line_options,
    parse_url,
    split_statements,
    table_of,
)


def texts(cql: str) -> list[str]:
    return [statement.text for statement in split_statements(cql)]


# --- splitting ----------------------------------------------------------------------------


def test_splits_on_semicolons_and_drops_empty_statements() -> None:
    assert texts("SELECT 1;\n  SELECT 2 ;;\n SELECT 3") == ["SELECT 1", "SELECT 2", "SELECT 3"]
    assert texts(" ;\n ; ") == []


def test_semicolon_inside_a_string_with_doubled_quotes_does_not_split() -> None:
    cql = "INSERT INTO t (k, v) VALUES (1, 'it''s; here'); SELECT 1"
    assert texts(cql) == ["INSERT INTO t (k, v) VALUES (1, 'it''s; here')", "SELECT 1"]


def test_semicolon_inside_a_dollar_string_does_not_split() -> None:
    cql = (
        "CREATE FUNCTION f(x int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java "
        "AS $$ int y = x; return y; $$; SELECT 1"
    )
    statements = texts(cql)
    assert len(statements) == 2
    assert statements[0].endswith("$$ int y = x; return y; $$")


def test_semicolon_inside_a_quoted_name_does_not_split() -> None:
    assert texts('SELECT "a;b" FROM t; SELECT 2') == ['SELECT "a;b" FROM t', "SELECT 2"]


@pytest.mark.parametrize(
    "comment", ["-- a; b\n", "// a; b\n", "/* a; b */", "/* multi\nline; */\n"]
)
def test_semicolon_inside_each_comment_style_does_not_split(comment: str) -> None:
    statements = split_statements(f"SELECT 1 {comment} FROM t; SELECT 2")
    assert len(statements) == 2
    assert statements[0].code.split() == ["SELECT", "1", "FROM", "t"]


def test_a_statement_of_comments_only_is_dropped() -> None:
    assert texts("SELECT 1; -- trailing; comment\n/* and; this */") == ["SELECT 1"]


def test_unterminated_string_or_comment_runs_to_the_end() -> None:
    assert texts("SELECT 'abc; def") == ["SELECT 'abc; def"]
    assert texts("SELECT 1 /* a; b") == ["SELECT 1 /* a; b"]


def test_a_batch_is_one_statement() -> None:
    cql = (
        "BEGIN UNLOGGED BATCH\n INSERT INTO t (k) VALUES (1);\n"
        "  INSERT INTO t (k) VALUES (2); -- two\nAPPLY BATCH;\nSELECT * FROM t"
    )
    statements = texts(cql)
    assert len(statements) == 2
    assert statements[0].startswith("BEGIN UNLOGGED BATCH")
    assert statements[0].endswith("APPLY BATCH")
    assert statements[0].count(";") == 2
    assert texts("begin batch insert into t (k) values (1)") == [
        "begin batch insert into t (k) values (1)"
    ]


def test_keywords_skip_leading_comments() -> None:
    (statement,) = split_statements("-- why\n/* x */ describe keyspaces")
    assert statement.keywords == ["DESCRIBE", "KEYSPACES"]


# --- placeholders -------------------------------------------------------------------------


def test_finds_placeholders_in_order_with_repeats() -> None:
    (statement,) = split_statements("SELECT * FROM t WHERE a = :a AND b IN (:b, :a) LIMIT :n")
    assert statement.placeholders == ("a", "b", "a", "n")
    assert statement.with_markers() == "SELECT * FROM t WHERE a = ? AND b IN (?, ?) LIMIT ?"


def test_colons_in_strings_comments_and_casts_are_not_placeholders() -> None:
    cql = (
        "SELECT * FROM t WHERE ts = '2024-01-01 10:30:00' -- :nope\n"
        "AND x = $$ :body $$ AND m = {'k': 1, 'j':2} /* :no */ AND y = a::b AND z = :z"
    )
    (statement,) = split_statements(cql)
    assert statement.placeholders == ("z",)
    assert "'2024-01-01 10:30:00'" in statement.with_markers()
    assert "a::b" in statement.with_markers()


def test_binds_values_from_the_namespace() -> None:
    (statement,) = split_statements("SELECT * FROM t WHERE a = :a AND b = :b AND c = :a")
    assert bind_placeholders(statement, {"a": 1, "b": "x'); DROP TABLE t; --"}) == [
        1,
        "x'); DROP TABLE t; --",
        1,
    ]


def test_an_unknown_name_is_a_one_line_usage_error() -> None:
    (statement,) = split_statements("SELECT * FROM t WHERE a = :a AND b = :missing")
    with pytest.raises(UsageError) as raised:
        bind_placeholders(statement, {"a": 1})
    message = str(raised.value)
    assert "missing" in message and "\n" not in message


def test_mixing_placeholders_and_question_marks_is_refused() -> None:
    (statement,) = split_statements("SELECT * FROM t WHERE a = :a AND b = ?")
    with pytest.raises(UsageError, match="mix"):
        bind_placeholders(statement, {"a": 1})


def test_table_of_a_select() -> None:
    assert table_of(split_statements("SELECT * FROM Flights WHERE x = 1")[0]) == (None, "flights")
    assert table_of(split_statements('select a from Ks."My Table"')[0]) == ("ks", "My Table")
    assert table_of(split_statements("SELECT now()")[0]) is None


# --- options ------------------------------------------------------------------------------


def test_cell_options() -> None:
    options = parse_cell_options(
        "--out df --fetch-size 100 --max-rows 1_000 --consistency local_quorum --timeout 2.5 "
        "--trace --quiet --connection other"
    )
    assert options == CellOptions(
        out="df",
        fetch_size=100,
        max_rows=1000,
        consistency="LOCAL_QUORUM",
        timeout=2.5,
        trace=True,
        quiet=True,
        connection="other",
    )
    assert parse_cell_options("") == CellOptions()


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("--out 1x", "not a Python variable name"),
        ("--fetch-size 0", "positive"),
        ("--consistency FOUR", "unknown consistency"),
        ("--timeout -1", "positive"),
        ("SELECT 1", "options go on the first line"),
        ("--bogus", "--bogus"),
    ],
)
def test_bad_cell_options_are_usage_errors(line: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_cell_options(line)


def test_line_options_then_cql_kept_verbatim() -> None:
    options, cql = parse_line_options("--max-rows 5 -q SELECT a, 'x  --y' FROM t -- note")
    assert options.max_rows == 5 and options.quiet
    assert cql == "SELECT a, 'x  --y' FROM t -- note"
    options, cql = parse_line_options("--out=df SELECT count(*) FROM flights")
    assert options.out == "df" and cql == "SELECT count(*) FROM flights"
    assert parse_line_options("SELECT 1") == (CellOptions(), "SELECT 1")
    assert parse_line_options("--trace -- SELECT 1")[1] == "SELECT 1"


def test_unknown_line_option_and_missing_value() -> None:
    with pytest.raises(UsageError, match="unknown option --limit"):
        parse_line_options("--limit 5 SELECT 1")
    with pytest.raises(UsageError, match="needs a value"):
        parse_line_options("--out")


# --- %cql_connect -------------------------------------------------------------------------


def test_connect_with_hosts_and_options() -> None:
    options = parse_connect(
        "127.0.0.1,127.0.0.2 --keyspace demo --port 9043 --user ann --password-env PW "
        "--local-dc dc1 --alias main"
    )
    assert options.contact_points == ("127.0.0.1", "127.0.0.2")
    assert (options.keyspace, options.port, options.user) == ("demo", 9043, "ann")
    assert (options.password_env, options.local_dc, options.alias) == ("PW", "dc1", "main")
    assert parse_connect("127.0.0.1").default_alias == "127.0.0.1"
    assert parse_connect("h1 h2 -p 9000 -u bob").default_alias == "bob@h1,h2:9000"


def test_connect_with_a_url() -> None:
    options = parse_connect("cassandra://ann@host1,host2:9043/flights --alias a")
    assert options.contact_points == ("host1", "host2")
    assert (options.port, options.keyspace, options.user) == (9043, "flights", "ann")
    url = parse_url("cassandra://[::1]:9042,[::2]")
    assert url.contact_points == ("::1", "::2") and url.port == 9042 and url.user is None
    assert parse_connect("cassandra://h/ks --keyspace other").keyspace == "other"


@pytest.mark.parametrize(
    "line",
    [
        "cassandra://ann:s3cr3t-pw@host/ks",
        "cassandra://ann:s3cr3t-pw@host1,host2:9042",
        "127.0.0.1 --password s3cr3t-pw",
        "127.0.0.1 --password=s3cr3t-pw",
        "127.0.0.1 --user ann --password-env s3cr3t-pw!",
    ],
)
def test_a_password_is_refused_and_never_repeated(line: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_connect(line)
    message = str(raised.value)
    assert "s3cr3t-pw" not in message
    assert "--password-env" in message


def test_unknown_options_are_named_without_their_values() -> None:
    with pytest.raises(UsageError) as raised:
        parse_connect("127.0.0.1 --pwd=s3cr3t-pw")
    assert "--pwd" in str(raised.value) and "s3cr3t-pw" not in str(raised.value)


def test_connect_list_close_and_mistakes() -> None:
    assert parse_connect("--list").list
    assert parse_connect("--close main").close == "main"
    assert parse_connect("--alias main").contact_points == ()
    for line in ["", "--list 127.0.0.1", "--password-env PW 127.0.0.1", "http://h", "h --port 0"]:
        with pytest.raises(UsageError):
            parse_connect(line)
    with pytest.raises(UsageError, match="no such file"):
        parse_connect("h --ssl-ca /nonexistent/ca.pem")
    with pytest.raises(UsageError, match="same port"):
        parse_url("cassandra://h1:9042,h2:9043")
