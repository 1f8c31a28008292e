#!/usr/bin/env bash
# Change events and liveness at scale, on the embedded store and the dummy backend:
# - SSE fan-out: SUBSCRIBERS (1000) subscribers of one instance's events on loopback,
#   CHANGES (20) liveness changes: delivery latency to all of them (p50/p99 over every
#   delivery, from the report being sent) against the same with one subscriber, and
#   esm's memory per subscriber. Goals: p99 <= 100 ms, <= 64 KB a subscriber.
# - The liveness query with COUNT (100000) instances stored and watched (a round over
#   all of them every ESM_LIVENESS_INTERVAL, 10 s): median and p99 latency with one
#   connection, against nginx serving a file of the same size. Goal: <= 5 ms. Also the
#   CPU esm spends watching them while idle.
source "$(dirname "$0")/lib.sh"
need wrk wrk
need nginx nginx
build_esm
subscribers=${SUBSCRIBERS:-1000}; changes=${CHANGES:-20}; count=${COUNT:-100000}; lat=${LATENCY_DURATION:-5s}
esm_pid() { echo "${BENCH_PIDS[-1]}"; }

# SSE fan-out.
start_esm fanout ESM_STORE=embedded
register "$ESM_URL_fanout" 'x-esm-dummy: {mode: sync, observe: false}'
curl -fsS -o /dev/null -X PUT "$ESM_URL_fanout/v2/service_instances/fan-1" "${OSB_HDR[@]}" -H 'Content-Type: application/json' \
  -d '{"service_id":"bench-svc","plan_id":"plan-1","organization_guid":"o","space_guid":"s"}'
one=$(python3 bench/sse_fanout.py "$ESM_URL_fanout" "$(esm_pid)" fan-1 1 "$changes")
many=$(python3 bench/sse_fanout.py "$ESM_URL_fanout" "$(esm_pid)" fan-1 "$subscribers" "$changes")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# The liveness query among COUNT instances.
start_esm scale ESM_STORE=embedded
register "$ESM_URL_scale" 'x-esm-dummy: {mode: sync}'
provision_many "$ESM_URL_scale" "$count" live 2 32
# Wait for the watch to have seen every instance up (one round writes each once).
probe=$(printf 'live-1-%07d' $((PER_THREAD / 2)))
until curl -fsS "${OSB_HDR[@]}" "$ESM_URL_scale/v2/et/service_instances/$probe/liveness" | grep -q '"status":"up"'; do sleep 1; done
# CPU esm spends watching COUNT idle instances: 30 s of its CPU time.
cpu() { awk '{print $14 + $15}' "/proc/$(esm_pid)/stat"; }
ticks=$(getconf CLK_TCK); c0=$(cpu); sleep 30; c1=$(cpu)
watch_cpu=$(python3 -c "print(round(100 * ($c1 - $c0) / $ticks / 30, 1))")
curl -fsS "${OSB_HDR[@]}" "$ESM_URL_scale/v2/et/service_instances/$probe/liveness" >"$BENCH_TMP/liveness.json"
mkdir -p "$BENCH_TMP/www" && cp "$BENCH_TMP/liveness.json" "$BENCH_TMP/www/liveness.json" && chmod -R 755 "$BENCH_TMP"
nport=$(free_port)
cat >"$BENCH_TMP/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $BENCH_TMP/nginx.pid; error_log $BENCH_TMP/nginx.err;
events { worker_connections 64; }
http { access_log off; server { listen 127.0.0.1:$nport; root $BENCH_TMP/www; } }
NGINX
nginx -c "$BENCH_TMP/nginx.conf" & BENCH_PIDS+=($!)
wait_http "http://127.0.0.1:$nport/liveness.json"
percentile() { # url pct
  wrk -t 1 -c 1 -d "$lat" --latency "${OSB_HDR[@]}" "$1" | awk -v p="$2%" '$1 == p {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; printf "%.3f", v}'
}
q50=$(percentile "$ESM_URL_scale/v2/et/service_instances/$probe/liveness" 50)
q99=$(percentile "$ESM_URL_scale/v2/et/service_instances/$probe/liveness" 99)
n50=$(percentile "http://127.0.0.1:$nport/liveness.json" 50)

echo "SSE fan-out, one liveness change to each subscriber ($changes changes):"
echo "  1 subscriber:        p50 $(field "$one" p50_ms) ms, p99 $(field "$one" p99_ms) ms"
echo "  $subscribers subscribers:  p50 $(field "$many" p50_ms) ms, p99 $(field "$many" p99_ms) ms, max $(field "$many" max_ms) ms  (p99 $(ratio "$(field "$many" p99_ms)" "$(field "$one" p99_ms)")x one subscriber's)"
echo "  memory: $(field "$many" kb_per_subscriber) KB a subscriber (RSS $(field "$many" rss_before_kb) -> $(field "$many" rss_after_kb) KB)"
echo "liveness query, $count instances stored and watched:"
echo "  median $q50 ms, p99 $q99 ms  (median $(ratio "$q50" "$n50")x nginx's $n50 ms for the same bytes)"
echo "  watching $count idle instances: ${watch_cpu}% of a core"
