#!/usr/bin/env bash
# Starts a local Ray head and deploys serve_config.yaml with the public `serve run` CLI, waits
# until every deployment answers, creates the development namespace and key if missing, and
# prints them with a ready-to-paste curl. `make stop` (scripts/stop.sh) undoes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
# Serve's HTTP proxy cleans X-Request-Id before echoing it (router/proxy.py); read when Ray starts
export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=router.proxy:middlewares
unset RAY_ADDRESS
V=.venv/bin
URL=${RAWINFER_URL:-http://127.0.0.1:8000}
mkdir -p .rawinfer/logs

if ! $V/ray status >/dev/null 2>&1; then
  echo "run: starting Ray (local head, $(nproc) CPUs, no dashboard)"
  $V/ray start --head --num-cpus="$(nproc)" --include-dashboard=false --disable-usage-stats >.rawinfer/logs/ray-start.log 2>&1
fi
echo "run: deploying serve_config.yaml (first start loads the models: about a minute)"
$V/serve run --address auto --non-blocking serve_config.yaml >.rawinfer/logs/serve-run.log 2>&1

for _ in $(seq 1 300); do
  if $V/python - <<'PY' 2>/dev/null
import sys
from ray import serve
import ray
ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
apps = serve.status().applications
app = apps.get("rawinfer")
if app is None or app.status != "RUNNING":
    if app is not None and app.status == "DEPLOY_FAILED":
        print(app.message); sys.exit(2)
    sys.exit(1)
PY
  then break; else rc=$?; [ $rc = 2 ] && { echo "run: deploy failed (see .rawinfer/logs and /tmp/ray/session_latest/logs/serve)"; exit 1; }; fi
  sleep 2
done
curl -sf "$URL/healthz" >/dev/null || { echo "run: $URL/healthz does not answer"; exit 1; }
echo "run: serving on $URL"
$V/rawinfer dev-init --url "$URL"
echo
echo "stop with: make stop"
