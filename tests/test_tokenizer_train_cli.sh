#!/usr/bin/env bash
# parity tokenizer train as a user runs it: --help, a trained tokenizer that `info`/`encode`/
# `decode` use, byte-identical output from two runs, and clear errors (exit 2 for usage, 1 for
# bad input) for a too-small vocabulary, an unreadable file, empty input and invalid UTF-8.
set -u
P="${PARITY_BIN:?}"
fail=0
t() { if eval "$2"; then echo "ok - $1"; else echo "FAIL - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
GPL=/usr/share/common-licenses/GPL-3

t "tokenizer --help shows train" '"$P" tokenizer --help | grep -q "parity tokenizer train --vocab-size N"'
"$P" tokenizer train --vocab-size 800 --chat -o "$tmp/a/tokenizer.json" "$GPL" >"$tmp/out" 2>"$tmp/err"; rc=$?
t "train exits 0 and names its files" '[ $rc -eq 0 ] && grep -q "a/tokenizer_config.json" "$tmp/out"' || cat "$tmp/err"

t "info: vocab 800, eos <|im_end|>, chat template" '"$P" tokenizer info -m "$tmp/a" | tr "\n" " " | grep -q "vocab_size 800 bos 797 eos 799 chat_template yes"'
ids=$("$P" tokenizer encode -m "$tmp/a" --text "Copyleft 🤖 <|im_start|>")
t "encode/decode round trip" '[ "$("$P" tokenizer decode -m "$tmp/a" --ids "$(echo $ids | tr " " ,)")" = "Copyleft 🤖 <|im_start|>" ]'
cat "$GPL" | "$P" tokenizer train --vocab-size 800 --chat -o "$tmp/b/tokenizer.json" - >/dev/null 2>&1
t "two runs (file, stdin) write identical bytes" 'cmp -s "$tmp/a/tokenizer.json" "$tmp/b/tokenizer.json" && cmp -s "$tmp/a/tokenizer_config.json" "$tmp/b/tokenizer_config.json"'

"$P" tokenizer train --vocab-size 256 -o "$tmp/c.json" "$GPL" 2>"$tmp/err" >/dev/null; rc=$?
t "vocab below 256 + specials: exit 2" '[ $rc -eq 2 ] && grep -q "below 256" "$tmp/err"'
"$P" tokenizer train -o "$tmp/c.json" "$GPL" 2>"$tmp/err" >/dev/null; rc=$?
t "missing --vocab-size: exit 2" '[ $rc -eq 2 ]'
"$P" tokenizer train --vocab-size 300 -o "$tmp/c.json" "$tmp/missing.txt" 2>"$tmp/err" >/dev/null; rc=$?
t "unreadable file: exit 1 naming it" '[ $rc -eq 1 ] && grep -q "missing.txt" "$tmp/err"'
: >"$tmp/empty.txt"
"$P" tokenizer train --vocab-size 300 -o "$tmp/c.json" "$tmp/empty.txt" 2>"$tmp/err" >/dev/null; rc=$?
t "empty input: exit 1, no training text" '[ $rc -eq 1 ] && grep -q "no training text" "$tmp/err"'
printf 'good text \xc3\x28 bad' >"$tmp/bad.txt"
"$P" tokenizer train --vocab-size 300 -o "$tmp/c.json" "$tmp/bad.txt" 2>"$tmp/err" >/dev/null; rc=$?
t "invalid UTF-8: exit 1 with file and offset" '[ $rc -eq 1 ] && grep -q "bad.txt: offset 10: invalid UTF-8" "$tmp/err"'
t "nothing written on failure" '[ ! -e "$tmp/c.json" ]'
exit $fail
