#!/usr/bin/env bash
# parity policy apply and parity gap as a lab and an outside verifier run them: three revisions
# into a fresh DATA dir, a no-op, the lock held by another process, the report from --data and
# from the same log served over HTTP (python3 -m http.server on 127.0.0.1), the verdicts on the
# example policy, and a tampered revision file detected by both.
set -u
P="${PARITY_BIN:?}"; S="${PARITY_SRC:?}"; EX="$S/examples/policy.yaml"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
fail=0
t() { if eval "$2"; then echo "ok - $1"; else echo "FAIL - $1"; fail=1; fi; }
tmp=$(mktemp -d); srv=""; holder=""
cleanup() {
    [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
    [ -n "$holder" ] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
D="$tmp/data"

t "gap --help exits 0" '"$P" gap --help | grep -q "parity gap (--data DIR"'
t "policy --help lists apply" '"$P" policy --help | grep -q "parity policy apply FILE"'
"$P" gap --log "$tmp" 2>/dev/null; rc=$?
t "gap --log without --vkey is a usage error" '[ $rc -eq 2 ]'

# revision 1: the example; 2: the red team gets AL2; 3: the public analog tier loses logprobs
sed 's/tier: AL1$/tier: AL2/' "$EX" >"$tmp/r2.yaml"
sed 's/capabilities: \[sample, logprobs, model_info\]/capabilities: [sample, model_info]/' "$tmp/r2.yaml" >"$tmp/r3.yaml"
"$P" policy apply "$EX" --data "$D" --time 2026-02-10 >"$tmp/a1"; rc=$?
t "apply 1: exit 0, revision 1 at log index 0" '[ $rc -eq 0 ] && grep -q "^revision  1$" "$tmp/a1" && grep -q "^log index 0 " "$tmp/a1"'
t "apply 1: the digest is the canonical digest" '[ "$(grep ^digest "$tmp/a1" | awk "{print \$2}")" = "$("$P" policy check "$EX" | tail -1)" ]'
"$P" policy apply "$tmp/r2.yaml" --data "$D" --time 2026-04-10 >"$tmp/a2"; rc=$?
t "apply 2 prints the diff" '[ $rc -eq 0 ] && grep -q "grant redteam-black-box on parity-demo widened: +logprobs, +prefill, +unmitigated; tier AL1 -> AL2" "$tmp/a2"'
"$P" policy apply "$tmp/r3.yaml" --data "$D" --time 2026-05-01 --json >"$tmp/a3"; rc=$?
t "apply 3 --json: seq 3, prev is revision 2" '[ $rc -eq 0 ] && $PY -c "
import json,sys; d=json.load(open(sys.argv[1])); a2=open(sys.argv[2]).read()
assert d[\"changed\"] and d[\"seq\"]==3 and d[\"log_index\"]==2 and d[\"prev\"] in a2, d
assert any(\"tier analog-public narrowed: -logprobs\" in s for s in d[\"summary\"]), d[\"summary\"]" "$tmp/a3" "$tmp/a2"'
"$P" policy apply "$tmp/r3.yaml" --data "$D" >"$tmp/a4"; rc=$?
t "the same policy again: exit 0, no change" '[ $rc -eq 0 ] && grep -q "^no change: sha256:[0-9a-f]* is revision 3" "$tmp/a4"'
t "each revision file hashes to its name" 'for f in "$D"/log/policy/revisions/*.json; do [ "$(sha256sum "$f" | cut -d" " -f1).json" = "$(basename "$f")" ] || exit 1; done; [ $(ls "$D"/log/policy/revisions | wc -l) -eq 3 ]'
printf 'version: 1\nlab: {id: x, name: X}\nmodels: []\norganisations: []\ngrants:\n  - {organisation: nobody, model: m, tier: AL1}\n' >"$tmp/bad.yaml"
"$P" policy apply "$tmp/bad.yaml" --data "$D" 2>"$tmp/err" >/dev/null; rc=$?
t "an invalid policy: exit 1 with FILE:LINE:COL, nothing appended" '[ $rc -eq 1 ] && grep -q "bad.yaml:6:20: grants\[0\].organisation: unknown organisation .nobody." "$tmp/err" && [ "$(sed -n 2p "$D/log/policy/checkpoint")" = 3 ]'

# another process (a server) holds the log
flock "$D/log/policy/.lock" sleep 30 & holder=$!
for i in $(seq 50); do flock -n "$D/log/policy/.lock" true || break; sleep 0.1; done
"$P" policy apply "$EX" --data "$D" 2>"$tmp/err" >/dev/null; rc=$?
t "lock held: exit 1, pointing at POST /v1/admin/policy" '[ $rc -eq 1 ] && grep -q "POST\|/v1/admin/policy" "$tmp/err" && grep -q "/v1/admin/policy" "$tmp/err"'
"$P" gap --data "$D" --at 2026-04-20 >/dev/null; rc=$?
t "gap --data works while the log is held" '[ $rc -eq 0 ]'
kill "$holder"; wait "$holder" 2>/dev/null; holder=""

# the report from the lab's own directory
"$P" gap --data "$D" --at 2026-04-20 --json >"$tmp/g_data.json"; rc=$?
t "gap --data --json: exit 0" '[ $rc -eq 0 ]'
# The verdicts on the example policy at 2026-04-20 (revision 2 in force), reasoned from the
# policy: aisi-eval has AL3 from 2026-02-16 (42 days after insiders), 300/600 requests per
# minute (rate limits partial) and a window of 52 business days; uni-interp has AL2 (the
# unmitigated variant, no white-box tools); the red team got AL2 in revision 2 (safeguards gap
# -> parity then; at revision 1 its window had not opened); the public has nothing on the frontier model.
t "gap --json: the expected verdicts" '$PY - "$tmp/g_data.json" <<EOF
import json, sys
d = json.load(open(sys.argv[1]))
assert d["revision_in_force"] == 2 and [r["seq"] for r in d["revisions"]] == [1, 2], d["revisions"]
def pair(model, org):
    m = [x for x in d["models"] if x["id"] == model][0]
    return [o for o in m["organisations"] if o["organisation"] == org][0]
def v(model, org, dim):
    return pair(model, org)["dimensions"][dim]["verdict"]
a = pair("parity-demo", "aisi-eval")
# half the insiders requests/minute: rate limits partial, and insiders twice as fast in series (uplift gap)
assert a["level"] == "AL3" and a["overall"] == "gap", a
assert v("parity-demo", "aisi-eval", "uplift") == "gap" and a["dimensions"]["uplift"]["ratio"] == 2.0, a
assert a["dimensions"]["deployment_lag"]["days"] == 42 and v("parity-demo", "aisi-eval", "deployment_lag") == "parity"
assert v("parity-demo", "aisi-eval", "rate_limits") == "partial" and v("parity-demo", "aisi-eval", "window") == "parity"
assert v("parity-demo", "aisi-eval", "elicitation") == "parity"
assert v("parity-demo", "uni-interp", "elicitation") == "gap" and v("parity-demo", "uni-interp", "safeguards") == "parity"
assert v("parity-demo", "indie-redteam", "safeguards") == "parity"
h = pair("parity-demo", "indie-redteam")["history"]
assert [e["revision"] for e in h] == [1, 2] and "safeguards: gap -> parity" in h[1]["changed"], h
assert v("parity-demo", "public", "non_release") == "gap" and pair("parity-demo", "public")["overall"] == "gap"
assert v("parity-demo-analog", "public", "non_release") == "parity" and v("parity-demo-analog", "public", "information") == "parity"
assert d["verified_log"]["size"] == 3 and d["verified_log"]["origin"] == "parity/policy"
EOF'
"$P" gap --data "$D" --at 2026-06-01 --json >"$tmp/g_jun.json"
t "after revision 3 the public analog tier lost logprobs" '$PY -c "
import json,sys; d=json.load(open(sys.argv[1])); assert d[\"revision_in_force\"]==3
m=[x for x in d[\"models\"] if x[\"id\"]==\"parity-demo-analog\"][0]; o=[x for x in m[\"organisations\"] if x[\"organisation\"]==\"public\"][0]
assert \"logprobs\" not in o[\"capabilities\"], o[\"capabilities\"]" "$tmp/g_jun.json"'
"$P" gap --data "$D" --at 2026-04-20 >"$tmp/g_term"; rc=$?
t "gap: terminal summary" '[ $rc -eq 0 ] && grep -q "^Model access parity report: Demo Lab, at 2026-04-20T00:00:00Z" "$tmp/g_term" && grep -q "uni-interp elicitation (gap): missing activations, interventions, finetune" "$tmp/g_term"'
t "gap --markdown" '"$P" gap --data "$D" --at 2026-04-20 --markdown | grep -q "^# Model access parity report: Demo Lab"'
"$P" gap --data "$D" --at 2026-01-01 2>"$tmp/err" >/dev/null; rc=$?
t "gap before the first revision: exit 1, says when it starts" '[ $rc -eq 1 ] && grep -q "2026-02-10T00:00:00Z" "$tmp/err"'

# the same log over HTTP, verified with the published key
VKEY=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["verified_log"]["vkey"])' "$tmp/g_data.json")
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
$PY -m http.server "$PORT" --bind 127.0.0.1 --directory "$D/log/policy" >"$tmp/http.log" 2>&1 & srv=$!
for i in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/checkpoint" >/dev/null && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT"
"$P" gap --log "$URL" --vkey "$VKEY" --at 2026-04-20 --json >"$tmp/g_http.json"; rc=$?
t "gap --log URL: exit 0" '[ $rc -eq 0 ]'
t "gap --log URL and gap --data give the same report" '$PY -c "
import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2]))
assert a[\"verified_log\"].pop(\"source\") != b[\"verified_log\"].pop(\"source\")
assert a == b" "$tmp/g_data.json" "$tmp/g_http.json"'
printf '%s\n' "$VKEY" >"$tmp/vkey"
cp "$D/log/policy/checkpoint" "$tmp/trusted"
t "gap --vkey FILE --trusted CHECKPOINT" '"$P" gap --log "$URL" --vkey "$tmp/vkey" --trusted "$tmp/trusted" --at 2026-04-20 | grep -q "extends the trusted checkpoint of size 3"'
OTHER=$(sed "s/+[^+]*+/+00000000+/" <<<"$VKEY")
"$P" gap --log "$URL" --vkey "$OTHER" 2>"$tmp/err" >/dev/null; rc=$?
t "another key: exit 1" '[ $rc -eq 1 ]'

# tamper with revision 1's file: a grant quietly narrowed in the past
R1=$(grep ^digest "$tmp/a1" | awk '{print $2}' | sed 's/^sha256://')
sed -i 's/"until":"2026-04-30T00:00:00Z"/"until":"2026-03-30T00:00:00Z"/' "$D/log/policy/revisions/$R1.json"
t "the tamper edit took" '! sha256sum "$D/log/policy/revisions/$R1.json" | grep -q "^$R1 "'
"$P" gap --data "$D" 2>"$tmp/err" >/dev/null; rc=$?
t "tampered revision: gap --data fails, naming the file and the SHA-256" '[ $rc -eq 1 ] && grep -q "revisions/$R1.json: its SHA-256 is" "$tmp/err"'
"$P" gap --log "$URL" --vkey "$VKEY" 2>"$tmp/err" >/dev/null; rc=$?
t "tampered revision: gap --log URL fails too" '[ $rc -eq 1 ] && grep -q "127.0.0.1:$PORT/revisions/$R1.json: its SHA-256 is" "$tmp/err"'
exit $fail
