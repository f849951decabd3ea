#!/usr/bin/env bash
# Installs what parity needs to build, test and run, from Debian 12 packages only.
# Idempotent: it asks apt only for packages that are not already installed.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libopenblas-dev libmicrohttpd-dev libsodium-dev libjansson-dev libsqlite3-dev
  libpq-dev libyaml-dev libpcre2-dev libcurl4-openssl-dev libutf8proc-dev
  sqlite3
  # test references and tools: PyTorch (engine/training reference), clang (libFuzzer,
  # sanitizers), wrk (HTTP benchmarks), PostgreSQL (shared store tests), Node.js (openai client),
  # SentencePiece (tokenizer reference), regex (BPE trainer reference)
  python3 python3-torch python3-numpy python3-yaml python3-cryptography python3-sentencepiece
  python3-regex
  clang libclang-rt-14-dev wrk
)

# The recipe of the demo models reads the King James Bible through Debian's `bible` program.
pkgs+=(bible-kjv bible-kjv-text)
# Test-only JavaScript references (gpt-3-encoder, @huggingface/gguf, openai) need Node.js and
# npm; machines that already have a node on PATH keep theirs.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
