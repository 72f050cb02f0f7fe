"""Run a command with a local cluster up; stop the cluster afterwards only if this started it.

python scripts/with_node.py [--name NAME --nodes N --address A] [--] COMMAND [ARGS...]

Without options the cluster is the plain node on 127.0.0.1; the tests' three-node cluster
is ``--name trio --nodes 3 --address 127.0.0.11``, so that several test sessions share one
start.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from cassnb import local


def main() -> int:
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("--name", default="default")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.print_usage(sys.stderr)
        return 2
    options = local.Options(nodes=args.nodes, address=args.address)
    try:
        _, started = local.start(options, args.name)
    except local.LocalError as exc:
        print(f"cassnb.local: error: {exc}", file=sys.stderr)
        return 1
    try:
        return subprocess.call(command)
    finally:
        if started:
            local.stop(args.name, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
