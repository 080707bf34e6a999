#!/usr/bin/env bash
# Starts a local Ray head and deploys serve_config.yaml with the public `serve run` CLI, waits
# until every deployment answers, creates the development namespace and key if missing, and
# prints them with a ready-to-paste curl. `make stop` (scripts/stop.sh) undoes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
# Serve's HTTP proxy cleans X-Request-Id before echoing it (router/proxy.py); read when Ray starts
export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=router.proxy:middlewares
# replicas at niceness 0, not Ray's 15, so that other processes on the node do not preempt them
# (rawinfer/cli/launch.py SERVING_ENV; read when Ray starts)
export RAY_worker_niceness=0
unset RAY_ADDRESS
V=.venv/bin
URL=${RAWINFER_URL:-http://127.0.0.1:8000}
mkdir -p .rawinfer/logs

# the development namespace and key live in the database only: made while Ray starts, so the key
# works the moment the first deployment answers
$V/rawinfer dev-init --url "$URL" >.rawinfer/logs/dev-init.out 2>&1 &
DEV_INIT=$!
if ! $V/ray status >/dev/null 2>&1; then
  echo "run: starting Ray (local head, $(nproc) CPUs, no dashboard)"
  $V/ray start --head --num-cpus="$(nproc)" --include-dashboard=false --disable-usage-stats >.rawinfer/logs/ray-start.log 2>&1
fi
wait $DEV_INIT || { cat .rawinfer/logs/dev-init.out; exit 1; }
echo "run: deploying serve_config.yaml (first start loads the models: about a minute)"
$V/serve run --address auto --non-blocking serve_config.yaml >.rawinfer/logs/serve-run.log 2>&1

deploy_failed() {  # a Python check (imports Ray: slow), so only now and then
  $V/python - <<'PY' 2>/dev/null
import sys
import ray
from ray import serve
ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
app = serve.status().applications.get("rawinfer")
if app is not None and app.status == "DEPLOY_FAILED":
    print(app.message); sys.exit(0)
sys.exit(1)
PY
}
# /readyz answers 200 once every deployment is healthy (503 naming the others before); polling it
# with curl costs the loading replicas no CPU, unlike a Python status check every few seconds
ready=""
for i in $(seq 1 600); do
  if curl -sf -o /dev/null "$URL/readyz"; then ready=1; break; fi
  if [ $((i % 30)) = 0 ] && deploy_failed; then
    echo "run: deploy failed (see .rawinfer/logs and /tmp/ray/session_latest/logs/serve)"; exit 1
  fi
  sleep 1
done
[ -n "$ready" ] || { echo "run: not ready after 10 minutes; $URL/readyz says:"; curl -s "$URL/readyz"; echo; exit 1; }
echo "run: serving on $URL"
cat .rawinfer/logs/dev-init.out
echo
echo "stop with: make stop"
