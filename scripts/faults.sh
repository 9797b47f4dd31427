#!/usr/bin/env bash
# The fault table (issue 24): each fault test appends a row (fault, what the daemon did, recovery time,
# committed events lost, wrong opens) to target/fault-table.jsonl; this prints them as the README's table
# and fails when any row lost a committed event or opened the gate wrongly.
#   scripts/faults.sh                      run the fault tests (soak 1 minute), then print the table
#   scripts/faults.sh --soak-minutes 30    the same with a 30-minute soak
#   scripts/faults.sh --print              only print the rows the last test run wrote (scripts/test.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
table=${GATEHOUSE_FAULT_TABLE:-$root/target/fault-table.jsonl}
run=1
while [ $# -gt 0 ]; do
  case "$1" in
    --print) run=0 ;;
    --soak-minutes) export GATEHOUSE_SOAK_MINUTES="$2"; shift ;;
    *) echo "faults.sh: unknown argument $1 (see the header of $0)" >&2; exit 64 ;;
  esac
  shift
done
if [ "$run" = 1 ]; then
  mkdir -p "$(dirname "$table")"
  rm -f "$table"
  GATEHOUSE_FAULT_TABLE="$table" cargo test --release --locked --test tests -- --test-threads=1 \
    rtsp::reads_a_1080p cloud_link::broker_outage cloud_link::kill_9 mqtt5::a_refused durability:: \
    storage::a_scribbled storage::a_full_disk degraded:: clock:: daemon::sigterm soak::
fi
[ -f "$table" ] || { echo "faults.sh: no rows in $table (run the tests first)" >&2; exit 1; }
python3 - "$table" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    rows[r["fault"]] = r  # the latest row of each fault
bad = 0
print("| fault | what the daemon did | recovery | committed events lost | wrong opens |")
print("|---|---|---|---|---|")
for r in rows.values():
    rec = "-" if r["recovery_s"] is None else f"{r['recovery_s']} s"
    print(f'| {r["fault"]} | {r["did"]} | {rec} | {r["lost"]} | {r["wrong_opens"]} |')
    bad += (r["lost"] != 0) + (r["wrong_opens"] != 0)
EXPECTED = 12  # the fault tests above; fewer rows means some were skipped or did not get that far
print(f"\n{len(rows)} faults; rows with a lost committed event or a wrong open: {bad}")
if len(rows) < EXPECTED:
    print(f"faults.sh: only {len(rows)} of {EXPECTED} fault rows: a fault test was skipped or failed early", file=sys.stderr)
sys.exit(1 if bad or len(rows) < EXPECTED else 0)
PY
