#!/usr/bin/env bash
# The repeatable fault probe: a release build, then steady load plus chaos
# (target kills, reloads, invalid reloads, purges) for MINUTES (default 10).
#   scripts/soak.sh [MINUTES] [extra args for benches/soak/soak.py]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
shift || true
cargo build --release --quiet
exec python3 benches/soak/soak.py --binary target/release/gatehouse --minutes "$minutes" "$@"
