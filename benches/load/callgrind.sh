#!/usr/bin/env bash
# Instructions per request (callgrind), the deterministic counterpart of the
# CPU-time figures of run.py: same binary and inputs give the same count
# within ~0.5%, whatever else the machine does.
#   benches/load/callgrind.sh [BINARY] [routing|policies|policies-traced0|policies-traced1|cache|nginx|haproxy|haproxy-policies|pingap|pingap-policies]
# CG_WARMUP / CG_SECONDS: the warm-up and measured wrk runs (4 s, 10 s).
# Prints Ir/request and keeps the profile in $OUT (default /tmp/gh-callgrind)
# for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/gatehouse}
variant=${2:-routing}
out=${OUT:-/tmp/gh-callgrind}
command -v valgrind >/dev/null || { echo "needs valgrind (apt install valgrind)" >&2; exit 1; }
mkdir -p "$out"
python3 - "$out" "$variant" <<'PY'
import sys
sys.path.insert(0, "benches/load")
import run
work, variant = sys.argv[1], sys.argv[2]
open(f"{work}/upstream.conf", "w").write(run.upstream_conf(work))
open(f"{work}/proxy.conf", "w").write(run.proxy_conf(work).replace("master_process on;", "master_process off;"))
if variant.startswith("haproxy"):
    import peers
    peers.haproxy_conf(work, variant == "haproxy-policies")
elif variant.startswith("pingap"):
    import peers
    peers.pingap_conf(work, variant == "pingap-policies")
    open(f"{work}/pingap-bin", "w").write(peers.PINGAP)
elif variant != "nginx":
    run.gatehouse_conf(work, variant)
open(f"{work}/token", "w").write(run.token())
PY
nginx -p "$out" -c "$out/upstream.conf" &
up=$!
sink=""
if [ "$variant" = policies-traced1 ]; then
    python3 benches/load/otlp_sink.py 18091 &
    sink=$!
fi
trap 'kill $up $sink 2>/dev/null; kill $vpid 2>/dev/null || true' EXIT
sleep 1
if [ "$variant" = nginx ]; then
    cmd=(nginx -p "$out" -c "$out/proxy.conf")
elif [ "$variant" = haproxy ]; then
    cmd=(haproxy -db -f "$out/haproxy-plain.cfg")
elif [ "$variant" = haproxy-policies ]; then
    cmd=(haproxy -db -f "$out/haproxy-policies.cfg")
    stdout="$out/access.log"   # its JSON log
elif [ "$variant" = pingap ] || [ "$variant" = pingap-policies ]; then
    conf="$out/pingap-plain.toml"
    [ "$variant" = pingap-policies ] && conf="$out/pingap-policies.toml"
    cmd=("$(cat "$out/pingap-bin")" -c "$conf")   # where peers.py says it is
else
    cmd=("$bin" -c "$out/gatehouse-$variant.yaml")
fi
rm -f "$out"/callgrind.out.$variant*
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out.$variant" "${cmd[@]}" >"${stdout:-/dev/null}" 2>"$out/valgrind.$variant.log" &
vpid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18080/ && break; sleep 0.5; done
path=/api/orders/7
[ "$variant" = cache ] && path=/api/products/42
args=(-t1 -c8)
case $variant in policies*|haproxy-policies|pingap-policies) args+=(-H "Authorization: Bearer $(cat "$out/token")");; esac
wrk "${args[@]}" -d"${CG_WARMUP:-4}"s "http://127.0.0.1:18080$path" >/dev/null        # warm-up
callgrind_control -i on $vpid >/dev/null
res=$(wrk "${args[@]}" -d"${CG_SECONDS:-10}"s "http://127.0.0.1:18080$path")
callgrind_control -i off $vpid >/dev/null
callgrind_control -d $vpid >/dev/null
sleep 1
kill -INT $vpid 2>/dev/null || true
[ "$variant" = nginx ] && kill -QUIT $vpid 2>/dev/null || true
case $variant in haproxy*) kill -TERM $vpid 2>/dev/null || true;; esac
wait $vpid 2>/dev/null || true
set +o pipefail  # grep -m1 closes the pipe early
reqs=$(echo "$res" | grep -oE "[0-9]+ requests in" | grep -oE "^[0-9]+")
profile=$(ls "$out"/callgrind.out.$variant.* | head -1)
total=$(callgrind_annotate "$profile" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$variant: $reqs requests, $((total / reqs)) instructions/request ($profile)"
