#!/usr/bin/env bash
# The writer never forks its own log (issue 14, point 4), as an operator meets it: six policy
# log entries (a revision and five key bindings); the checkpoint deleted, then swapped for an
# older one: `parity keys create` and `parity policy apply` refuse, naming the file and the
# sizes, and nothing on disk changes; `parity log recover` re-derives the checkpoint, logs a
# log_recovery entry that `parity log verify` and `parity log entries` show, and the log
# verifies against the checkpoint kept from before (consistency); then writing works again.
set -u
P="${PARITY_BIN:?}"; S="${PARITY_SRC:?}"; EX="$S/examples/policy.yaml"
fail=0
t() { if eval "$2"; then echo "ok - $1"; else echo "FAIL - $1"; fail=1; fi; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
D="$tmp/data"; L="$D/log/policy"

"$P" policy apply "$EX" --data "$D" --time 2026-02-10 >/dev/null || { echo "FAIL - apply"; exit 1; }
for i in 1 2 3 4; do "$P" keys create --org redteam-black-box --data "$D" >/dev/null; done
cp "$L/checkpoint" "$tmp/cp5"
"$P" keys create --org redteam-black-box --data "$D" >/dev/null
cp "$L/checkpoint" "$tmp/cp6"
VK=$("$P" log vkey --data "$D")
snap() { (cd "$L" && find tile -type f | sort | xargs sha256sum) >"$tmp/$1"; "$P" keys list --data "$D" >>"$tmp/$1"; }
snap before

rm "$L/checkpoint"
"$P" keys create --org redteam-black-box --data "$D" >"$tmp/o1" 2>"$tmp/e1"; rc=$?
t "no checkpoint: keys create refuses" '[ $rc -ne 0 ] && ! grep -q "^pk_" "$tmp/o1"'
t "... naming the file and the sizes" 'grep -q "$L/checkpoint: missing (size 0), but .* holds 6 entries" "$tmp/e1" && grep -q "parity log recover" "$tmp/e1"'
t "... and writes no new checkpoint" '[ ! -e "$L/checkpoint" ]'

cp "$tmp/cp5" "$L/checkpoint"
"$P" keys create --org redteam-black-box --data "$D" >"$tmp/o2" 2>"$tmp/e2"; rc=$?
t "older checkpoint: keys create refuses" '[ $rc -ne 0 ] && grep -q "$L/checkpoint: size 5, but .* holds 6 entries" "$tmp/e2"'
"$P" policy apply "$EX" --data "$D" >/dev/null 2>"$tmp/e3"; rc=$?
t "older checkpoint: policy apply refuses" '[ $rc -ne 0 ] && grep -q "size 5, but" "$tmp/e3"'
snap after
t "nothing was overwritten or added" 'cmp -s "$tmp/before" "$tmp/after"'
"$P" keys list --data "$D" >/dev/null 2>"$tmp/e4"; rc=$?
t "keys list still lists, saying it could not reconcile" '[ $rc -eq 0 ] && grep -q "not reconciled with the policy log: .*size 5, but" "$tmp/e4"'
t "readers are unaffected: log verify reads what is published" '"$P" log verify --vkey "$VK" "$L" | grep -q "verified: origin .*, size 5"'

"$P" log recover --data "$D" >"$tmp/r" 2>&1; rc=$?
t "log recover: re-derives size 6, logs entry 6" '[ $rc -eq 0 ] && grep -q "the checkpoint was size 5; re-derived size 6 .* log_recovery entry 6" "$tmp/r"'
"$P" log verify --vkey "$VK" "$L" --trusted "$tmp/cp6" >"$tmp/v" 2>&1; rc=$?
t "the recovered log is consistent with the checkpoint kept from before" '[ $rc -eq 0 ] && grep -q "size 7, .*consistent with the trusted checkpoint of size 6" "$tmp/v"'
t "log verify shows the recovery" 'grep -q "^6	{\"type\":\"log_recovery\",.*\"previous_checkpoint\":\"valid\",\"previous_size\":5,\"recovered_size\":6}" "$tmp/v"'
t "log entries shows it too" '"$P" log entries --data "$D" --from 6 | grep -q "log_recovery"'
"$P" keys create --org redteam-black-box --data "$D" >"$tmp/o4"; rc=$?
t "writing works again, after the recovery entry" '[ $rc -eq 0 ] && grep -q "policy log entry 7" "$tmp/o4"'
t "parity gap still reads the log" '"$P" gap --data "$D" >/dev/null'
"$P" log recover --data "$D" --log nosuch >/dev/null 2>&1; rc=$?
t "recover of a log that does not exist fails" '[ $rc -eq 1 ]'
exit $fail
