#!/usr/bin/env bash
# Installs the test-only npm packages (exact versions from package-lock.json) when missing,
# here or in the folder given as the argument (tests/js-ggml).
# Several tests call this at once under `ctest -j`: the lock serialises them, and the marker
# file is written only after `npm ci` finished, so no test sees a half-installed tree.
set -euo pipefail
cd "${1:-$(dirname "$0")}"
exec 9>.install.lock
flock 9
[ -f node_modules/.parity-installed ] && exit 0
npm ci --no-audit --no-fund --loglevel=error >&2
touch node_modules/.parity-installed
