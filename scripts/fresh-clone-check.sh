#!/usr/bin/env bash
# What a new user does: clones the repository's committed HEAD into a temporary directory and
# runs the README's two commands there, exactly as written:
#   make demo   in the background, until GET /healthz answers on its port; then stopped
#   make test   the whole suite (normal, ASan+UBSan, portability)
# and fails if either fails, so a file the tests need but git lacks, or a missing install
# step, fails it. .ci/run runs this (the suite runs once, in the clone). The demo's port is
# DEMO_PORT (the Makefile's variable, taken from the environment): a free one is chosen, so
# a busy 8080 does not matter. Keeps the clone when it fails (KEEP=1: always).
#   scripts/fresh-clone-check.sh
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
head=$(git -C "$src" rev-parse HEAD)
[ -z "$(git -C "$src" status --porcelain --untracked-files=no)" ] ||
  echo "fresh-clone-check: note: uncommitted changes are not checked (HEAD $head is)" >&2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parity-fresh-XXXXXX")
demo_pid=""
finish() {
  rc=$?
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM -- "-$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  if [ $rc -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$tmp"; else echo "fresh-clone-check: clone kept in $tmp" >&2; fi
  exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

git clone -q --no-hardlinks "$src" "$tmp/parity"
git -C "$tmp/parity" checkout -q --detach "$head"
cd "$tmp/parity"
echo "fresh-clone-check: $head cloned into $tmp/parity"

# A free port for the demo (the kernel's choice for port 0; free again once closed).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start=$(date +%s)
# Its own process group (set -m), so that stopping it stops make and the server alike.
set -m
DEMO_PORT=$port make demo >"$tmp/demo.log" 2>&1 &
demo_pid=$!
set +m
echo "fresh-clone-check: make demo (pid $demo_pid, port $port, log $tmp/demo.log)"
until curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; do
  if ! kill -0 "$demo_pid" 2>/dev/null; then
    echo "fresh-clone-check: make demo exited before /healthz answered:" >&2
    tail -n 30 "$tmp/demo.log" >&2
    exit 1
  fi
  if [ $(( $(date +%s) - start )) -gt "${DEMO_TIMEOUT:-1800}" ]; then
    echo "fresh-clone-check: /healthz did not answer within ${DEMO_TIMEOUT:-1800} s" >&2
    exit 1
  fi
  sleep 1
done
echo "fresh-clone-check: make demo: /healthz answered after $(( $(date +%s) - start )) s"
kill -TERM -- "-$demo_pid"
wait "$demo_pid" 2>/dev/null || true
demo_pid=""

start=$(date +%s)
make test
echo "fresh-clone-check: make test passed ($(( $(date +%s) - start )) s)"
