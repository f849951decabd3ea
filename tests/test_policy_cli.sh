#!/usr/bin/env bash
# parity policy as a user runs it: --help, check, explain exit codes, limits --json, diff,
# canonical, and a clear error with a non-zero exit for bad input.
set -u
P="${PARITY_BIN:?}"; S="${PARITY_SRC:?}"; EX="$S/examples/policy.yaml"
fail=0
t() { if eval "$2"; then echo "ok - $1"; else echo "FAIL - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

t "policy --help exits 0" '"$P" policy --help | grep -q "parity policy explain"'
t "check accepts the example" '"$P" policy check "$EX" | grep -q "^sha256:[0-9a-f]\{64\}$"'
"$P" policy explain "$EX" --org aisi-eval --model parity-demo --capability activations --at 2026-03-01 >"$tmp/out"; rc=$?
t "explain allow exits 0" '[ $rc -eq 0 ] && grep -q "^allow (allow): allowed by grant aisi-white-box" "$tmp/out"'
"$P" policy explain "$EX" --org indie-redteam --model parity-demo --capability logprobs --at 2026-04-01 >"$tmp/out"; rc=$?
t "explain deny exits 3 with the reason" '[ $rc -eq 3 ] && grep -q "capability_not_in_tier" "$tmp/out"'
"$P" policy explain "$EX" --org uni-interp --model parity-demo --capability logprobs --top-k 6 --at 2026-04-01 --json >"$tmp/out"
t "explain --json names the limit" 'python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d[\"reason\"]==\"limit_exceeded\" and d[\"grant\"]==\"uni-grey-box\"" "$tmp/out"'
"$P" policy limits "$EX" --org uni-interp --model parity-demo --at 2026-04-01 --json >"$tmp/out"
t "limits --json" 'python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d[\"limits\"][\"requests_per_minute\"]==60 and d[\"limits\"][\"logprobs_top_k\"]==5 and d[\"limits\"][\"concurrent_finetune_jobs\"] is None" "$tmp/out"'
"$P" policy canonical "$EX" >"$tmp/c.json" 2>"$tmp/digest"
t "canonical JSON hashes to the digest" '[ "sha256:$(printf %s "$(cat "$tmp/c.json")" | sha256sum | cut -d" " -f1)" = "$(cat "$tmp/digest")" ]'
t "canonical JSON is a valid policy" '"$P" policy check "$tmp/c.json" >/dev/null'
sed 's/tier: AL1$/tier: AL2/' "$EX" >"$tmp/wider.yaml"
t "diff reports a widened grant" '"$P" policy diff "$EX" "$tmp/wider.yaml" | grep -q "organisation indie-redteam: grant redteam-black-box on parity-demo widened: +logprobs, +prefill, +unmitigated; tier AL1 -> AL2"'
printf 'version: 1\nlab: {id: x, name: X}\nmodels: []\norganisations:\n  - {id: a, name: A, kind: insider}\n  - {id: a, name: B, kind: public}\n' >"$tmp/dup.yaml"
"$P" policy check "$tmp/dup.yaml" 2>"$tmp/err" >/dev/null; rc=$?
t "duplicate id: exit 1 and file:line:col: path" '[ $rc -eq 1 ] && grep -q "dup.yaml:6:10: organisations\[1\].id: duplicate organisation id .a." "$tmp/err"'
printf '{"version": 1, "lab": {"id": "x"' >"$tmp/trunc.json"
"$P" policy check "$tmp/trunc.json" 2>"$tmp/err" >/dev/null; rc=$?
t "truncated JSON: exit 1 with line:col" '[ $rc -eq 1 ] && grep -q "trunc.json:[0-9]*:[0-9]*: did not find expected" "$tmp/err"'
"$P" policy explain "$EX" --org x 2>/dev/null; rc=$?
t "usage error exits 2" '[ $rc -eq 2 ]'
exit $fail
