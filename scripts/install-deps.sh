#!/usr/bin/env bash
# Installs what parity needs to build, test and run, from Debian 12 packages only.
# Idempotent: it asks apt only for packages that are not already installed.
#   scripts/install-deps.sh          what `make demo` and the native tests need
#   scripts/install-deps.sh --arm64  what the arm64 cross build and its tests under qemu need
#                                    (make test-arm64, part of make test): adds the arm64
#                                    architecture to dpkg (multiarch), the cross compiler,
#                                    qemu-user-static and the arm64 libraries
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
updated=0
apt_install() { # packages...: installs those not installed yet
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "install-deps: installing ${missing[*]}" >&2
  [ $updated -eq 1 ] || $SUDO apt-get update -q
  updated=1
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
}

if [ "${1:-}" = --arm64 ]; then
  # The libraries libparity links, for arm64. libpq-dev is the exception: Debian 12's cannot be
  # installed for two architectures at once (libpq-dev:arm64 would remove libpq-dev:amd64), so
  # the cross build takes libpq5:arm64's library with the amd64 package's headers (see
  # cmake/aarch64-pkgconfig/libpq.pc). Multi-Arch "same" packages must have the same version
  # in both architectures, so apt may upgrade their amd64 halves (security updates) too.
  arm=(libopenblas-dev libmicrohttpd-dev libsodium-dev libjansson-dev libsqlite3-dev libyaml-dev
    libpcre2-dev libcurl4-openssl-dev libutf8proc-dev libpq5 libc6)
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "install-deps: adding the arm64 architecture (dpkg multiarch)" >&2
    $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -q
    updated=1
  fi
  apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static libpq-dev "${arm[@]/%/:arm64}"
  exit 0
fi

pkgs=(
  build-essential cmake pkg-config
  libopenblas-dev libmicrohttpd-dev libsodium-dev libjansson-dev libsqlite3-dev
  libpq-dev libyaml-dev libpcre2-dev libcurl4-openssl-dev libutf8proc-dev
  sqlite3
  # test references and tools: PyTorch (engine/training reference), clang (libFuzzer,
  # sanitizers), wrk (HTTP benchmarks), PostgreSQL (shared store tests), Node.js (openai client),
  # SentencePiece (tokenizer reference), regex (BPE trainer reference), pip + setuptools + venv
  # (the Python client's test installs clients/python into a temporary venv, offline)
  python3 python3-torch python3-numpy python3-yaml python3-cryptography python3-sentencepiece
  python3-regex python3-pip python3-setuptools python3-venv
  clang libclang-rt-14-dev wrk
)

# The recipe of the demo models reads the King James Bible through Debian's `bible` program.
pkgs+=(bible-kjv bible-kjv-text)
# Test-only JavaScript references (gpt-3-encoder, @huggingface/gguf, openai) need Node.js and
# npm; machines that already have a node on PATH keep theirs.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)

apt_install "${pkgs[@]}"
