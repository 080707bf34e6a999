#!/usr/bin/env bash
# A multi-node Ray cluster on this one machine, and the service deployed over it by node kind
# (docs/deploy.md): a head raylet with the `cpu_node` resource (the ingress, the shared limiter
# and cache, the cloud proxies) and two worker raylets with `model_node` (the local models and
# plugins), each with its own temp dir and ports. The embedded default (`make run`) stays
# single-node; this is for trying placement and node loss by hand.
#   scripts/cluster.sh up       start the three raylets and deploy serve_config.yaml
#   scripts/cluster.sh status   the nodes and where each replica runs
#   scripts/cluster.sh kill N   kill worker N's raylet (1 or 2) and its replicas: a node loss
#   scripts/cluster.sh add N    start worker N again: the node returns
#   scripts/cluster.sh down     stop everything
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=router.proxy:middlewares
export RAY_worker_niceness=0
unset RAY_ADDRESS
V=.venv/bin
STATE=.rawinfer/cluster
HEAD_PORT=${RAWINFER_CLUSTER_PORT:-6390}
URL=${RAWINFER_URL:-http://127.0.0.1:8000}
CPUS=$(nproc)
mkdir -p "$STATE"

worker() {  # N: a model node; its own temp dir and dashboard agent port (one machine)
  local n=$1
  $V/ray start --address "127.0.0.1:$HEAD_PORT" --num-cpus "$CPUS" \
    --resources '{"model_node": 1}' --temp-dir "/tmp/rawinfer-cluster-w$n" \
    --dashboard-agent-listen-port $((52365 + n)) --metrics-export-port $((8090 + n)) \
    --disable-usage-stats >"$STATE/worker-$n.log" 2>&1
}

raylet_pids() {  # N: the processes of worker N's raylet (found by its temp dir)
  pgrep -f -- "rawinfer-cluster-w$1" || true
}

case "${1:-}" in
  up)
    $V/ray start --head --port "$HEAD_PORT" --num-cpus "$CPUS" --resources '{"cpu_node": 1}' \
      --temp-dir /tmp/rawinfer-cluster-head --include-dashboard=true --dashboard-host 127.0.0.1 \
      --disable-usage-stats \
      >"$STATE/head.log" 2>&1
    worker 1
    worker 2
    echo "cluster: head on 127.0.0.1:$HEAD_PORT (cpu_node), workers 1 and 2 (model_node)"
    $V/rawinfer dev-init --url "$URL" >"$STATE/dev-init.out"
    RAY_ADDRESS="127.0.0.1:$HEAD_PORT" $V/python -m rawinfer.cli.launch --node-kinds \
      --proxy-location HeadOnly
    cat "$STATE/dev-init.out"
    ;;
  status)
    RAY_ADDRESS="127.0.0.1:$HEAD_PORT" $V/python - <<'PY'
import ray
from ray.util.state import list_actors

ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
for n in ray.nodes():
    kind = [k for k in n["Resources"] if k in ("cpu_node", "model_node")]
    print(n["NodeID"][:12], "alive" if n["Alive"] else "dead", *kind)
for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
    if (a.class_name or "").startswith("ServeReplica:"):
        print(" ", a.class_name.split(":")[-1], "on", a.node_id[:12])
PY
    ;;
  kill)
    pids=$(raylet_pids "${2:?worker number}")
    [ -n "$pids" ] && kill -9 $pids && echo "cluster: worker $2 killed"
    ;;
  add)
    worker "${2:?worker number}" && echo "cluster: worker $2 started"
    ;;
  down)
    RAY_ADDRESS="127.0.0.1:$HEAD_PORT" timeout 60 $V/python -c \
      'import ray; from ray import serve; ray.init(address="auto", logging_level="ERROR"); serve.shutdown()' \
      >/dev/null 2>&1 || true
    for n in 1 2; do
      p=$(raylet_pids $n); [ -n "$p" ] && kill -9 $p 2>/dev/null || true
    done
    $V/ray stop --force >/dev/null 2>&1 || true
    rm -rf /tmp/rawinfer-cluster-w1 /tmp/rawinfer-cluster-w2
    echo "cluster: stopped"
    ;;
  *)
    sed -n 2,11p "$0"; exit 2 ;;
esac
