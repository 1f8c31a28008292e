#!/usr/bin/env bash
# Runs the walkthrough of docs/walkthrough.md against a fresh esm (embedded store, dummy
# backend) and prints each request with its real answer, so its outputs can be regenerated
# from a run rather than written by hand:
#
#   cargo build && tests/walkthrough.sh [path/to/esm]
set -euo pipefail

esm=${1:-target/debug/esm}
api=http://127.0.0.1:18080
dir=$(mktemp -d)
ESM_DATA_DIR="$dir" ESM_IP=127.0.0.1 ESM_PORT=18080 ESM_CHECK_IP=127.0.0.1 ESM_CHECK_PORT=15000 \
  ESM_BACKENDS=dummy "$esm" >"$dir/esm.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

# until CONDITION...: polls (at most 20 s), failing the script if it never holds.
until_true() {
  for _ in $(seq 100); do
    "$@" && return 0
    sleep 0.2
  done
  echo "walkthrough: timed out waiting for: $*" >&2
  exit 1
}

until_true curl -sf -o /dev/null http://127.0.0.1:15000/health

# step TITLE CURL-ARGS...: prints the request and the answer (status line, selected
# headers, body).
step() {
  local title=$1
  shift
  printf '\n### %s\n$ curl %s\n' "$title" "$*"
  curl -s -i "$@" | tr -d '\r' | grep -Evi '^(date|content-length|x-request-id|x-broker-api-request-identity):'
  echo
}

v12=(-H 'X-Broker-API-Version: 2.12')
v17=(-H 'X-Broker-API-Version: 2.17')
json=(-H 'Content-Type: application/json')

step "Register a service" -X PUT "$api/v2/et/catalog" "${v12[@]}" "${json[@]}" -d '{
  "id": "a_service_type", "name": "test_svc", "description": "this is a test service",
  "bindable": true, "plan_updateable": false, "tags": ["test", "tester"],
  "plans": [{"id": "plan-id-for-free", "name": "testing-plan", "description": "plan for testing", "free": true}]}'

step "Get the catalog" "$api/v2/catalog" -H 'X_Broker_Api_Version: 2.12'

step "Register a manifest" -X PUT "$api/v2/et/manifest/test_manifest" "${v12[@]}" "${json[@]}" -d '{
  "manifest_type": "dummy", "plan_id": "plan-id-for-free", "service_id": "a_service_type",
  "manifest_content": "version: \"2\"\nx-esm-dummy:\n  delay_ms: 1000\nservices:\n  spark-master:\n    image: elastest/ebs-spark-base:0.5.0\n    container_name: spark-master\n    command: [\"/usr/bin/supervisord\", \"--configuration=/opt/conf/master.conf\"]\n  spark-worker:\n    image: elastest/ebs-spark-base:0.5.0\n    depends_on: [spark-master]\n",
  "endpoints": {"spark-master": {"main": true, "port": 8080}}}'

step "List manifests" "$api/v2/et/manifest" "${v12[@]}"

payload='{"organization_guid": "my-org-id-very-rich-company", "plan_id": "plan-id-for-free",
  "service_id": "a_service_type", "space_guid": "space-guid-here",
  "parameters": {"parameter1": 1, "parameter2": "value"}}'
step "Provision asynchronously" -X PUT "$api/v2/service_instances/123-123-123?accept_incomplete=true" \
  "${v12[@]}" "${json[@]}" -d "$payload"

step "Poll at once" "$api/v2/service_instances/123-123-123/last_operation" "${v12[@]}"
succeeded() { curl -s "$api/v2/service_instances/123-123-123/last_operation" "${v12[@]}" | grep -q succeeded; }
until_true succeeded
step "Poll once it is done" "$api/v2/service_instances/123-123-123/last_operation" "${v12[@]}"

step "Fetch (OSB)" "$api/v2/service_instances/123-123-123" "${v17[@]}"
step "Fetch (ElasTest)" "$api/v2/et/service_instances/123-123-123" "${v12[@]}"

step "Bind" -X PUT "$api/v2/service_instances/123-123-123/service_bindings/b-1" "${v17[@]}" "${json[@]}" \
  -d '{"service_id": "a_service_type", "plan_id": "plan-id-for-free"}'
step "Unbind" -X DELETE \
  "$api/v2/service_instances/123-123-123/service_bindings/b-1?service_id=a_service_type&plan_id=plan-id-for-free" \
  "${v17[@]}"

step "Deprovision" -X DELETE \
  "$api/v2/service_instances/123-123-123?service_id=a_service_type&plan_id=plan-id-for-free&accepts_incomplete=true" \
  "${v17[@]}"
step "Poll at once" "$api/v2/service_instances/123-123-123/last_operation" "${v17[@]}"
gone() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$api/v2/service_instances/123-123-123/last_operation" "${v17[@]}")" = 410 ]; }
until_true gone
step "Poll once it is done" "$api/v2/service_instances/123-123-123/last_operation" "${v17[@]}"

step "Health" http://127.0.0.1:15000/health
