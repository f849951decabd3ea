#!/usr/bin/env bash
# One "in force" everywhere (issue 14, point 3): revision 2 applied with a future --time is not
# in force before its date, for `parity policy explain --data`, `parity policy limits --data`
# and `parity gap` alike (pt_policy_revision_in_force, one rule: the last revision dated at or before the
# moment asked); at a moment after its date, it is.
set -u
P="${PARITY_BIN:?}"; EX="${PARITY_SRC:?}/examples/policy.yaml"
tmp=$(mktemp -d); D="$tmp/data"; fail=0
trap 'rm -rf "$tmp"' EXIT
t() { if eval "$2"; then echo "ok - $1"; else echo "FAIL - $1"; fail=1; fi; }
sed 's/capabilities: \[sample, logprobs, model_info\]/capabilities: [sample, model_info]/' "$EX" >"$tmp/r2.yaml"
"$P" policy apply "$EX" --data "$D" --time 2026-02-10 >/dev/null
"$P" policy apply "$tmp/r2.yaml" --data "$D" --time 2099-01-01 >/dev/null
q="--org public --model parity-demo-analog --capability logprobs"

"$P" policy explain --data "$D" $q >"$tmp/o1" 2>"$tmp/e1"; rc=$?
t "explain now: revision 1 is in force, logprobs allowed" '[ $rc -eq 0 ] && grep -q "^revision 1 .* is in force at" "$tmp/e1"'
"$P" policy explain --data "$D" $q --at 2099-06-01 >"$tmp/o2" 2>"$tmp/e2"; rc=$?
t "explain after its date: revision 2, logprobs denied" '[ $rc -eq 3 ] && grep -q "^revision 2 .* dated 2099-01-01T00:00:00Z" "$tmp/e2"'
"$P" policy explain --data "$D" $q --at 2026-01-01 >/dev/null 2>"$tmp/e3"; rc=$?
t "explain before the first revision: nothing in force, denied" '[ $rc -eq 3 ] && grep -q "no revision .* is in force at 2026-01-01" "$tmp/e3"'
"$P" policy limits --data "$D" --org public --model parity-demo-analog --json 2>/dev/null >"$tmp/l1"
t "limits now: logprobs among the capabilities" 'grep -q "\"logprobs\"" "$tmp/l1"'
"$P" gap --data "$D" --json >"$tmp/g1" 2>/dev/null
t "parity gap now: revision 1 in force, as explain says" 'grep -q "\"revision_in_force\": 1" "$tmp/g1"'
"$P" gap --data "$D" --json --at 2099-06-01 >"$tmp/g2" 2>/dev/null
t "parity gap after its date: revision 2" 'grep -q "\"revision_in_force\": 2" "$tmp/g2"'
"$P" policy explain "$EX" --data "$D" $q >/dev/null 2>&1; rc=$?
t "FILE and --data together is a usage error" '[ $rc -eq 2 ]'
exit $fail
