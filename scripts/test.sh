#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, every test, and
# the fuzz targets still compiling against the library's API, and the
# benchmark smoke (the bench scripts run; no timing is asserted).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo check --quiet --manifest-path fuzz/Cargo.toml
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
./scripts/bench-smoke.sh
