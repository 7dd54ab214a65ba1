#!/usr/bin/env bash
# Instructions per request against the budget in BENCHMARKS.md.
#   scripts/perf-budget.sh [BINARY] [TARGET...]   (default: target/release/gatehouse routing policies)
# Runs benches/load/callgrind.sh for each target and prints measured vs
# budget and the delta. Callgrind counts are stable to ~0.5%, so a delta
# within +1% is reported as "ok", above it as "OVER"; the exit status is 0
# either way (this informs, it does not gate CI on noise). The budget is
# the `perf-budget:` line of BENCHMARKS.md; update it with the numbers a
# change is measured at.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/gatehouse}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(routing policies)
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release)" >&2; exit 1; }
line=$(grep -m1 '^perf-budget:' BENCHMARKS.md || true)
[ -n "$line" ] || { echo "BENCHMARKS.md has no perf-budget: line" >&2; exit 1; }
printf '%-10s %10s %10s %8s\n' target measured budget delta
for t in "${targets[@]}"; do
    budget=$(echo "$line" | grep -oE "\b$t=[0-9]+" | cut -d= -f2 || true)
    out=$(OUT="/tmp/gh-perf-budget-$t" benches/load/callgrind.sh "$bin" "$t" 2>"/tmp/gh-perf-budget-$t.log" | tail -1)
    got=$(echo "$out" | grep -oE '[0-9]+ instructions/request' | grep -oE '^[0-9]+')
    if [ -z "$budget" ]; then
        printf '%-10s %10s %10s %8s\n' "$t" "$got" "-" "no budget"
        continue
    fi
    python3 - "$t" "$got" "$budget" <<'PY'
import sys
t, got, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = (got - budget) / budget * 100
print(f"{t:<10} {got:>10} {budget:>10} {d:>+7.2f}%  {'OVER' if d > 1.0 else 'ok'}")
PY
done
