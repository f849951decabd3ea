#!/usr/bin/env bash
# bench_server.sh — the HTTP server's benchmarks, each against a reference measured in the same
# run (figures in docs/server.md, "Performance").
#
#   bench/bench_server.sh [BUILD_DIR] [a|b|c|all]      (default: build all)
#   env: SECONDS_A (default 4, per wrk run in a), ROUNDS_A (default 10: pairs of baseline /
#        server runs in a, with the median), SECONDS_C (default 60), THREADS (pool, 2),
#        ROUNDS_B (default 5: pairs of one-by-one / concurrent runs in b)
#
# a. GET /v1/models on `parity serve` (key lookup, policy decision, an audit receipt per request
#    in the default --receipts async mode, then once in durable mode, metrics) against
#    bench_http_baseline (the same http.c layer, one fixed JSON body, the same bytes), wrk -t2
#    -c64 keep-alive, alternating baseline/server ROUNDS_A times (short runs, many rounds: the
#    host's speed drifts by tens of percent within minutes), with the median ratio. Both get
#    the same request bytes (the Authorization header too: the baseline ignores it; receiving
#    it is not auth's cost). Besides req/s, each run reports the server process's CPU per
#    request (user+system from /proc/PID/stat), which other load on the machine disturbs much
#    less than throughput.
# b. 8 completions of 64 tokens on a random ~25M-parameter Llama: one by one, then all at once
#    (continuous batching); tokens/s of both and the ratio, ROUNDS_B times alternating, with the
#    median; after a warm-up (one completion, then one concurrent batch) that is not counted.
# c. 64 connections for SECONDS_C on POST /v1/completions (tiny model, 8 tokens): status
#    classes (5xx must be 0), p50/p90/p99 latency, the server's RSS sampled every second.
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$SRC/build}" && pwd)"
WHAT="${2:-all}"
SECONDS_A="${SECONDS_A:-4}"
ROUNDS_A="${ROUNDS_A:-10}"
SECONDS_C="${SECONDS_C:-60}"
ROUNDS_B="${ROUNDS_B:-5}"
THREADS="${THREADS:-2}"
PY=/usr/bin/python3
export PARITY_BIN="$BUILD/parity"
T="$(mktemp -d /tmp/parity-bench-server.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

for tool in wrk "$PARITY_BIN" "$BUILD/bench_http_baseline"; do
    command -v "$tool" >/dev/null || { echo "bench_server: $tool not found (build first; apt-get install wrk)" >&2; exit 1; }
done

echo "# bench_server $(date -u +%FT%TZ) on $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY "$SRC/bench/server_bench.py" world "$T" > "$T/key"
KEY="$(cat "$T/key")"

start_server() { # [RECEIPTS_MODE]
    rm -f "$T/port"
    "$PARITY_BIN" serve --data "$T/data" --port 0 --port-file "$T/port" --threads "$THREADS" \
        --connection-limit 512 --receipts "${1:-async}" 2>>"$T/server.log" &
    SERVER=$!
    PIDS+=("$SERVER")
    for _ in $(seq 600); do [ -s "$T/port" ] && break; sleep 0.05; done
    PORT="$(cat "$T/port")"
}

stop_server() {
    kill -TERM "$SERVER"
    wait "$SERVER" || { echo "server exit status $?" >&2; tail -20 "$T/server.log" >&2; }
}

rps() { awk '/^Requests\/sec:/ {print $2}'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ="$(getconf CLK_TCK)"
# wrk_cpu PID URL [wrk args...]: runs wrk; prints "REQ_PER_S CPU_US_PER_REQUEST" (the server's
# user+system CPU over the run divided by the requests served: robust to other load).
wrk_cpu() {
    local pid=$1 url=$2 t0 t1 out
    shift 2
    t0=$(ticks "$pid")
    out=$(wrk -t2 -c64 -d"${SECONDS_A}s" "$@" "$url")
    t1=$(ticks "$pid")
    echo "$out" | awk -v a="$t0" -v b="$t1" -v hz="$HZ" '/requests in/ {n=$1} /^Requests\/sec:/ {r=$2}
        END {printf "%s %.1f\n", r, (b - a) * 1e6 / hz / n}'
}

start_server
echo "parity serve: pid $SERVER, port $PORT, $THREADS pool threads"

if [ "$WHAT" = all ] || [ "$WHAT" = a ]; then
    curl -sf "http://127.0.0.1:$PORT/v1/models" -H "Authorization: Bearer $KEY" -o "$T/models.json"
    "$BUILD/bench_http_baseline" --port-file "$T/bport" --threads "$THREADS" --body-file "$T/models.json" 2>/dev/null &
    BASE=$!
    PIDS+=("$BASE")
    for _ in $(seq 200); do [ -s "$T/bport" ] && break; sleep 0.05; done
    BPORT="$(cat "$T/bport")"
    audit0="$(curl -s "http://127.0.0.1:$PORT/healthz" | $PY -c 'import json,sys; print(json.load(sys.stdin)["audit_receipts"])')"
    echo
    echo "## a. GET /v1/models: parity serve vs the bare HTTP layer (wrk -t2 -c64 -d${SECONDS_A}s, keep-alive)"
    : > "$T/ratios"
    for round in $(seq "$ROUNDS_A"); do
        read -r b bc < <(wrk_cpu "$BASE" "http://127.0.0.1:$BPORT/v1/models" -H "Authorization: Bearer $KEY")
        read -r s sc < <(wrk_cpu "$SERVER" "http://127.0.0.1:$PORT/v1/models" -H "Authorization: Bearer $KEY")
        r=$(awk -v a="$s" -v b="$b" 'BEGIN{printf "%.2f", a/b}')
        rc=$(awk -v a="$sc" -v b="$bc" 'BEGIN{printf "%.2f", b/a}')
        echo "$r $rc" >> "$T/ratios"
        echo "round $round: baseline $b req/s ($bc us CPU/request), parity serve $s req/s ($sc us CPU/request)," \
            "ratio $r (CPU per request $rc)"
    done
    median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
    echo "median of $ROUNDS_A rounds: ratio $(cut -d' ' -f1 "$T/ratios" | median)," \
        "CPU per request $(cut -d' ' -f2 "$T/ratios" | median)"
    audit1="$(curl -s "http://127.0.0.1:$PORT/healthz" | $PY -c 'import json,sys; print(json.load(sys.stdin)["audit_receipts"])')"
    echo "audit receipts appended during the runs: $((audit1 - audit0))"
    # For comparison: --receipts durable (each response waits for its receipt's fdatasync).
    stop_server
    start_server durable
    read -r b bc < <(wrk_cpu "$BASE" "http://127.0.0.1:$BPORT/v1/models" -H "Authorization: Bearer $KEY")
    read -r s sc < <(wrk_cpu "$SERVER" "http://127.0.0.1:$PORT/v1/models" -H "Authorization: Bearer $KEY")
    echo "--receipts durable: baseline $b req/s ($bc us CPU/request), parity serve $s req/s ($sc us CPU/request)," \
        "ratio $(awk -v a="$s" -v b="$b" 'BEGIN{printf "%.2f", a/b}') (CPU per request $(awk -v a="$sc" -v b="$bc" 'BEGIN{printf "%.2f", b/a}'))"
    stop_server
    start_server
    kill "$BASE"
    wait "$BASE" 2>/dev/null || true
fi

if [ "$WHAT" = all ] || [ "$WHAT" = b ]; then
    echo
    echo "## b. 8 completions x 64 tokens on a random 25M-parameter Llama (F32): one by one vs concurrent"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    $PY "$SRC/bench/server_bench.py" batch "$PORT" "$KEY" 8 "$ROUNDS_B"
fi

if [ "$WHAT" = all ] || [ "$WHAT" = c ]; then
    echo
    echo "## c. POST /v1/completions, 64 connections for ${SECONDS_C}s (tiny model, 8 tokens, wrk -t2)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    (
        while kill -0 "$SERVER" 2>/dev/null; do
            awk '/^VmRSS:/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || true
            sleep 1
        done
    ) > "$T/rss" &
    SAMPLER=$!
    PIDS+=("$SAMPLER")
    PARITY_KEY="$KEY" PARITY_MODEL=tiny PARITY_MAX_TOKENS=8 \
        wrk -t2 -c64 -d"${SECONDS_C}s" --timeout 30s -s "$SRC/bench/wrk_completions.lua" \
        "http://127.0.0.1:$PORT/v1/completions" | grep -E "Requests/sec|status:|latency:|Socket errors|requests in"
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    # warm-up: the first 10 samples; then every sample within +-10% of the post-warm-up mean
    $PY - "$T/rss" <<'EOF'
import sys
rss = [int(x) for x in open(sys.argv[1]).read().split()]
warm = rss[10:] or rss
mean = sum(warm) / len(warm)
lo, hi = min(warm), max(warm)
print("server RSS: %d samples; after 10 s warm-up: min %.1f MB, mean %.1f MB, max %.1f MB; spread %+.1f%% / %+.1f%% of the mean (%s)"
      % (len(rss), lo / 1024, mean / 1024, hi / 1024, 100 * (lo - mean) / mean, 100 * (hi - mean) / mean,
         "within +-10%" if lo >= 0.9 * mean and hi <= 1.1 * mean else "OUTSIDE +-10%"))
print("RSS first/last sample: %.1f MB / %.1f MB" % (rss[0] / 1024, rss[-1] / 1024))
late = rss[20:] or rss
lm = sum(late) / len(late)
print("after 20 s: min %.1f MB, max %.1f MB; spread %+.1f%% / %+.1f%% of the mean" %
      (min(late) / 1024, max(late) / 1024, 100 * (min(late) - lm) / lm, 100 * (max(late) - lm) / lm))
print("RSS per 5 s (MB): " + " ".join("%.1f" % (x / 1024) for x in rss[::5]))
EOF
fi

stop_server
