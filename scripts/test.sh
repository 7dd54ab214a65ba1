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
# One etcd for the whole run on a free loopback port; each cluster test uses
# a key prefix of its own (a test that kills etcd starts its own).
etcd_dir=$(mktemp -d)
etcd_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
etcd_peer=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
etcd --name run --data-dir "$etcd_dir/data" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "run=http://127.0.0.1:$etcd_peer" --log-level error >/dev/null 2>&1 &
etcd_pid=$!
trap 'kill $etcd_pid 2>/dev/null; rm -rf "$etcd_dir"' EXIT
export GATEHOUSE_TEST_ETCD="http://127.0.0.1:$etcd_port"
for _ in $(seq 150); do
  curl -sf "$GATEHOUSE_TEST_ETCD/health" | grep -q '"health":"true"' && break
  sleep 0.1
done
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
./scripts/bench-smoke.sh
