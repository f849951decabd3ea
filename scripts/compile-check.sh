#!/usr/bin/env bash
# Compiles every file under src/ for older and newer x86-64 levels, with gcc and with clang,
# warnings as errors: -march=x86-64-v2 (SSE4.2, no AVX) and -march=x86-64-v3 (AVX2, no
# AVX-512). A kernel whose target attribute lacks a feature one of its intrinsics needs
# builds on a machine whose -march=native happens to have it and fails on these ("target
# specific option mismatch"), so this catches it on any developer machine. Part of
# `make test` (make test-portability); about a minute on two cores.
#   scripts/compile-check.sh [MARCH...]     (default: x86-64-v2 x86-64-v3)
set -euo pipefail
cd "$(dirname "$0")/.."

case "$(uname -m)" in
  x86_64|amd64) ;;
  *) echo "compile-check: not an x86-64 host, nothing to check"; exit 0 ;;
esac
marches=("$@")
[ ${#marches[@]} -gt 0 ] || marches=(x86-64-v2 x86-64-v3)
compilers=(gcc clang)
# The flags of CMakeLists.txt (warnings, definitions) and the dependencies' include paths.
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
for f in src/cli/cmd_*.c; do n=${f##*/cmd_}; echo "PARITY_COMMAND(${n%.c})"; done >"$gen/commands.inc"
flags="-std=c11 -O2 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Wall -Wextra -Wshadow -Wno-unused-parameter -Wvla
  -fno-strict-aliasing -Werror -Isrc -I$gen $(pkg-config --cflags jansson libsodium sqlite3 yaml-0.1 libpcre2-8 libmicrohttpd libpq libcurl openblas)"
jobs=$(nproc)
fail=0
for cc in "${compilers[@]}"; do
  extra=""
  [ "$cc" = gcc ] && extra="-Wno-format-truncation"
  for m in "${marches[@]}"; do
    start=$(date +%s)
    # shellcheck disable=SC2086
    if ! printf '%s\n' src/*/*.c | xargs -P "$jobs" -I{} $cc $flags $extra -march="$m" -c {} -o /dev/null; then
      echo "compile-check: $cc -march=$m: FAILED"
      fail=1
    else
      echo "compile-check: $cc -march=$m: $(ls src/*/*.c | wc -l) files compiled ($(( $(date +%s) - start )) s)"
    fi
  done
done
exit $fail
