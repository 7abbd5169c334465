#!/usr/bin/env bash
# The whole suite on a busy machine: `make test` while CPU burners keep every core busy.
#
#   bash tests/stress.sh            # two burners (this machine has 2 cores)
#   BURNERS=4 bash tests/stress.sh
#
# Tests must wait on states and events with generous deadlines, never on wall-clock limits;
# this script is how that promise is checked. Its time is recorded in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BURNERS="${BURNERS:-2}"
pids=()
stop_burners() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_burners EXIT
for _ in $(seq "$BURNERS"); do
    python3 -c "while True: pass" &
    pids+=("$!")
done
echo "stress: ${BURNERS} CPU burners running (pids ${pids[*]}); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
started=$(date +%s)
status=0
make test || status=$?
echo "stress: make test exited ${status} after $(( $(date +%s) - started )) s with ${BURNERS} burners"
exit "$status"
