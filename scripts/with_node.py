"""Run a command with the plain local node up; stop the node afterwards only if this started it.

python scripts/with_node.py COMMAND [ARGS...]
"""

from __future__ import annotations

import subprocess
import sys

from cassnb import local


def main() -> int:
    command = sys.argv[1:]
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        _, started = local.start(local.Options())
    except local.LocalError as exc:
        print(f"cassnb.local: error: {exc}", file=sys.stderr)
        return 1
    try:
        return subprocess.call(command)
    finally:
        if started:
            local.stop(quiet=True)


if __name__ == "__main__":
    sys.exit(main())
