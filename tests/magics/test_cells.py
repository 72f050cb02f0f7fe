"""%%cql and %cql in a real kernel, against the real node."""

from __future__ import annotations

from ._magics_kernel import EXTENSION, KEYSPACE, Kernel


def test_a_cell_runs_on_the_kernels_own_loop(kernel: Kernel) -> None:
    kernel.ok("%%cql\nSELECT * FROM flights WHERE carrier = 'AA' AND month = 1")
    reply = kernel.ok(
        "magic = get_ipython().magics_manager.registry['CQLMagic']\n"
        "kernel_loop = get_ipython().kernel.io_loop.asyncio_loop\n"
        "print(magic.last_loop is kernel_loop, kernel_loop.is_running())"
    )
    assert reply.stdout.strip() == "True True"


def test_top_level_await_works_in_the_same_notebook(kernel: Kernel) -> None:
    reply = kernel.ok(
        "import asyncio, cassnb\n"
        "await asyncio.sleep(0)\n"
        "frame = await cassnb.read_cql('SELECT count(*) FROM flights')\n"
        "counted = %cql SELECT count(*) FROM flights\n"
        "print(int(frame.iloc[0, 0]), int(counted.iloc[0, 0]))"
    )
    assert reply.stdout.split() == ["47", "47"]


def test_the_value_is_the_full_frame_and_the_view_is_limited(kernel: Kernel) -> None:
    kernel.ok("%config CQLMagic.displaylimit = 5")
    try:
        reply = kernel.ok(
            "%%cql --out saved\nSELECT * FROM flights WHERE carrier = 'AA' AND month = 1"
        )
        lines = reply.text.splitlines()
        assert lines[-1] == "40 rows, showing the first 5 (%config CQLMagic.displaylimit)"
        assert len(lines) == 1 + 5 + 1
        assert reply.result is not None and "40 rows" in reply.result["text/html"]
        check = kernel.ok(
            "import pandas as pd\n"
            "print(type(_) is pd.DataFrame, len(_), len(saved), _ is saved, list(saved.columns))"
        )
        assert check.stdout.strip().split(maxsplit=4) == [
            "True",
            "40",
            "40",
            "True",
            "['carrier', 'month', 'id', 'delay', 'dest']",
        ]
    finally:
        kernel.ok("%config CQLMagic.displaylimit = 10")


def test_line_form_returns_a_real_dataframe(kernel: Kernel) -> None:
    reply = kernel.ok(
        "df = %cql SELECT count(*) FROM flights\n"
        "print(type(df).__module__, type(df).__name__, int(df['count'].iloc[0]))"
    )
    assert reply.stdout.split() == ["pandas", "DataFrame", "47"]


def test_placeholders_are_bound_as_data(kernel: Kernel) -> None:
    kernel.ok(
        "%cql CREATE TABLE IF NOT EXISTS notes (k int PRIMARY KEY, note text)\n%cql TRUNCATE notes"
    )
    reply = kernel.ok(
        "key = 7\n"
        'note = "x\'); DROP TABLE notes; --"\n'
        "%cql INSERT INTO notes (k, note) VALUES (:key, :note)\n"
        "stored = %cql SELECT note FROM notes WHERE k = :key\n"
        "print(repr(stored['note'].iloc[0]))"
    )
    assert reply.stdout.strip() == repr("x'); DROP TABLE notes; --")
    still_there = kernel.ok("%cql SELECT count(*) FROM notes")
    assert "1 row" in still_there.text


def test_an_unknown_name_fails_in_one_line_before_anything_runs(kernel: Kernel) -> None:
    kernel.ok("%cql CREATE TABLE IF NOT EXISTS marks (k int PRIMARY KEY)\n%cql TRUNCATE marks")
    reply = kernel.run(
        "%%cql\nINSERT INTO marks (k) VALUES (1);\nSELECT * FROM marks WHERE k = :no_such_name;"
    )
    assert reply.status == "error"
    assert reply.ename == "UsageError"
    shown = reply.stderr.strip()
    assert "no_such_name" in shown and len(shown.splitlines()) == 1
    assert "0 rows" in kernel.ok("%cql SELECT * FROM marks").text


def test_several_statements_in_one_cell(kernel: Kernel) -> None:
    reply = kernel.ok(
        "%%cql\n"
        "CREATE TABLE IF NOT EXISTS multi (k int PRIMARY KEY, v text);  -- a; comment\n"
        "INSERT INTO multi (k, v) VALUES (1, 'one; with semicolon');\n"
        "/* a; block */ INSERT INTO multi (k, v) VALUES (2, 'it''s');\n"
        "// another; comment\n"
        "SELECT * FROM multi WHERE k IN (1, 2);"
    )
    assert "one; with semicolon" in reply.text and "it's" in reply.text
    assert reply.text.splitlines()[-1] == "2 rows"


def test_ddl_and_writes_display_nothing(kernel: Kernel) -> None:
    reply = kernel.ok(
        "%%cql\nCREATE TABLE IF NOT EXISTS quiet (k int PRIMARY KEY);\n"
        "INSERT INTO quiet (k) VALUES (1);"
    )
    assert reply.result is None and not reply.displays
    assert reply.stdout == "" and reply.stderr == ""


def test_use_switches_the_keyspace(kernel: Kernel) -> None:
    try:
        reply = kernel.ok(
            "%%cql\nUSE system_schema;\nSELECT keyspace_name FROM keyspaces "
            f"WHERE keyspace_name = '{KEYSPACE}'"
        )
        assert KEYSPACE in reply.text
        check = kernel.ok("import cassnb\nprint(cassnb.get_default_session().keyspace)")
        assert check.stdout.strip() == "system_schema"
    finally:
        kernel.ok(f"%cql USE {KEYSPACE}")


def test_describe_keyspaces_and_table(kernel: Kernel) -> None:
    kernel.ok("%cql DESCRIBE KEYSPACES")
    names = kernel.ok("print(sorted(_['keyspace_name']))").stdout
    assert KEYSPACE in names and "system_schema" in names
    table = kernel.ok("%%cql\nDESCRIBE TABLE flights")
    assert table.text.startswith(f"CREATE TABLE {KEYSPACE}.flights (")
    assert "PRIMARY KEY ((carrier, month), id)" in table.text
    columns = kernel.ok("print(list(_.columns))")
    assert "create_statement" in columns.stdout


def test_a_bad_query_is_one_line_and_the_next_cell_works(kernel: Kernel) -> None:
    reply = kernel.run("%%cql\nSELECT nope FROM flights")
    assert reply.status == "error"
    assert reply.error is not None and reply.error["ename"] == "QueryError"
    assert reply.error_text == "QueryError: Undefined column name nope in table " + (
        f"{KEYSPACE}.flights [Invalid query]"
    )
    assert "1 row" in kernel.ok("%cql SELECT count(*) FROM flights").text


def test_syntax_error_is_one_line(kernel: Kernel) -> None:
    reply = kernel.run("%cql SELEKT 1")
    assert reply.status == "error"
    assert len(reply.error_text.splitlines()) == 1
    assert reply.error_text.startswith("QueryError: line 1:0")


def test_full_traceback_when_short_errors_is_off(kernel: Kernel) -> None:
    kernel.ok("%config CQLMagic.short_errors = False")
    try:
        reply = kernel.run("%cql SELECT nope FROM flights")
        assert reply.status == "error"
        assert "Traceback" in reply.error_text or len(reply.error["traceback"]) > 3  # type: ignore[index]
    finally:
        kernel.ok("%config CQLMagic.short_errors = True")


def test_allow_filtering_refusal_names_the_partition_key(kernel: Kernel) -> None:
    reply = kernel.run("%cql SELECT * FROM flights WHERE dest = 'JFK'")
    assert reply.status == "error"
    assert len(reply.error_text.splitlines()) == 1
    assert "ALLOW FILTERING" in reply.error_text
    assert "partition key of cassnb_magics_test.flights: (carrier, month)" in reply.error_text


def test_trace_shows_the_events_as_a_table(kernel: Kernel) -> None:
    reply = kernel.ok("%%cql --trace\nSELECT * FROM flights WHERE carrier = 'UA' AND month = 2")
    assert reply.stdout.startswith("trace ")
    assert "coordinator 127.0.0.1" in reply.stdout
    (table,) = reply.displays
    assert "activity" in table["text/plain"] and "elapsed_us" in table["text/plain"]
    assert "7 rows" in reply.text


def test_consistency_reaches_the_driver(kernel: Kernel) -> None:
    reply = kernel.run("%%cql --consistency THREE\nSELECT * FROM flights")
    assert reply.status == "error"
    assert reply.error_text == (
        "QueryError: Cannot achieve consistency level THREE [Unavailable exception]"
    )
    assert "1 row" in kernel.ok("%cql --consistency ONE SELECT count(*) FROM flights").text


def test_timeout_reaches_the_driver(kernel: Kernel) -> None:
    reply = kernel.run("%%cql --timeout 0.001\nSELECT * FROM million")
    assert reply.status == "error"
    assert reply.error is not None and reply.error["ename"] == "QueryTimeout"
    assert len(reply.error_text.splitlines()) == 1
    assert "3 rows" in kernel.ok("%cql --timeout 30 SELECT * FROM million WHERE p = 1 LIMIT 3").text


def test_max_rows_cuts_and_says_so(kernel: Kernel) -> None:
    reply = kernel.ok("%%cql --max-rows 25\nSELECT * FROM flights")
    assert "stopped at max_rows=25" in reply.stderr
    assert "25 rows" in reply.text and "more rows exist" in reply.text
    assert kernel.ok("print(len(_))").stdout.strip() == "25"


def test_no_connection_is_a_usage_error(tables: object) -> None:
    fresh = Kernel()
    try:
        fresh.ok(f"%load_ext {EXTENSION}")
        reply = fresh.run("%cql SELECT 1")
        assert reply.status == "error"
        assert reply.ename == "UsageError"
        assert "%cql_connect" in reply.stderr and len(reply.stderr.strip().splitlines()) == 1
    finally:
        fresh.close()


def test_a_batch_runs_as_one_statement(kernel: Kernel) -> None:
    kernel.ok(
        "%%cql\nCREATE TABLE IF NOT EXISTS batched (k int PRIMARY KEY);\nTRUNCATE batched;\n"
        "BEGIN UNLOGGED BATCH\n"
        "  INSERT INTO batched (k) VALUES (1);\n"
        "  INSERT INTO batched (k) VALUES (2);\n"
        "APPLY BATCH;"
    )
    assert "2 rows" in kernel.ok("%cql SELECT * FROM batched").text


def test_server_warnings_are_shown(kernel: Kernel) -> None:
    reply = kernel.ok("%cql SELECT count(*) FROM flights")
    assert reply.stderr == "server warning: Aggregation query used without partition key\n"
    assert kernel.ok("%cql --quiet SELECT count(*) FROM flights").stderr == ""


def test_a_quiet_cell_shows_nothing_and_keeps_its_rows_with_out(kernel: Kernel) -> None:
    reply = kernel.ok("%%cql --quiet --out counted\nSELECT count(*) FROM flights")
    assert reply.result is None and reply.stderr == "" and reply.stdout == ""
    assert kernel.ok("print(int(counted['count'].iloc[0]))").stdout.strip() == "47"
    line = kernel.ok("df = %cql --quiet SELECT count(*) FROM flights\nprint(len(df))")
    assert line.stdout.strip() == "1"


def test_cells_that_cannot_await_still_work(kernel: Kernel) -> None:
    timed = kernel.ok("%%time\n%%cql\nSELECT * FROM flights WHERE carrier = 'UA' AND month = 2")
    assert "Wall time" in timed.stdout and "7 rows" in timed.text
    inside = kernel.ok(
        "def count_flights():\n"
        "    frame = %cql SELECT * FROM flights WHERE carrier = 'UA' AND month = 2\n"
        "    return len(frame)\n"
        "print(count_flights())"
    )
    assert inside.stdout.strip() == "7"


def test_autoawait_off_runs_cells_blocking(kernel: Kernel) -> None:
    kernel.ok("%autoawait off")
    try:
        reply = kernel.ok("%%cql\nSELECT * FROM flights WHERE carrier = 'UA' AND month = 2")
        assert "7 rows" in reply.text
        assert kernel.ok("print(len(_))").stdout.strip() == "7"
    finally:
        kernel.ok("%autoawait asyncio")


def test_unload_removes_the_magics(tables: object) -> None:
    fresh = Kernel()
    try:
        fresh.ok(f"%load_ext {EXTENSION}\n%cql_connect 127.0.0.1 --keyspace {KEYSPACE}")
        fresh.ok(f"%unload_ext {EXTENSION}")
        reply = fresh.run("%cql SELECT count(*) FROM flights")
        assert reply.ename == "UsageError" and "not found" in reply.stderr
        check = fresh.ok(
            "import pandas as pd\n"
            "print(pd.DataFrame in get_ipython().display_formatter.formatters['text/html']"
            ".type_printers)"
        )
        assert check.stdout.strip() == "False"
        fresh.ok(f"%reload_ext {EXTENSION}")
        assert "1 row" in fresh.ok("%cql SELECT count(*) FROM flights").text
    finally:
        fresh.close()


TERMINAL_SCRIPT = f"""
from IPython.terminal.interactiveshell import TerminalInteractiveShell
from IPython.core.async_helpers import get_asyncio_loop
shell = TerminalInteractiveShell.instance()
for cell in [
    "%load_ext {{extension}}",
    "%cql_connect 127.0.0.1 --keyspace {KEYSPACE}",
    "%%cql --out frame\\nSELECT * FROM flights WHERE carrier = 'UA' AND month = 2",
]:
    result = shell.run_cell(cell)
    assert result.success, (cell, result.error_before_exec, result.error_in_exec)
magic = shell.magics_manager.registry["CQLMagic"]
print("ROWS", len(shell.user_ns["frame"]))
print("LOOP", magic.last_loop is get_asyncio_loop())
"""


def test_terminal_ipython_awaits_on_its_own_loop(tables: object) -> None:
    import subprocess
    import sys

    script = TERMINAL_SCRIPT.replace("{extension}", EXTENSION)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "ROWS 7" in done.stdout and "LOOP True" in done.stdout


def test_earlier_results_of_a_cell_are_displayed_and_the_last_is_its_value(
    kernel: Kernel,
) -> None:
    reply = kernel.ok(
        "%%cql\nSELECT id FROM flights WHERE carrier = 'UA' AND month = 2 LIMIT 2;\n"
        "SELECT dest FROM flights WHERE carrier = 'UA' AND month = 2 LIMIT 3;"
    )
    (first,) = reply.displays
    assert "id" in first["text/plain"] and first["text/plain"].endswith("2 rows")
    assert "dest" in reply.text and reply.text.endswith("3 rows")


def test_pyarrow_dtypes_when_configured(kernel: Kernel) -> None:
    kernel.ok("%config CQLMagic.dtype_backend = 'pyarrow'")
    try:
        reply = kernel.ok(
            "df = %cql SELECT id, dest FROM flights WHERE carrier = 'UA' AND month = 2\n"
            "print([str(t) for t in df.dtypes])"
        )
        assert reply.stdout.strip() == "['int32[pyarrow]', 'string[pyarrow]']"
    finally:
        kernel.ok("%config CQLMagic.dtype_backend = 'numpy_nullable'")


def test_local_dc_reaches_the_driver(tables: object) -> None:
    fresh = Kernel()
    try:
        fresh.ok("%load_ext cassnb")
        wrong = fresh.run(f"%cql_connect 127.0.0.1 --keyspace {KEYSPACE} --local-dc elsewhere")
        assert wrong.error_text.startswith("ConnectionError: ")
        assert "--local-dc elsewhere" in wrong.error_text
        fresh.ok(f"%cql_connect 127.0.0.1 --keyspace {KEYSPACE} --local-dc datacenter1")
        assert "1 row" in fresh.ok("%cql SELECT count(*) FROM flights").text
    finally:
        fresh.close()
