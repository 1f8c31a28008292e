#!/usr/bin/env bash
# What the size of the catalog costs the requests that read it: one esm with 1
# registered service against one with SERVICES (default 1,000), in one run, both
# with the dummy backend and the store STORE (default embedded, esm's default;
# `memory` leaves out the disk's fsync, so what the catalog costs stands out).
#
# On each: a service `bench-svc` with PLANS (50) plans; on the large one, SERVICES - 1
# more services, each with one plan and its manifest (timed: registrations/s while the
# catalog grows); then a manifest for each of bench-svc's plans (timed: manifest
# registrations/s); then COUNT (200) sequential synchronous provisions on bench-svc,
# in ROUNDS (3) rounds alternating the two esms, each timed from request to answer
# over a kept-alive connection (median and p99 of all rounds). Goal: the large
# catalog's provision latency within 10 % of the small one's.
#
# ESM_BIN measures that binary instead of building one; ESM_BIN_BASE (e.g. a build of
# main) is measured the same way in the same run, for a before/after.
source "$(dirname "$0")/lib.sh"
build_esm
services=${SERVICES:-1000}; plans=${PLANS:-50}; count=${COUNT:-200}; rounds=${ROUNDS:-3}
store=${STORE:-embedded}

cat >"$BENCH_TMP/driver.py" <<'PY'
"""Requests to one esm over one kept-alive connection; see bench/registry.sh."""
import http.client, json, sys, time, urllib.parse

url = urllib.parse.urlparse(sys.argv[2])
conn = http.client.HTTPConnection(url.hostname, url.port)
HEADERS = {"X-Broker-API-Version": "2.17", "Content-Type": "application/json"}

def put(path, body, want=(200, 201)):
    conn.request("PUT", path, json.dumps(body), HEADERS)
    answer = conn.getresponse()
    text = answer.read()
    if answer.status not in want:
        sys.exit(f"PUT {path}: {answer.status} {text[:300]!r}")

def service(sid, plan_ids):
    return {"id": sid, "name": sid, "description": "a benchmark service", "bindable": True,
            "plans": [{"id": p, "name": p, "description": "a plan"} for p in plan_ids]}

def manifest(mid, sid, plan):
    put(f"/v2/et/manifest/{mid}", {"service_id": sid, "plan_id": plan, "manifest_type": "dummy",
                                   "manifest_content": "x-esm-dummy: {mode: sync}\n"}, (201,))

def rate(n, work):
    started = time.perf_counter()
    work()
    return n / (time.perf_counter() - started)

command = sys.argv[1]
if command == "grow":  # URL PLANS FILLERS: registrations (PUTs) per second while it grows
    plans, fillers = int(sys.argv[3]), int(sys.argv[4])
    put("/v2/et/catalog", service("bench-svc", [f"plan-{i}" for i in range(plans)]))
    def grow():
        for n in range(fillers):
            put("/v2/et/catalog", service(f"filler-{n}", [f"filler-{n}-plan"]))
            manifest(f"filler-{n}", f"filler-{n}", f"filler-{n}-plan")
    print(f"{rate(2 * fillers, grow):.1f}" if fillers else "-")
elif command == "manifests":  # URL PLANS: manifest registrations per second
    plans = int(sys.argv[3])
    print(f"{rate(plans, lambda: [manifest(f'bench-{i}', 'bench-svc', f'plan-{i}') for i in range(plans)]):.1f}")
elif command == "provision":  # URL COUNT PREFIX: each provision's latency in ms
    body = {"service_id": "bench-svc", "plan_id": "plan-0", "organization_guid": "o", "space_guid": "s"}
    for n in range(int(sys.argv[3])):
        started = time.perf_counter()
        put(f"/v2/service_instances/{sys.argv[4]}-{n}", body, (201,))
        print(f"{(time.perf_counter() - started) * 1000:.3f}")
PY
drive() { python3 "$BENCH_TMP/driver.py" "$@"; }
stats() { # file: median and p99 in ms
  sort -n "$1" | awk '{v[NR] = $1} END {m = int((NR + 1) / 2); p = int(NR * 0.99 + 0.999); printf "%.2f %.2f\n", v[m], v[p]}'
}

measure() { # label binary: one line of figures
  local label=$1 bin=$2 grow rate_one rate_many round med_one p99_one med_many p99_many
  ESM_BIN=$bin start_esm "${label}_one" ESM_STORE="$store"
  ESM_BIN=$bin start_esm "${label}_many" ESM_STORE="$store"
  local one_url="ESM_URL_${label}_one" many_url="ESM_URL_${label}_many"
  drive grow "${!one_url}" "$plans" 0 >/dev/null
  grow=$(drive grow "${!many_url}" "$plans" $((services - 1)))
  rate_one=$(drive manifests "${!one_url}" "$plans")
  rate_many=$(drive manifests "${!many_url}" "$plans")
  : >"$BENCH_TMP/$label-one.ms"; : >"$BENCH_TMP/$label-many.ms"
  for round in $(seq 1 "$rounds"); do
    drive provision "${!one_url}" "$count" "r$round" >>"$BENCH_TMP/$label-one.ms"
    drive provision "${!many_url}" "$count" "r$round" >>"$BENCH_TMP/$label-many.ms"
  done
  read -r med_one p99_one < <(stats "$BENCH_TMP/$label-one.ms")
  read -r med_many p99_many < <(stats "$BENCH_TMP/$label-many.ms")
  printf '%-6s %9s %9s %9s %9s %9s %9s %10s %10s %10s %12s\n' "$label" "$med_one" "$med_many" \
    "$(ratio "$med_many" "$med_one")" "$p99_one" "$p99_many" "$(ratio "$p99_many" "$p99_one")" \
    "$rate_one" "$rate_many" "$(ratio "$rate_many" "$rate_one")" "$grow"
}

{
  echo "bench/registry.sh  $(date -u +%FT%TZ)  $store store; 1 against $services services; $plans manifests timed;" \
    "$rounds x $count sequential provisions on each; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-6s %9s %9s %9s %9s %9s %9s %10s %10s %10s %12s\n' "esm" "med 1" "med $services" "ratio" \
    "p99 1" "p99 $services" "ratio" "reg/s 1" "reg/s $services" "ratio" "reg/s grow"
  measure this "$ESM_BIN"
  [ -z "${ESM_BIN_BASE:-}" ] || measure base "$ESM_BIN_BASE"
  echo "provision latency in ms (median, p99); manifest registrations/s; reg/s grow: service and manifest"
  echo "PUTs per second while the large catalog grows from 1 to $services services"
} | tee bench/results/registry.txt
