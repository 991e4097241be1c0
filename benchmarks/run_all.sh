#!/usr/bin/env bash
# Every benchmark in docs/benchmarks.md, one after the other, with the settings used there.
#
#   benchmarks/run_all.sh            # the full set: about 11 minutes on 2 cores
#   benchmarks/run_all.sh --quick    # a few minutes, numbers only good for a sanity check
#
# Output: each tool's table in benchmarks/results/<name>.txt (--quick: results/quick/), JSON
# beside it where the tool writes JSON. Run it on a quiet machine (`uptime` load well below the core count): the
# numbers are only comparable within one run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
OUT=benchmarks/results
((quick)) && OUT=benchmarks/results/quick  # never overwrite the published numbers
mkdir -p "$OUT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The two older benchmarks leave their cluster running for reuse; take down the ones this
# script brought up, and nothing that was already there.
owned=()
for dir in .pgreplica/bench .pgreplica/bench-ryw; do
    [[ -e "$dir/cluster.json" ]] || owned+=("$dir")
done
cleanup() {
    for dir in "${owned[@]}"; do
        "$PY" -m django_pgreplica.testing.cluster down --dir "$dir" 2>/dev/null || true
    done
}
trap cleanup EXIT

# A load test that misses a goal exits 1: record it, run the rest, fail at the end.
missed=()
run() {
    local name="$1" status=0
    shift
    say "$name: $*"
    {
        echo "# $*"
        echo "# $(date -u +%FT%TZ), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$OUT/$name.txt"
    "$@" | tee -a "$OUT/$name.txt" || status=$?
    echo "# exit $status, load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$name.txt"
    ((status == 0)) || missed+=("$name (exit $status)")
}
finish() {
    if ((${#missed[@]})); then
        printf '\033[31mmissed goals or failed:\033[0m %s\n' "${missed[*]}" >&2
        exit 1
    fi
    say "all benchmarks done; results in $OUT/"
}

if ((quick)); then
    run router_overhead "$PY" benchmarks/router_overhead.py --calls 50000 --rounds 3
    run read_your_writes_share "$PY" benchmarks/read_your_writes_share.py --runs 1
    run request_overhead "$PY" benchmarks/request_overhead.py --requests 300 --rounds 2 \
        --json "$OUT/request_overhead.json"
    run fallback_latency "$PY" benchmarks/fallback_latency.py --trials 3 \
        --json "$OUT/fallback_latency.json"
    run loadtest "$PY" benchmarks/loadtest.py --duration-per-phase 8 --clients 16 \
        --pause-seconds 10 --json "$OUT/loadtest.json"
    if command -v pgbouncer >/dev/null; then
        run loadtest-pgbouncer "$PY" benchmarks/loadtest.py --pgbouncer --duration-per-phase 8 \
            --clients 16 --pause-seconds 10 --json "$OUT/loadtest-pgbouncer.json"
    fi
    finish
    exit 0
fi

run router_overhead "$PY" benchmarks/router_overhead.py
run read_your_writes_share "$PY" benchmarks/read_your_writes_share.py
run request_overhead "$PY" benchmarks/request_overhead.py --json "$OUT/request_overhead.json"
run fallback_latency "$PY" benchmarks/fallback_latency.py --trials 10 \
    --json "$OUT/fallback_latency.json"
# Django's default connection handling (a connection per request), as the demo ships.
run loadtest "$PY" benchmarks/loadtest.py --json "$OUT/loadtest.json"
# Persistent connections with Django's health checks, as docs/configuration.md recommends.
run loadtest-persistent "$PY" benchmarks/loadtest.py --conn-max-age 60 \
    --label loadtest-persistent --json "$OUT/loadtest-persistent.json"
if command -v pgbouncer >/dev/null; then
    run loadtest-pgbouncer "$PY" benchmarks/loadtest.py --pgbouncer \
        --json "$OUT/loadtest-pgbouncer.json"
else
    say "pgbouncer not installed (apt-get install -y pgbouncer): skipping its run"
fi
finish
