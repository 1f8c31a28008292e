#!/usr/bin/env bash
# Smoke test of the container image: run it, wait for its HEALTHCHECK, run the
# walkthrough's flow (docs/walkthrough.md) against it, stop it with SIGTERM, start it
# again on the same volume and find the data still there. Prints the image size and time to healthy.
#   tests/image/smoke.sh IMAGE
set -euo pipefail
image=${1:?usage: smoke.sh IMAGE}
name=esm-smoke-$$
volume=esm-smoke-$$
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; docker volume rm "$volume" >/dev/null 2>&1 || true; }
trap cleanup EXIT
fail() { echo "smoke test: $*" >&2; docker logs "$name" 2>&1 | tail -20 >&2 || true; exit 1; }

start() {
  docker run -d --name "$name" -p 127.0.0.1::8080 -p 127.0.0.1::5000 -v "$volume:/var/lib/esm" \
    -e ESM_BACKENDS=dummy "$image" >/dev/null
  local started=$SECONDS
  until [ "$(docker inspect -f '{{.State.Health.Status}}' "$name")" = healthy ]; do
    [ $((SECONDS - started)) -lt 90 ] || fail "not healthy after 90 s"
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || fail "the container stopped"
    sleep 0.5
  done
  healthy_after=$((SECONDS - started))
  api="http://$(docker port "$name" 8080/tcp | head -1)"
}
start
echo "healthy after ${healthy_after}s; image size $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}')"
[ "$(docker inspect -f '{{.Config.User}}' "$image")" = esm ] || fail "the image does not run as the esm user"

source "$(dirname "$0")/walkthrough.sh"
walkthrough
# A release build refuses the dummy's test-only hold: nothing could release it.
expect 201 PUT /v2/et/catalog '{"id": "held_svc", "name": "held", "description": "d",
  "plans": [{"id": "held-plan", "name": "p", "description": "d"}]}'
expect 400 PUT /v2/et/manifest/held '{"service_id": "held_svc", "plan_id": "held-plan", "manifest_type": "dummy",
  "manifest_content": "x-esm-dummy: {hold: [provision]}\n"}'
# Nor a call log: a manifest must not name a file for esm to write to.
expect 400 PUT /v2/et/manifest/logged '{"service_id": "held_svc", "plan_id": "held-plan", "manifest_type": "dummy",
  "manifest_content": "x-esm-dummy: {call_log: /tmp/calls.jsonl}\n"}'

docker stop -t 20 "$name" >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' "$name")" = 0 ] || fail "esm did not exit 0 on SIGTERM"
docker rm "$name" >/dev/null
start
echo "restarted on the same volume, healthy after ${healthy_after}s"
expect 200 GET /v2/service_instances/kept-1
expect 410 DELETE '/v2/service_instances/123-123-123?service_id=a_service_type&plan_id=plan-id-for-free'
got=$(osb GET /v2/catalog)
case "$got" in *a_service_type*) echo "  the catalog survived the restart" ;; *) fail "catalog lost: $got" ;; esac
echo "image smoke test passed"
