#!/usr/bin/env bash
# The analog demo model: distills models/parity-demo (the "frontier" model) into a student
# with <= 1/8 of its parameters (models/parity-demo-analog.distill.yaml), on the token files
# models/recipe.sh wrote (build/models-work/data), with the teacher run on the fly through the
# engine; writes models/parity-demo-analog/ (F16 safetensors, config.json, tokenizer files,
# eval.json: loss, perplexity, KL(teacher||student), top-1 agreement and both perplexities on
# the validation tokens). Deterministic: fixed seeds, fixed thread counts.
# Usage: models/recipe-analog.sh [--resume]   (called by models/recipe.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PARITY_BIN:-build/parity}
W=build/models-work
[ -f models/parity-demo/config.json ] || { echo "recipe-analog: needs models/parity-demo (models/recipe.sh)" >&2; exit 1; }
[ -f "$W/data/train.bin" ] || { echo "recipe-analog: needs $W/data (models/recipe.sh)" >&2; exit 1; }

"$BIN" distill --teacher models/parity-demo --student-config models/parity-demo-analog.distill.yaml "$@"
rm -rf models/parity-demo-analog
"$BIN" convert "$W/parity-demo-analog/model" models/parity-demo-analog --to hf --dtype f16 --quiet
cp "$W/tokenizer_config.json" models/parity-demo-analog/ 2>/dev/null || true
"$BIN" eval -m models/parity-demo-analog --teacher models/parity-demo --data "$W/data/val.bin" --ctx 128 --json \
    > models/parity-demo-analog/eval.json
cat models/parity-demo-analog/eval.json
