#!/usr/bin/env bash
# Two teams sharing one running service (`make run`), driven from the CLI: an organisation, two
# namespaces, a key each with its own limits, requests over HTTP (one team runs into its limit),
# then the usage each namespace reported. Every step prints the command it runs.
# docs/tenancy.md shows a recorded run.  Usage: scripts/tenancy-walkthrough.sh [URL]
set -euo pipefail
cd "$(dirname "$0")/.."
URL=${1:-${RAWINFER_URL:-http://127.0.0.1:8000}}
R=.venv/bin/rawinfer
SUFFIX=$(date +%s)
A=analytics-$SUFFIX B=search-$SUFFIX ORG=acme-$SUFFIX

run() { echo "\$ ${*}"; "$@"; echo; }
curl -sf "$URL/healthz" >/dev/null || { echo "no service answers on $URL: run \`make run\` first"; exit 1; }

run $R orgs create "$ORG"
run $R namespaces create "$A" --org "$ORG" --rpm 100
run $R namespaces create "$B" --org "$ORG"
echo "\$ $R keys create --json --name analytics-bot --org $ORG --namespace $A --rpm 3"
KEY_A=$($R keys create --json --name analytics-bot --org "$ORG" --namespace "$A" --rpm 3)
echo "$KEY_A" | sed -E 's/"secret": "[^"]+"/"secret": "<shown once>"/'; echo
echo "\$ $R keys create --json --name search-svc --org $ORG --namespace $B --tpm 100000"
KEY_B=$($R keys create --json --name search-svc --org "$ORG" --namespace "$B" --tpm 100000)
echo "$KEY_B" | sed -E 's/"secret": "[^"]+"/"secret": "<shown once>"/'; echo
secret() { .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["secret"])'; }
id_of() { .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["key"]["id"])'; }
SECRET_A=$(echo "$KEY_A" | secret) SECRET_B=$(echo "$KEY_B" | secret)
run $R limits show --key "$(echo "$KEY_A" | id_of)"

call() {  # call SECRET NAMESPACE BODY: prints the status, rate-limit headers and a summary
  local out
  out=$(curl -s -D - -o /tmp/rawinfer-walkthrough.json "$URL/v1/inference" -H "Authorization: Bearer $1" \
        -H "X-Namespace: $2" -H 'Content-Type: application/json' -d "$3")
  echo "$out" | grep -iE '^(HTTP/|x-ratelimit-remaining|retry-after)' | tr -d '\r' | paste -sd' '
  .venv/bin/python -c 'import json; b = json.load(open("/tmp/rawinfer-walkthrough.json"));
print("   ", {k: b[k] for k in ("model", "tokens_used")} if "data" in b else b["error"]["type"] + ": " + b["error"]["message"])'
}
EMBED='{"inference_name": "multilingual_e5_large_instruct_v1", "inputs": {"texts": ["quarterly revenue", "churn by region"]}}'
CHAT='{"provider": "local", "model": "smollm2-135m-instruct", "inputs": {"prompts": ["Name a colour."]}, "parameters": {"max_tokens": 8, "temperature": 0}}'
echo "# $A: 4 requests with a 3-per-minute key"
for _ in 1 2 3 4; do call "$SECRET_A" "$A" "$EMBED"; done
echo; echo "# $B: an embedding and a chat"
call "$SECRET_B" "$B" "$EMBED"
call "$SECRET_B" "$B" "$CHAT"
echo; echo "# the analytics key in the search namespace"
call "$SECRET_A" "$B" "$EMBED"
echo
sleep 2  # the ledger writes off the request path, about once a second
run $R usage --namespace "$A"
run $R usage --namespace "$B" --group-by target
echo "\$ curl $URL/v1/usage?group_by=status  (as the search key)"
curl -s "$URL/v1/usage?group_by=status" -H "Authorization: Bearer $SECRET_B" -H "X-Namespace: $B"; echo
