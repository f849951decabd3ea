#!/usr/bin/env bash
# Runs every benchmark program (figures for the README's performance table). Usage: bench.sh BUILD_DIR
set -euo pipefail
B=${1:-build}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { echo; echo "== $*"; "$@"; }
run "$B/bench_policy"
run "$B/bench_tlog" /tmp 1
run "$B/bench_witness" /tmp 200
run "$B/bench_formats"
run "$B/bench_engine" --threads 2 --sizes 10,100 --decode 32 --prefill 512
run "$B/bench_train"
run "$B/bench_tokenizer_train"
run "$B/bench_distill" --steps 3
[ -x bench/bench_server.sh ] && run bench/bench_server.sh "$B"
echo; echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
