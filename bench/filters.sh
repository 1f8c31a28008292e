#!/usr/bin/env bash
# Instance listings with two filters at COUNT instances (default 20000) in the embedded
# store, dummy backend (sync): the median latency of a page with two filters against an
# unfiltered page of 100 and against nginx serving the same bytes (the floor of one HTTP
# round trip here). COUNT instances on plan-1 and 100 failed (asynchronous) provisions on plan-3 whose
# ids sort after them, so a store walking the first filter's range (the service, or
# plan-1) reads COUNT records before the first match. Goal: a filtered page within 2x
# of the unfiltered page.
# COUNT, CONNECTIONS (32), THREADS (2), LATENCY_DURATION (5s).
source "$(dirname "$0")/lib.sh"
need wrk wrk
need nginx nginx
build_esm
count=${COUNT:-20000}; conns=${CONNECTIONS:-32}; threads=${THREADS:-2}

start_esm filters ESM_STORE=embedded
url=$ESM_URL_filters
register "$url" 'x-esm-dummy: {mode: sync}'
python3 - "$url" <<'PY'
import json, sys, urllib.request
url = sys.argv[1]
body = json.dumps({"service_id": "bench-svc", "plan_id": "plan-3", "manifest_type": "dummy",
                   "manifest_content": "x-esm-dummy: {mode: async, fail: [provision]}"}).encode()
req = urllib.request.Request(url + "/v2/et/manifest/bench-failing", data=body, method="PUT",
    headers={"X-Broker-API-Version": "2.17", "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY
provision_many "$url" "$count" bench "$threads" "$conns"
for n in $(seq -w 1 100); do
  curl -s -o /dev/null -X PUT "${OSB_HDR[@]}" -H 'Content-Type: application/json' "$url/v2/service_instances/z-failed-$n?accepts_incomplete=true" \
    -d '{"service_id":"bench-svc","plan_id":"plan-3","organization_guid":"o","space_guid":"s"}'
done

# A failed asynchronous provision keeps its instance, failed: wait until all are.
for _ in $(seq 1 100); do
  failed=$(curl -fsS "${OSB_HDR[@]}" "$url/v2/et/service_instances?limit=1000&state=failed" | grep -o '"service_type":' | wc -l)
  [ "$failed" -eq 100 ] && break
  sleep 0.2
done
list="$url/v2/et/service_instances?limit=100"
declare -A pages=(
  [unfiltered]="$list"
  [service+failed]="$list&service_id=bench-svc&state=failed"
  [plan-1+failed]="$list&plan_id=plan-1&state=failed"
  [plan-3+service+failed]="$list&plan_id=plan-3&service_id=bench-svc&state=failed"
)
order=(unfiltered service+failed plan-1+failed plan-3+service+failed)
mkdir -p "$BENCH_TMP/www"
for name in "${order[@]}"; do
  curl -fsS "${OSB_HDR[@]}" "${pages[$name]}" >"$BENCH_TMP/www/$name.json"
done
shown() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["instances"]))' "$1"; }
[ "$(shown "$BENCH_TMP/www/service+failed.json")" -eq 100 ] || { echo "the failed provisions are not listed" >&2; exit 1; }

serve_static "$BENCH_TMP/www" unfiltered.json

unfiltered_ms=$(median_ms "${pages[unfiltered]}")
{
  echo "bench/filters.sh  $(date -u +%FT%TZ)  $PROVISIONED + 100 failed instances, embedded store, dummy (sync; the failures asynchronous)"
  printf '%-26s %7s %10s %12s %14s %8s\n' page shown "esm (ms)" "nginx (ms)" "vs unfiltered" "vs nginx"
  for name in "${order[@]}"; do
    ms=$([ "$name" = unfiltered ] && echo "$unfiltered_ms" || median_ms "${pages[$name]}")
    base=$(median_ms "$NGINX_URL/$name.json")
    printf '%-26s %7s %10s %12s %14s %8s\n' "$name" "$(shown "$BENCH_TMP/www/$name.json")" "$ms" "$base" \
      "$(ratio "$ms" "$unfiltered_ms")" "$(ratio "$ms" "$base")"
  done
} | tee bench/results/filters.txt
