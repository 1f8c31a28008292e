#!/usr/bin/env bash
# The walkthrough's flow (docs/walkthrough.md) against a running esm: register a service and a manifest,
# provision asynchronously and poll, fetch, bind, unbind, deprovision, and leave one
# instance (kept-1) provisioned. Sourced by the image tests with $api set and fail()
# defined.

osb() { # METHOD PATH [BODY] -> prints "STATUS BODY"
  local args=(-s -o /tmp/smoke-body.$$ -w '%{http_code}' -X "$1" "$api$2" -H 'X-Broker-API-Version: 2.17')
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' -d "$3")
  local status; status=$(curl "${args[@]}")
  echo "$status $(cat /tmp/smoke-body.$$)"; rm -f /tmp/smoke-body.$$
}
expect() { # WANTED_STATUS METHOD PATH [BODY]
  local wanted=$1; shift
  local got; got=$(osb "$@")
  [ "${got%% *}" = "$wanted" ] || fail "$1 $2: wanted $wanted, got $got"
  echo "  $1 $2 -> $got"
}

walkthrough() {
  expect 201 PUT /v2/et/catalog '{"id": "a_service_type", "name": "test_svc", "description": "a test service", "bindable": true,
    "plans": [{"id": "plan-id-for-free", "name": "testing-plan", "description": "plan for testing"}]}'
  expect 200 GET /v2/catalog
  expect 201 PUT /v2/et/manifest/test_manifest '{"service_id": "a_service_type", "plan_id": "plan-id-for-free", "manifest_type": "dummy",
    "manifest_content": "x-esm-dummy: {delay_ms: 300}\nservices:\n  web: {image: nginx}\n"}'
  payload='{"organization_guid": "org", "space_guid": "space", "service_id": "a_service_type", "plan_id": "plan-id-for-free"}'
  expect 202 PUT '/v2/service_instances/123-123-123?accept_incomplete=true' "$payload"
  for _ in $(seq 1 50); do
    state=$(osb GET /v2/service_instances/123-123-123/last_operation)
    case "$state" in *succeeded*) break ;; *failed*) fail "provision failed: $state" ;; esac
    sleep 0.2
  done
  echo "  last_operation -> $state"
  expect 200 GET /v2/service_instances/123-123-123
  expect 200 GET /v2/et/service_instances/123-123-123
  expect 201 PUT /v2/service_instances/123-123-123/service_bindings/b-1 '{"service_id": "a_service_type", "plan_id": "plan-id-for-free"}'
  expect 200 DELETE '/v2/service_instances/123-123-123/service_bindings/b-1?service_id=a_service_type&plan_id=plan-id-for-free'
  expect 200 DELETE '/v2/service_instances/123-123-123?service_id=a_service_type&plan_id=plan-id-for-free'
  expect 201 PUT /v2/service_instances/kept-1 "$payload"
}
