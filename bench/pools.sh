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
source "$(dirname "$0")/lib.sh"
cargo build --release --locked --quiet --bin esm
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
