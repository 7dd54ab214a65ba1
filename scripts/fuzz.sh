#!/usr/bin/env bash
# Runs every fuzz target for a while and prints how many inputs each ran.
#   scripts/fuzz.sh [seconds-per-target] [target...]
# Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# Targets run without a sanitizer (`-s none`): gatehouse has no unsafe code
# of its own, so panics and assertion failures are what we look for, and
# the uninstrumented build runs several times faster. Crashes land in
# fuzz/artifacts/<target>/; reproduce one with
#   cargo +nightly fuzz run -s none <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(normalize_path router config jwt cache_policy)
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    out=$(cargo +nightly fuzz run -s none -O "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -print_final_stats=1 2>&1) || {
        echo "$out" | tail -40
        echo "FUZZ TARGET $t FAILED" >&2
        exit 1
    }
    runs=$(echo "$out" | grep -oE "Done [0-9]+ runs in [0-9]+ second" | tail -1 || true)
    echo "$t: $runs(s), no crash"
done
