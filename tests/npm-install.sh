#!/usr/bin/env bash
# Usage: tests/npm-install.sh DIR — installs the test-only npm packages of tests/DIR (exact
# versions from its package-lock.json) into tests/DIR/node_modules when missing.
# Several tests call this at once under `ctest -j`: the lock serialises them, and the marker
# file is written only after `npm ci` finished, so no test sees a half-installed tree.
set -euo pipefail
cd "$(dirname "$0")/$1"
exec 9>.install.lock
flock 9
[ -f node_modules/.parity-installed ] && exit 0
npm ci --no-audit --no-fund --loglevel=error >&2
touch node_modules/.parity-installed
