#!/usr/bin/env bash
# Provision latency of a two-container manifest on the docker-compose backend, cold
# (containers created, started and waited for within the request) against warm (handed
# out from a pool of members deployed ahead), in one run: COUNT (default 20) of each,
# one at a time, timed by curl from request to answer. The pool holds COUNT members,
# so every warm provision finds one. Warm is measured twice: back to back (the burst
# is over before the keeper's next round refills it), and paced PACE_MS apart (default
# 300) so the refill deploys containers on the engine between and during the claims,
# as it would in service. Needs a running Docker engine and the test image
# (tests/docker/build-test-images.sh). Goals: warm p99 <= 10 ms, >= 50x faster than cold.
#
# `bench/pools.sh idle`: the CPU an idle esm (dummy backend, embedded store) spends with
# no pools, then with POOLS (default 800) empty pools (size 0), then with the same
# pools after a restart, each over IDLE_SECONDS (default 30), from the utime + stime of
# /proc/<pid>/stat. The catalog is the same throughout (POOLS plans with a manifest
# each), so only the pools differ. Goal: the pools cost within 1 % of a core.
source "$(dirname "$0")/lib.sh"
build_esm

if [ "${1:-}" = idle ]; then
  pools=${POOLS:-800}
  seconds=${IDLE_SECONDS:-30}
  # A fixed port pair and data dir, so the restart finds the same store.
  port=$(free_port); check=$(free_port)
  run_esm() {
    env ESM_IP=127.0.0.1 ESM_CHECK_IP=127.0.0.1 ESM_PORT="$port" ESM_CHECK_PORT="$check" RUST_LOG=warn \
      ESM_DATA_DIR="$BENCH_TMP/idle" ESM_STORE=embedded ESM_BACKENDS=dummy ESM_MAX_POOLS="$pools" \
      "$ESM_BIN" >>"$BENCH_TMP/idle.log" 2>&1 &
    BENCH_PIDS+=($!)
    esm_pid=$!
    wait_http "http://127.0.0.1:$port/v2/catalog"
  }
  cpu_percent() { # pid seconds: the share of one core it used meanwhile
    local before after
    before=$(awk '{print $14 + $15}' "/proc/$1/stat")
    sleep "$2"
    after=$(awk '{print $14 + $15}' "/proc/$1/stat")
    python3 -c "print(f'{($after - $before) / $(getconf CLK_TCK) / $2 * 100:.2f}')"
  }
  run_esm
  url="http://127.0.0.1:$port"
  # POOLS plans over services of 100 plans each, a dummy manifest per plan.
  python3 - "$url" "$pools" <<'PY'
import json, sys, urllib.request
url, pools = sys.argv[1], int(sys.argv[2])
def put(path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="PUT",
        headers={"X-Broker-API-Version": "2.17", "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
plans = [f"idle-plan-{n}" for n in range(pools)]
for s in range(0, pools, 100):
    put("/v2/et/catalog", {"id": f"idle-svc-{s // 100}", "name": f"idle-{s // 100}", "description": "idle pools",
        "bindable": True, "plans": [{"id": p, "name": p, "description": "a plan"} for p in plans[s:s + 100]]})
for n, p in enumerate(plans):
    put(f"/v2/et/manifest/idle-manifest-{n}", {"service_id": f"idle-svc-{n // 100}", "plan_id": p,
        "manifest_type": "dummy", "manifest_content": "x-esm-dummy: {mode: async}\n"})
PY
  sleep 5 # start-up work (the first liveness and reconcile rounds) out of the way
  none=$(cpu_percent "$esm_pid" "$seconds")
  python3 - "$url" "$pools" <<'PY'
import json, sys, urllib.request
url, pools = sys.argv[1], int(sys.argv[2])
for n in range(pools):
    req = urllib.request.Request(f"{url}/v2/et/pools/idle-plan-{n}", data=b'{"size": 0}', method="PUT",
        headers={"X-Broker-API-Version": "2.17", "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
PY
  sleep 5
  empty=$(cpu_percent "$esm_pid" "$seconds")
  kill "$esm_pid"; wait "$esm_pid" 2>/dev/null || true
  run_esm
  sleep 5
  restarted=$(cpu_percent "$esm_pid" "$seconds")
  listed=$(curl -fsS "$url/v2/et/pools" -H 'X-Broker-API-Version: 2.17' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["pools"]))')
  [ "$listed" = "$pools" ] || { echo "esm lists $listed pools, not $pools" >&2; exit 1; }
  {
    echo "bench/pools.sh idle  $(date -u +%Y-%m-%dT%H:%M:%SZ)  idle esm (dummy, embedded store), $pools plans, ${seconds} s each"
    echo "  no pools:                 $none % of a core"
    echo "  $pools empty pools:          $empty % of a core"
    echo "  the same after a restart: $restarted % of a core"
  } | tee bench/results/pools-idle.txt
  exit 0
fi
count=${COUNT:-20}
image=esm-test/busybox:latest
docker image inspect "$image" >/dev/null
owner="bench-pools-$$"
remove_leftovers() {
  docker rm -f -v $(docker ps -aq --filter "label=esm.owner=$owner") >/dev/null 2>&1 || true
  docker network rm $(docker network ls -q --filter "label=esm.owner=$owner") >/dev/null 2>&1 || true
}
trap 'bench_cleanup; remove_leftovers' EXIT

start_esm pools ESM_STORE=embedded ESM_BACKENDS=docker-compose ESM_PUBLISH_ADDRESS=127.0.0.1 ESM_DOCKER_PULL=never \
  ESM_NAME="$owner" ESM_POOL_DEPLOYS=${POOL_DEPLOYS:-4}
url=$ESM_URL_pools
register "$url" "$(two_containers "$image")" docker-compose
h=(-H 'X-Broker-API-Version: 2.17' -H 'Content-Type: application/json')
body='{"service_id":"bench-svc","plan_id":"plan-1","organization_guid":"o","space_guid":"s"}'

provision_timed() { # id: seconds from request to a 201
  local out
  out=$(curl -sS -o "$BENCH_TMP/answer" -w '%{http_code} %{time_total}' -X PUT "$url/v2/service_instances/$1" "${h[@]}" -d "$body")
  [ "${out%% *}" = 201 ] || { echo "provision $1 answered ${out%% *}: $(cat "$BENCH_TMP/answer")" >&2; exit 1; }
  echo "${out#* }"
}
deprovision() { # retried while a liveness write races it (422 ConcurrencyError)
  for _ in 1 2 3 4 5; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE \
      "$url/v2/service_instances/$1?service_id=bench-svc&plan_id=plan-1" "${h[@]}")
    [ "$code" = 200 ] && return 0
  done
  echo "deprovision $1 answered $code" >&2; return 1
}

cold=()
for i in $(seq 1 "$count"); do
  cold+=("$(provision_timed "cold-$i")")
  deprovision "cold-$i"
done

curl -fsS -o /dev/null -X PUT "$url/v2/et/pools/plan-1" "${h[@]}" -d "{\"size\": $count}"
filled=$(date +%s.%N)
until curl -fsS "$url/v2/et/pools/plan-1" "${h[@]}" | python3 -c "import json,sys; p=json.load(sys.stdin); sys.exit(0 if p['ready'] >= $count else 1)"; do
  sleep 0.2
done
fill=$(python3 -c "import time; print(f'{time.time() - $filled:.1f}')")

wait_full() {
  until curl -fsS "$url/v2/et/pools/plan-1" "${h[@]}" | python3 -c "import json,sys; p=json.load(sys.stdin); sys.exit(0 if p['ready'] >= $count and p['deploying'] == 0 else 1)"; do
    sleep 0.2
  done
}
# Each deployment has a network of its own, and an engine has a few dozen address pools
# for them: handed-out instances are removed as the bench goes, not kept.
warm=()
for i in $(seq 1 "$count"); do
  warm+=("$(provision_timed "warm-$i")")
done
for i in $(seq 1 "$count"); do deprovision "warm-$i"; done
wait_full
paced=()
pace=$(python3 -c "print(${PACE_MS:-300} / 1000)")
for i in $(seq 1 "$count"); do
  paced+=("$(provision_timed "paced-$i")")
  sleep "$pace"
  deprovision "paced-$i"
done
curl -fsS -o /dev/null -X DELETE "$url/v2/et/pools/plan-1" "${h[@]}"

python3 - "$count" "$fill" "${cold[*]}" "${warm[*]}" "${POOL_DEPLOYS:-4}" "${paced[*]}" "${PACE_MS:-300}" <<'PY' | tee bench/results/pools.txt
import statistics, sys, time
count, fill, deploys, pace = sys.argv[1], sys.argv[2], sys.argv[5], sys.argv[7]
cold = sorted(float(x) for x in sys.argv[3].split())
warm = sorted(float(x) for x in sys.argv[4].split())
paced = sorted(float(x) for x in sys.argv[6].split())
def p99(xs):  # nearest rank
    return xs[min(len(xs) - 1, max(0, -(-99 * len(xs) // 100) - 1))]
print(f"bench/pools.sh  {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}  two containers, {count} provisions each, one at a time (ms)")
print(f"{'':16} {'cold':>10} {'warm':>10} {'cold/warm':>10} {'warm paced':>11} {'cold/paced':>11}")
for name, f in (("median", statistics.median), ("p99", p99)):
    c, w, p = f(cold) * 1000, f(warm) * 1000, f(paced) * 1000
    print(f"{name:16} {c:10.1f} {w:10.2f} {c / w:10.0f} {p:11.2f} {c / p:11.0f}")
print("slowest warm (ms):", " ".join(f"{x * 1000:.1f}" for x in warm[-5:]))
print(f"slowest warm paced {pace} ms apart (ms):", " ".join(f"{x * 1000:.1f}" for x in paced[-5:]))
print(f"filling a pool of {count} took {fill} s ({deploys} members deployed at once); claims are refilled at the keeper's next round")
PY
