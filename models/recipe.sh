#!/usr/bin/env bash
# Rebuilds the shipped demo models from scratch, deterministically (fixed seeds):
#   1. the corpus: the King James Bible from Debian's bible-kjv-text (public domain, 4.4 MB of
#      English, one document per chapter) — real English text available as a Debian package,
#      large enough for a model of a few million parameters, and plain enough to judge samples;
#   2. a byte-level BPE tokenizer of 4,096 tokens trained on it (parity tokenizer train);
#   3. token files with a 2% validation split by chapter (parity data);
#   4. the "frontier" demo model, trained from scratch (parity train, models/parity-demo.train.yaml);
#   5. its analog at <= 1/8 of the parameters, distilled from it (models/recipe-analog.sh);
# and writes models/parity-demo/ (F16 safetensors, config.json, tokenizer files) and
# models/parity-demo-analog/. Usage: models/recipe.sh   (or: make models)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PARITY_BIN:-build/parity}
W=build/models-work
mkdir -p "$W"

command -v bible >/dev/null || { echo "recipe: needs the 'bible' program (Debian package bible-kjv)" >&2; exit 1; }
# "Ge1:1 In the beginning..." -> the verse text, a blank line between chapters.
bible -f gen1:1-rev22:21 | awk '{ref=$1; sub(/:[0-9]+$/, "", ref); if (ref != prev && NR > 1) print ""; prev = ref;
                                 $1 = ""; sub(/^ /, ""); print}' > "$W/kjv.txt"
"$BIN" tokenizer train --vocab-size 4096 --special '<|endoftext|>' -o "$W/tokenizer.json" "$W/kjv.txt"
"$BIN" data --tokenizer "$W/tokenizer.json" --input "$W/kjv.txt" --out "$W/data" --val-fraction 0.02 --seed 1

"$BIN" train --config models/parity-demo.train.yaml
rm -rf models/parity-demo
"$BIN" convert "$W/parity-demo/model" models/parity-demo --to hf --dtype f16 --quiet
cp "$W/tokenizer_config.json" models/parity-demo/ 2>/dev/null || true
"$BIN" eval -m models/parity-demo --data "$W/data/val.bin" --ctx 128 --json > models/parity-demo/eval.json

if [ -x models/recipe-analog.sh ]; then models/recipe-analog.sh; fi
echo "recipe: done: models/parity-demo $( [ -d models/parity-demo-analog ] && echo and models/parity-demo-analog)"
