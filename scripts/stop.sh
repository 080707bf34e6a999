#!/usr/bin/env bash
# Stops what `make run` started: the local Ray head and everything on it (Serve included).
set -uo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
.venv/bin/ray stop --force >/dev/null 2>&1 && echo "stop: Ray stopped" || echo "stop: nothing was running"
