"""Cells that connect with a password, run by test_credentials in a child process.

Every cell's output and every log record (all loggers at DEBUG) is collected; the run fails
if a password shows in any of them. The last line printed is a JSON object of figures.
"""

from __future__ import annotations

import json
import logging
import os

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

ADDRESS = os.environ["CASSNB_SECRET_ADDRESS"]
USER = os.environ["CASSNB_SECRET_USER"]
KEYSPACE = os.environ["CASSNB_SECRET_KEYSPACE"]
SECRETS = [os.environ["CASSNB_REL_PASSWORD"], os.environ["CASSNB_REL_WRONG_PASSWORD"]]


class Keep(logging.Handler):
    """Keeps every record, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def main() -> None:
    kept = Keep()
    root = logging.getLogger()
    root.addHandler(kept)
    for name in ("", "cassandra", "cassnb"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    shell = InteractiveShell.instance()
    cells = [
        "%load_ext cassnb",
        "%config CQLMagic.progress = False",
        f"%cql_connect {ADDRESS} --keyspace {KEYSPACE} --user {USER} "
        "--password-env CASSNB_REL_PASSWORD",
        "%cql_connect --list",
        "%%cql\nSELECT * FROM allowed",
        "%%cql\nSELECT * FROM secret",
        "%config CQLMagic.short_errors = False",
        "%%cql\nSELECT * FROM secret",
        f"%cql_connect {ADDRESS} --user {USER} --password-env CASSNB_REL_WRONG_PASSWORD "
        "--alias wrong",
        "print(repr(cassnb.get_default_session()))",
    ]
    shell.run_cell("import cassnb", store_history=False)
    outputs: list[str] = []
    failed = 0
    for cell in cells:
        with capture_output() as captured:
            result = shell.run_cell(cell, store_history=False)
        failed += not result.success
        outputs.append(captured.stdout + captured.stderr)
        if result.error_in_exec is not None:
            outputs.append(repr(result.error_in_exec) + str(result.error_in_exec))
    outputs.append(repr(shell.user_ns.get("_")))
    shown = "\n".join(outputs + kept.lines)
    leaked = [secret for secret in SECRETS if secret in shown]
    if leaked:
        raise SystemExit(f"a password was shown: {len(leaked)} of them")
    if "visible" not in shown:
        raise SystemExit(f"the allowed table was not shown:\n{shown[-3000:]}")
    print(json.dumps({"cells": len(cells), "failed_cells": failed, "log_records": len(kept.lines)}))


if __name__ == "__main__":
    main()
