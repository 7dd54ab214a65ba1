#!/usr/bin/env bash
# Proves the benchmark tooling still works, with no timing assertion:
# the criterion benches compile, the release binary passes the load
# bench's enforcement checks (benches/load/check.py), and callgrind counts
# instructions on a short run, printed against the BENCHMARKS.md budget.
# CI runs it from scripts/test.sh; a failure here is a broken script or a
# policies target that stopped enforcing something, never a slow machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --no-run --quiet
cargo build --release --quiet
targets=policies
command -v haproxy >/dev/null && targets=policies,haproxy-policies
python3 benches/load/check.py --targets "$targets"
CG_WARMUP=1 CG_SECONDS=2 scripts/perf-budget.sh target/release/gatehouse routing
