#!/usr/bin/env bash
# Integers are kept exactly (issue 14, point 4): a limit of 2^63-1 or beyond 2^53 passes
# `policy check`, is stored with its exact digits (RFC 8785 would write the nearest double,
# 9223372036854776000, which parity's own parser rejects: every later apply, gap and serve
# failed, forever), and later applies and `parity gap` go on working; 2^63 and beyond are
# refused at `policy check` with line and column, and never appended.
set -u
P="${PARITY_BIN:?}"; EX="${PARITY_SRC:?}/examples/policy.yaml"
tmp=$(mktemp -d); D="$tmp/data"; fail=0
trap 'rm -rf "$tmp"' EXIT
t() { if eval "$2"; then echo "ok - $1"; else echo "FAIL - $1"; fail=1; fi; }
line=$(grep -n "requests_per_minute: 600" "$EX" | head -1 | cut -d: -f1)
sed "s/requests_per_minute: 600/requests_per_minute: 9223372036854775807/" "$EX" >"$tmp/max.yaml"
sed "s/tokens_per_day: 50000000/tokens_per_day: 9007199254740993/" "$EX" >"$tmp/big.yaml"
sed "s/requests_per_minute: 600/requests_per_minute: 9223372036854775808/" "$EX" >"$tmp/over.yaml"

"$P" policy check "$tmp/max.yaml" >/dev/null; rc=$?
t "2^63-1 passes policy check" '[ $rc -eq 0 ]'
"$P" policy apply "$EX" --data "$D" --time 2026-02-10 >/dev/null
"$P" policy apply "$tmp/max.yaml" --data "$D" --time 2026-03-10 >"$tmp/a1" 2>&1; rc=$?
t "2^63-1 is applied" '[ $rc -eq 0 ] && grep -q "^revision  2$" "$tmp/a1"'
t "the stored revision holds its exact digits" 'grep -q "\"requests_per_minute\":9223372036854775807[,}]" "$D"/log/policy/revisions/*.json'
t "nothing holds the rounded double" '! grep -q "9223372036854776000" "$D"/log/policy/revisions/*.json'
"$P" policy apply "$tmp/big.yaml" --data "$D" --time 2026-04-10 >"$tmp/a2" 2>&1; rc=$?
t "a later apply works (it reads the stored revision back)" '[ $rc -eq 0 ] && grep -q "^revision  3$" "$tmp/a2"'
t "2^53+1 is kept exactly, not 9007199254740992" 'grep -q "\"tokens_per_day\":9007199254740993[,}]" "$D"/log/policy/revisions/*.json'
t "the diff names the exact old value" 'grep -q "9223372036854775807" "$tmp/a2"'
"$P" gap --data "$D" >"$tmp/g" 2>&1; rc=$?
t "parity gap reads the log" '[ $rc -eq 0 ]'
"$P" policy check "$tmp/over.yaml" >"$tmp/c" 2>&1; rc=$?
t "2^63 is refused at policy check with line and column" '[ $rc -ne 0 ] && grep -q "over.yaml:$line:[0-9]*: .*9223372036854775808.* is larger than 9223372036854775807" "$tmp/c"'
n=$(ls "$D"/log/policy/revisions | wc -l)
"$P" policy apply "$tmp/over.yaml" --data "$D" >/dev/null 2>&1; rc=$?
t "... and never appended" '[ $rc -ne 0 ] && [ $(ls "$D"/log/policy/revisions | wc -l) -eq $n ]'
exit $fail
