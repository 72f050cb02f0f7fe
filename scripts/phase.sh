#!/usr/bin/env bash
# Run a command as one named phase of a longer run and print how long it took, also when it
# fails; exit with the command's status. Usage: scripts/phase.sh NAME COMMAND [ARGS...]
name=$1
shift
started=$(date +%s)
status=0
"$@" || status=$?
took=$(( $(date +%s) - started ))
if [ "$status" -eq 0 ]; then
    echo "phase: $name: $took s"
else
    echo "phase: $name: $took s, failed (exit $status)"
fi
exit "$status"
