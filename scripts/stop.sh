#!/usr/bin/env bash
# Stops what `make run` started: Serve (gracefully, so that replicas stop their engines and flush
# the usage ledger), then the local Ray head and everything on it.
set -uo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
if .venv/bin/ray status >/dev/null 2>&1; then
  timeout 60 .venv/bin/serve shutdown --address http://127.0.0.1:8265 -y >/dev/null 2>&1 \
    || timeout 60 .venv/bin/python - <<'PY' >/dev/null 2>&1
import ray
from ray import serve
ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
serve.shutdown()
PY
fi
.venv/bin/ray stop --force >/dev/null 2>&1 && echo "stop: Ray stopped" || echo "stop: nothing was running"
# vLLM's engine process outlives a replica that Ray killed (it is re-parented to init): stop any
# such orphan started by this virtualenv's interpreter
py=$(readlink -f .venv/bin/python)
for pid in $(pgrep -f '^VLLM::' || true); do
  if [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = 1 ] && [ "$(readlink -f "/proc/$pid/exe")" = "$py" ]; then
    kill -9 "$pid" 2>/dev/null && echo "stop: stopped an orphaned vLLM engine (pid $pid)"
  fi
done
