#!/usr/bin/env bash
# Fuzzes every libFuzzer target for SECONDS each, starting from (and adding to) its corpus in
# a scratch copy; crashers are left in the current directory. Usage: fuzz.sh FUZZ_BUILD SECONDS
set -euo pipefail
B=${1:-build-fuzz}
S=${2:-60}
for f in "$B"/fuzz_*; do
    [ -x "$f" ] || continue
    case "$f" in *_replay) continue ;; esac
    name=$(basename "$f"); short=${name#fuzz_}
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$short/." "$work/" 2>/dev/null || true
    echo "== $name ($S s)"
    "$f" -max_total_time="$S" -print_final_stats=1 "$work" 2>&1 | tail -3
    rm -rf "$work"
done
