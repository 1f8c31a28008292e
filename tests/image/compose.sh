#!/usr/bin/env bash
# deploy/: both compose files validate, and the MongoDB stack comes up with the
# locally built images (elastest/esm:ci, and esm-test/secantus standing in for
# MongoDB through deploy/ci-override.yml), esm waits for the database's health, and
# the walkthrough's flow (docs/walkthrough.md) works against it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../deploy"
project=esm-ci-$$
export ESM_PORT=127.0.0.1: ESM_CHECK_PORT=127.0.0.1:
compose=(docker-compose -p "$project" -f docker-compose.yml -f ci-override.yml)
cleanup() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
fail() { echo "compose test: $*" >&2; "${compose[@]}" logs --tail 20 >&2 || true; exit 1; }

docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose-no-db.yml config -q
echo "deploy/docker-compose.yml and deploy/docker-compose-no-db.yml are valid"

"${compose[@]}" up -d --no-build
esm=$("${compose[@]}" ps -q esm)
started=$SECONDS
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$esm")" = healthy ]; do
  [ $((SECONDS - started)) -lt 120 ] || fail "esm not healthy after 120 s"
  sleep 1
done
api="http://$(docker port "$esm" 8080/tcp | head -1)"
echo "the MongoDB stack is up; esm healthy after $((SECONDS - started))s at $api"
store=$(curl -fsS "http://$(docker port "$esm" 5000/tcp | head -1)/environment" | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"])')
[ "$store" = mongodb ] || fail "esm runs on the $store store, not MongoDB"

source "$here/walkthrough.sh"
walkthrough
echo "compose test passed"
