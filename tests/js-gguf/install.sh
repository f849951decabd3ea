#!/usr/bin/env bash
# Installs the test-only npm packages (exact versions from package-lock.json) when missing.
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/@huggingface/gguf ] || npm ci --no-audit --no-fund --loglevel=error >&2
