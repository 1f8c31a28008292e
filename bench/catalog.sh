#!/usr/bin/env bash
# GET /v2/catalog through esm against nginx serving the same bytes as a static file,
# side by side in one run: the goal is esm at 0.8x nginx or better.
#
# esm runs as it ships (embedded store, the default), once open and once with basic
# auth; nginx (Debian's) gets as many worker processes as esm has runtime workers (one
# per core), no access log, and keep-alive without a request cap, as esm has. wrk
# sends the same request to both. Rounds alternate esm and nginx; the median round
# is the result. Each server's CPU time per request (user + system, from /proc) is
# printed too: unlike req/s it hardly moves when other work shares the machine.
# DURATION (default 6s), CONNECTIONS (32), THREADS (2), ROUNDS (5);
# ESM_BIN measures that binary instead of building one.
source "$(dirname "$0")/lib.sh"
need wrk wrk
need nginx nginx
build_esm
duration=${DURATION:-6s}; conns=${CONNECTIONS:-32}; threads=${THREADS:-2}; rounds=${ROUNDS:-5}
workers=$(nproc)

start_esm open
pid_open=${BENCH_PIDS[-1]}
start_esm auth ESM_BROKER_USERNAME=bench ESM_BROKER_PASSWORD=bench-secret
pid_auth=${BENCH_PIDS[-1]}
for url in "$ESM_URL_open" "$ESM_URL_auth"; do
  curl -fsS -o /dev/null -X PUT "$url/v2/et/catalog" -u bench:bench-secret -H 'X-Broker-API-Version: 2.17' \
    -H 'Content-Type: application/json' -d '{
    "id": "bench-svc", "name": "bench", "description": "a benchmark service", "bindable": true, "tags": ["bench"],
    "plans": [{"id": "plan-1", "name": "small", "description": "small plan", "free": true},
              {"id": "plan-2", "name": "medium", "description": "medium plan", "free": false},
              {"id": "plan-3", "name": "large", "description": "large plan", "free": false}]}'
done

# nginx serves esm's own answer; its workers (an unprivileged user when started as
# root) must be able to read it.
mkdir -p "$BENCH_TMP/www/v2" "$BENCH_TMP/nginx"
curl -fsS -H 'X-Broker-API-Version: 2.17' "$ESM_URL_open/v2/catalog" >"$BENCH_TMP/www/v2/catalog"
chmod 711 "$BENCH_TMP"; chmod -R a+rX "$BENCH_TMP/www"
nginx_port=$(free_port)
cat >"$BENCH_TMP/nginx.conf" <<CONF
worker_processes $workers;
daemon off;
pid $BENCH_TMP/nginx.pid;
error_log $BENCH_TMP/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/json;
  # A file this small goes out faster from a buffer (one writev) than with sendfile
  # (a writev for the head, then sendfile): measured here, this is nginx at its best.
  sendfile off;
  tcp_nodelay on;
  open_file_cache max=16 inactive=60s;
  open_file_cache_valid 60s;
  keepalive_requests 1000000;
  client_body_temp_path $BENCH_TMP/nginx/body;
  proxy_temp_path $BENCH_TMP/nginx/proxy;
  fastcgi_temp_path $BENCH_TMP/nginx/fastcgi;
  uwsgi_temp_path $BENCH_TMP/nginx/uwsgi;
  scgi_temp_path $BENCH_TMP/nginx/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    root $BENCH_TMP/www;
  }
}
CONF
nginx -p "$BENCH_TMP/nginx" -e "$BENCH_TMP/nginx-error.log" -c "$BENCH_TMP/nginx.conf" &
BENCH_PIDS+=($!)
nginx_url="http://127.0.0.1:$nginx_port"
wait_http "$nginx_url/v2/catalog"
cmp -s <(curl -fsS "$nginx_url/v2/catalog") <(curl -fsS -H 'X-Broker-API-Version: 2.17' "$ESM_URL_open/v2/catalog") ||
  { echo "nginx and esm do not serve the same bytes" >&2; exit 1; }

nginx_workers=$(pgrep -P "$(cat "$BENCH_TMP/nginx.pid")" | tr '\n' ' ')

auth="Authorization: Basic $(printf bench:bench-secret | base64)"
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # PIDS: user + system clock ticks so far
  for pid in "$@"; do awk '{print $14 + $15}' "/proc/$pid/stat"; done | awk '{s += $1} END {print s}'
}
measure() { # "PIDS" URL [wrk args...]: req/s and the servers' CPU microseconds per request
  local pids=$1 url=$2 out before after; shift 2
  wrk -t "$threads" -c "$conns" -d 2s -H 'X-Broker-API-Version: 2.17' "$@" "$url" >/dev/null
  # shellcheck disable=SC2086
  before=$(cpu_ticks $pids)
  out=$(wrk -t "$threads" -c "$conns" -d "$duration" -H 'X-Broker-API-Version: 2.17' "$@" "$url" 2>&1)
  # shellcheck disable=SC2086
  after=$(cpu_ticks $pids)
  if grep -q "Non-2xx or 3xx responses" <<<"$out"; then
    echo "$out" >&2; echo "wrk saw error answers: the benchmark would measure errors" >&2; return 1
  fi
  awk -v b="$before" -v a="$after" -v hz="$clk_tck" \
    '/requests in/ {n = $1} /Requests\/sec/ {r = $2} END {printf "%s %.2f\n", r, (a - b) / hz / n * 1e6}' <<<"$out"
}

results=()
for round in $(seq 1 "$rounds"); do
  read -r open open_cpu < <(measure "$pid_open" "$ESM_URL_open/v2/catalog")
  read -r nginx nginx_cpu < <(measure "$nginx_workers" "$nginx_url/v2/catalog")
  read -r authed authed_cpu < <(measure "$pid_auth" "$ESM_URL_auth/v2/catalog" -H "$auth")
  results+=("$(ratio "$open" "$nginx") $round $open $nginx $authed $open_cpu $nginx_cpu $authed_cpu")
done
median=$(printf '%s\n' "${results[@]}" | sort -n | sed -n "$(((rounds + 1) / 2))p")
read -r _ _ open nginx authed open_cpu nginx_cpu authed_cpu <<<"$median"

{
  echo "bench/catalog.sh  $(date -u +%FT%TZ)  wrk $threads threads, $conns connections, $duration each;" \
    "esm and nginx with $workers workers; median of $rounds rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-28s %10s %12s %10s %12s %14s\n' scenario "esm req/s" "nginx req/s" "esm/nginx" "esm CPU/req" "nginx CPU/req"
  printf '%-28s %10s %12s %10s %10s us %11s us\n' "GET /v2/catalog" "$open" "$nginx" \
    "$(ratio "$open" "$nginx")" "$open_cpu" "$nginx_cpu"
  printf '%-28s %10s %12s %10s %10s us %11s us\n' "GET /v2/catalog, basic auth" "$authed" "$nginx" \
    "$(ratio "$authed" "$nginx")" "$authed_cpu" "$nginx_cpu"
  echo "rounds (esm/nginx, round, esm, nginx, esm with auth req/s; then CPU us/req of each):"
  printf '  %s\n' "${results[@]}"
} | tee bench/results/catalog.txt
