#!/usr/bin/env bash
# The reliability suite (tests/reliability) at full sizes: 500,000 rows streamed through a
# node kill, 100,000 writes, 10,000 dropped streams, 1,000 generated examples per input
# path. Runs the single-node scenarios, then the three-node ones in their own session
# (never more than three nodes alive at once), and prints every figure at the end.
#
#   scripts/reliability_full.sh            # full sizes
#   CASSNB_RELIABILITY_SCALE=ci scripts/reliability_full.sh   # the CI sizes, same report
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=${PYTHON:-python3}; fi
export CASSNB_RELIABILITY_SCALE=${CASSNB_RELIABILITY_SCALE:-full}
CASSNB_RELIABILITY_REPORT=$(mktemp -t cassnb-reliability.XXXXXX)
export CASSNB_RELIABILITY_REPORT
trap 'rm -f "$CASSNB_RELIABILITY_REPORT"' EXIT

started=$(date +%s)
status=0
"$PY" -m pytest tests/reliability -m "not cluster3" -s -q -p no:cacheprovider --tb=native || status=1
"$PY" -m pytest tests/reliability -m cluster3 -s -q -p no:cacheprovider --tb=native || status=1

"$PY" - "$CASSNB_RELIABILITY_REPORT" <<'PYTHON'
import json
import sys

print("\nreliability figures:")
with open(sys.argv[1], encoding="utf-8") as lines:
    for line in lines:
        figures = json.loads(line)
        scenario = figures.pop("scenario")
        scale = figures.pop("scale")
        print(f"\n  {scenario} [{scale}]")
        for name, value in figures.items():
            shown = f"{value:.2f}" if isinstance(value, float) else value
            print(f"    {name}: {shown}")
PYTHON
echo "reliability: $([ $status -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - started )) s"
exit $status
