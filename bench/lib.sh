# Shared by the bench scripts: building, starting esm, registering a service, wrk.
# Numbers are only compared within one run (ratios): the machines are noisy.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_TMP=$(mktemp -d)
BENCH_PIDS=()
bench_cleanup() {
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
mkdir -p bench/results
# Where cargo puts the release build (CARGO_TARGET_DIR, when set, as cargo reads it),
# and the esm binary measured: ESM_BIN, or that build's.
BENCH_TARGET=${CARGO_TARGET_DIR:-target}
ESM_BIN_GIVEN=${ESM_BIN:+yes}
ESM_BIN=${ESM_BIN:-$BENCH_TARGET/release/esm}
# The version header every /v2 request of a bench sends.
OSB_HDR=(-H 'X-Broker-API-Version: 2.17')

build_esm() { # the release build measured, unless ESM_BIN names one
  [ -n "$ESM_BIN_GIVEN" ] || cargo build --release --locked --quiet --bin esm
}

need() { # command package
  command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url: until it answers 2xx (or 401: an esm started with credentials)
  local code
  for _ in $(seq 1 1000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Broker-API-Version: 2.17' "$1" || true)
    [[ $code == 2?? || $code == 401 ]] && return 0
    sleep 0.02
  done
  echo "nothing answers at $1" >&2; return 1
}

# start_esm NAME [ENV=VALUE ...]: starts $ESM_BIN on free ports; sets
# ESM_URL_<NAME>; extra arguments are environment settings.
start_esm() {
  local name=$1; shift
  local port check
  port=$(free_port); check=$(free_port)
  env ESM_IP=127.0.0.1 ESM_CHECK_IP=127.0.0.1 ESM_PORT="$port" ESM_CHECK_PORT="$check" RUST_LOG=warn \
    ESM_DATA_DIR="$BENCH_TMP/$name" ESM_BACKENDS=dummy "$@" "$ESM_BIN" >"$BENCH_TMP/$name.log" 2>&1 &
  BENCH_PIDS+=($!)
  printf -v "ESM_URL_$name" '%s' "http://127.0.0.1:$port"
  printf -v "ESM_OPS_URL_$name" '%s' "http://127.0.0.1:$check"
  wait_http "http://127.0.0.1:$port/v2/catalog"
}

# register URL MANIFEST_CONTENT [TYPE]: a service with three plans and a manifest
# (dummy unless TYPE says otherwise) on plan-1.
register() {
  local url=$1 content=$2 type=${3:-dummy}
  curl -fsS -o /dev/null -X PUT "$url/v2/et/catalog" -H 'X-Broker-API-Version: 2.17' -H 'Content-Type: application/json' -d '{
    "id": "bench-svc", "name": "bench", "description": "a benchmark service", "bindable": true, "tags": ["bench"],
    "plans": [{"id": "plan-1", "name": "small", "description": "small plan", "free": true},
              {"id": "plan-2", "name": "medium", "description": "medium plan", "free": false},
              {"id": "plan-3", "name": "large", "description": "large plan", "free": false}]}'
  python3 - "$url" "$content" "$type" <<'PY'
import json, sys, urllib.request
url, content, kind = sys.argv[1], sys.argv[2], sys.argv[3]
body = json.dumps({"service_id": "bench-svc", "plan_id": "plan-1", "manifest_type": kind, "manifest_content": content}).encode()
req = urllib.request.Request(url + "/v2/et/manifest/bench-manifest", data=body, method="PUT",
    headers={"X-Broker-API-Version": "2.17", "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY
}

# The wrk script for provisioning: unique ids from a per-thread counter (every wrk
# thread starts with the same random seed, so math.random would repeat ids), named
# PREFIX-<thread>-<n> with n zero-padded. With PER_THREAD, each thread provisions that
# many, then reads the catalog until wrk is stopped.
write_provision_lua() { # file [prefix] [per_thread]
  cat >"$1" <<LUA
local prefix, per_thread = "${2:-bench}", ${3:-math.huge}
local thread_counter = 0
function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("tid", thread_counter)
end
local n = 0
request = function()
  n = n + 1
  if n > per_thread then
    return wrk.format("GET", "/v2/catalog", {["X-Broker-API-Version"] = "2.17"})
  end
  local body = '{"service_id":"bench-svc","plan_id":"plan-1","organization_guid":"o","space_guid":"s"}'
  return wrk.format("PUT", string.format("/v2/service_instances/%s-%d-%07d", prefix, tid, n),
    {["X-Broker-API-Version"] = "2.17", ["Content-Type"] = "application/json"}, body)
end
LUA
}

# provision_many URL COUNT PREFIX THREADS CONNECTIONS: provisions at least COUNT
# instances PREFIX-<thread>-<n> (n from 1 to COUNT/THREADS, rounded up) with wrk, which
# runs until every thread's last id exists (each thread sends its ids in order, so by
# then every provision has been sent). Sets PER_THREAD and PROVISIONED.
provision_many() {
  local url=$1 count=$2 prefix=$3 threads=$4 conns=$5 wrk_pid t
  PER_THREAD=$(((count + threads - 1) / threads))
  PROVISIONED=$((threads * PER_THREAD))
  write_provision_lua "$BENCH_TMP/provision.lua" "$prefix" "$PER_THREAD"
  wrk -t "$threads" -c "$conns" -d 1h -s "$BENCH_TMP/provision.lua" "$url" >"$BENCH_TMP/provision.txt" 2>&1 &
  wrk_pid=$!
  for t in $(seq 1 "$threads"); do
    until curl -fs -o /dev/null -H 'X-Broker-API-Version: 2.17' "$url/v2/service_instances/$(printf '%s-%d-%07d' "$prefix" "$t" "$PER_THREAD")"; do
      kill -0 "$wrk_pid" 2>/dev/null || { cat "$BENCH_TMP/provision.txt"; echo "wrk stopped early" >&2; return 1; }
      sleep 0.2
    done
  done
  kill -INT "$wrk_pid"; wait "$wrk_pid" || true
}

# wrk_rps URL [wrk args...]: requests per second; fails on any non-2xx answer.
wrk_rps() {
  local out
  out=$(wrk "$@" 2>&1)
  if grep -q "Non-2xx or 3xx responses" <<<"$out"; then
    echo "$out" >&2; echo "wrk saw error answers: the benchmark would measure errors" >&2; return 1
  fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}

# bench_mongo: sets MONGO_URI to ESM_BENCH_MONGO_URI, or to a SecantusDB started for
# this run (pip install secantusdb), stopped with the bench.
bench_mongo() {
  MONGO_URI=${ESM_BENCH_MONGO_URI:-}
  [ -n "$MONGO_URI" ] && return 0
  local mport
  mport=$(free_port)
  mkdir -p "$BENCH_TMP/mongo"
  python3 -m secantus --host 127.0.0.1 --port "$mport" --storage-path "$BENCH_TMP/mongo" --sync-on-commit \
    >"$BENCH_TMP/secantus.log" 2>&1 &
  BENCH_PIDS+=($!)
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.2; done
  MONGO_URI="mongodb://127.0.0.1:$mport/?directConnection=true"
}

# median_ms URL: the median latency in ms of GETs over one connection for
# LATENCY_DURATION (5s), with the version header (the mean is skewed by whatever else
# the machine does).
median_ms() {
  wrk -t 1 -c 1 -d "${LATENCY_DURATION:-5s}" --latency -H 'X-Broker-API-Version: 2.17' "$1" | awk '$1 == "50%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; printf "%.3f", v}'
}

# serve_static DIR FILE: nginx serving DIR on loopback (the floor one HTTP round trip
# costs here), once FILE answers; sets NGINX_URL.
serve_static() {
  local port
  port=$(free_port)
  # nginx's workers drop root: they must be able to read the files.
  chmod 755 "$BENCH_TMP" "$1"; chmod 644 "$1"/*
  cat >"$BENCH_TMP/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $BENCH_TMP/nginx.pid;
error_log $BENCH_TMP/nginx.err;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $BENCH_TMP/nginx-body;
  default_type application/json;
  server { listen 127.0.0.1:$port; root $1; }
}
NGINX
  nginx -c "$BENCH_TMP/nginx.conf" &
  BENCH_PIDS+=($!)
  NGINX_URL="http://127.0.0.1:$port"
  wait_http "$NGINX_URL/$2"
}

ratio() { python3 -c "print(f'{float($1)/float($2):.2f}')"; }

# The two-container docker-compose manifest of the Docker benches: a web server with an
# ephemeral published port, and a worker that starts after it.
two_containers() { # image
  cat <<YAML
services:
  web:
    image: $1
    command: [httpd, -f, -p, '8080', -h, /www]
    ports: ['8080']
  worker:
    image: $1
    command: [sleep, '3600']
    depends_on: [web]
YAML
}

# fsync_rate DIR: the disk's fsync rate in DIR (the embedded store's own directory):
# write 4 KiB, fsync, repeat for 3 s; per second.
fsync_rate() {
  python3 - "$1" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
block, n, start = b"x" * 4096, 0, time.perf_counter()
while time.perf_counter() - start < 3:
    os.pwrite(fd, block, 0); os.fsync(fd); n += 1
print(f"{n / (time.perf_counter() - start):.0f}")
os.close(fd); os.unlink(path)
PY
}
