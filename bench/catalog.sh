#!/usr/bin/env bash
# GET /v2/catalog through esm against nginx serving the same bytes as a static file,
# side by side in one run: the goal is esm at 0.8x nginx or better.
#
# esm runs as it ships (embedded store, the default), once open and once with basic
# auth; nginx (Debian's) gets as many worker processes as esm has runtime workers (one
# per core), no access log, and keep-alive without a request cap, as esm has. wrk
# sends the same request to both. Rounds alternate esm and nginx; the median round is
# the result.
# DURATION (default 10s), CONNECTIONS (32), THREADS (2), ROUNDS (3);
# ESM_BIN measures that binary instead of building one.
source "$(dirname "$0")/lib.sh"
need wrk wrk
need nginx nginx
[ -n "$ESM_BIN_GIVEN" ] || cargo build --release --locked --quiet --bin esm
duration=${DURATION:-10s}; conns=${CONNECTIONS:-32}; threads=${THREADS:-2}; rounds=${ROUNDS:-3}
workers=$(nproc)

start_esm open
start_esm auth ESM_BROKER_USERNAME=bench ESM_BROKER_PASSWORD=bench-secret
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

auth="Authorization: Basic $(printf bench:bench-secret | base64)"
wrk_args=(-t "$threads" -c "$conns" -d "$duration" -H 'X-Broker-API-Version: 2.17')
measure() { # URL [wrk args...]: req/s after a short warm-up
  local url=$1; shift
  wrk -t "$threads" -c "$conns" -d 2s "$@" "$url" >/dev/null
  wrk_rps "${wrk_args[@]}" "$@" "$url"
}

results=()
for round in $(seq 1 "$rounds"); do
  open=$(measure "$ESM_URL_open/v2/catalog")
  nginx=$(measure "$nginx_url/v2/catalog")
  authed=$(measure "$ESM_URL_auth/v2/catalog" -H "$auth")
  results+=("$(ratio "$open" "$nginx") $round $open $nginx $authed")
done
median=$(printf '%s\n' "${results[@]}" | sort -n | sed -n "$(((rounds + 1) / 2))p")
read -r _ _ open nginx authed <<<"$median"

{
  echo "bench/catalog.sh  $(date -u +%FT%TZ)  wrk $threads threads, $conns connections, $duration each;" \
    "esm and nginx with $workers workers; median of $rounds rounds"
  printf '%-30s %12s %12s %10s\n' scenario "esm req/s" "nginx req/s" "esm/nginx"
  printf '%-30s %12s %12s %10s\n' "GET /v2/catalog" "$open" "$nginx" "$(ratio "$open" "$nginx")"
  printf '%-30s %12s %12s %10s\n' "GET /v2/catalog, basic auth" "$authed" "$nginx" "$(ratio "$authed" "$nginx")"
  echo "rounds (esm/nginx, round, esm, nginx, esm with auth):"
  printf '  %s\n' "${results[@]}"
} | tee bench/results/catalog.txt
