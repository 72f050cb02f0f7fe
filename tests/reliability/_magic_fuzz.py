"""Generated ``%%cql`` cells in a real IPython shell, run in a child process by test_bad_input.

Every cell must end in a result, a cassnb error or IPython's ``UsageError`` (the magics'
one-line form of a user mistake), within a bound, and a healthy cell must work after it.
The first cell that does otherwise fails the run (non-zero exit, with the cell shown); on
success the last line printed is a JSON object of outcome counts.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from IPython.utils.capture import capture_output

sys.path.insert(0, str(Path(__file__).parent))

from _fuzz import HEALTH_CHECK, KEYSPACE, SCHEMA, statements, values

from cassnb import CassandraError

ADDRESS = os.environ.get("CASSNB_FUZZ_ADDRESS", "127.0.0.1")
EXAMPLES = int(os.environ.get("CASSNB_FUZZ_EXAMPLES", "100"))
HANG_S = float(os.environ.get("CASSNB_FUZZ_HANG_S", "15"))
DERANDOMIZE = os.environ.get("CASSNB_FUZZ_DERANDOMIZE", "1") == "1"

OPTIONS = [
    "", "", "", "--quiet", "--out frame", "--fetch-size 7", "--max-rows 3",
    "--consistency ONE", "--consistency QUORUM", "--consistency BOGUS", "--timeout 0.5",
    "--timeout abc", "--fetch-size -1", "--fetch-size 0", "--max-rows 0", "--trace",
    "--connection nowhere", "--no-such-option",
]  # fmt: skip
NAMES = ["name", "k", "t", "l", "m", "missing_name"]

shell = InteractiveShell.instance()
outcomes: Counter[str] = Counter()


def run(cell: str) -> tuple[ExecutionResult, str]:
    """Run one cell with a bound; a cell still running at the bound kills the process."""
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    try:
        with capture_output() as captured:
            result = shell.run_cell(cell, store_history=False)
    finally:
        faulthandler.cancel_dump_traceback_later()
    return result, captured.stdout + captured.stderr


def must_succeed(cell: str) -> None:
    result, shown = run(cell)
    if not result.success:
        raise AssertionError(f"cell failed: {cell!r}: {result.error_in_exec!r}\n{shown}")


def outcome(cell: str) -> str:
    result, shown = run(cell)
    if result.error_before_exec is not None:
        raise AssertionError(f"cell did not even run: {cell!r}: {result.error_before_exec!r}")
    error = result.error_in_exec
    if error is None:
        return "result"
    if isinstance(error, CassandraError | UsageError):
        return type(error).__name__
    raise AssertionError(f"cell raised {error!r}: {cell!r}\n{shown}")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    statements,
    st.sampled_from(OPTIONS),
    st.booleans(),
    st.dictionaries(st.sampled_from(NAMES), values, max_size=3),
)
def example(cql: str, option: str, as_line: bool, bindings: dict[str, Any]) -> None:
    for name in NAMES:
        shell.user_ns.pop(name, None)
    shell.user_ns.update(bindings)
    if as_line:
        cell = f"frame = %cql {option} {cql.splitlines()[0] if cql.strip() else cql}"
    else:
        cell = f"%%cql {option}\n{cql}"
    outcomes[outcome(cell)] += 1
    must_succeed(f"%cql {HEALTH_CHECK}")


def main() -> None:
    must_succeed("%load_ext cassnb")
    must_succeed("%config CQLMagic.progress = False")
    must_succeed(f"%cql_connect {ADDRESS}")
    for statement in SCHEMA:
        must_succeed(f"%%cql\n{statement}")
    must_succeed(f"%cql_connect {ADDRESS} --keyspace {KEYSPACE}")
    example()
    print(json.dumps(dict(outcomes)))


if __name__ == "__main__":
    main()
