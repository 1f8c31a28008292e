#!/usr/bin/env bash
# Where the provisioning goals meet the machine: esm's CPU time per synchronous dummy
# provision (STORE: memory; or embedded), against its CPU time per catalog read and
# wrk's own per request, in one run. The budget is what one provision may cost for
# `GOAL` provisions/s (10,000) on this machine's cores with wrk on them too: if esm's
# figure is over it, the goal is out of reach however the store performs.
source "$(dirname "$0")/lib.sh"
need wrk wrk
build_esm
duration=${DURATION:-5s}; store=${STORE:-memory}; goal=${GOAL:-10000}
cores=$(nproc)

start_esm s ESM_STORE="$store"
register "$ESM_URL_s" 'x-esm-dummy: {mode: sync}'
esm_pid=${BENCH_PIDS[-1]}
printf 'wrk.headers["X-Broker-API-Version"] = "2.17"\n' >"$BENCH_TMP/get.lua"
write_provision_lua "$BENCH_TMP/provision.lua" "cpu"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# measure SCRIPT PATH: "requests/s esm-µs-per-request wrk-µs-per-request"
measure() {
  local e0 e1 out n w
  e0=$(ticks "$esm_pid")
  # wrk's own CPU time: its rusage, as its parent sees it.
  out=$( { /usr/bin/time -f 'wrk-cpu %U %S' wrk -t 2 -c 32 -d "$duration" -s "$1" "$ESM_URL_s$2"; } 2>&1)
  e1=$(ticks "$esm_pid")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  w=$(awk '/^wrk-cpu/ {print $2 + $3}' <<<"$out")
  python3 -c "
hz = $(getconf CLK_TCK)
print(f\"{float('$(awk '/Requests\/sec/ {print $2}' <<<"$out")'):.0f} {($e1 - $e0) / hz * 1e6 / $n:.1f} {$w * 1e6 / $n:.1f}\")"
}
need /usr/bin/time time
read -r cat_rps cat_esm cat_wrk < <(measure "$BENCH_TMP/get.lua" /v2/catalog)
read -r prov_rps prov_esm prov_wrk < <(measure "$BENCH_TMP/provision.lua" "")
budget=$(python3 -c "print(f'{$cores * 1e6 / $goal - $prov_wrk:.0f}')")
cat <<OUT | tee "bench/results/cpu-$store.txt"
store: $store, $cores cores, wrk 2 threads x 32 connections, $duration each
catalog read:  $cat_rps/s, esm $cat_esm µs CPU, wrk $cat_wrk µs
provision:     $prov_rps/s, esm $prov_esm µs CPU, wrk $prov_wrk µs
provision / catalog read (esm CPU): $(ratio "$prov_esm" "$cat_esm")
budget at $goal/s: $budget µs of esm CPU per provision; esm spends $(ratio "$prov_esm" "$budget")x that
OUT
