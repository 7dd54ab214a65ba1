#!/usr/bin/env bash
# Load benchmark: gatehouse vs nginx as a reverse proxy, side by side.
#   benches/load/run.sh [run.py options]   e.g. --rounds 5 --seconds 8 --fixed-rate
# Installs wrk and nginx (apt) if missing, builds the release binary, then
# runs benches/load/run.py. See BENCHMARKS.md for the method and results.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (load on CPU 0, system under test on CPU 1)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
cargo build --release --bin gatehouse
exec python3 benches/load/run.py "$@"
