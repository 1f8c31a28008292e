#!/usr/bin/env bash
# Engines (docs/engines.md). Two measures, each esm on the memory store with dummy
# engines:
# - throughput: synchronous provisions with wrk, placed over 4 engines against placed on
#   1 (goal: no slower), and against no placement rule at all (the feature off: the
#   path that asks the store nothing more than before engines);
# - scale: 100 engines and INSTANCES (100,000) instances placed on them, then the p99
#   latency of one provision at a time, with placement, against the same count of
#   instances provisioned without a rule (the difference is placement's own cost; goal
#   <= 1 ms). Placement ranks by loads read from the instance index (`counts`, at most
#   once a second), never by scanning records.
#   Over HTTP that difference is within wrk's noise on this machine, so the same is also
#   measured in-process (examples/placement.rs: no HTTP, no load generator, 5,000 timed
#   provisions each way), with the time to read every engine's load from the index.
# - evacuation: a drained engine's relocatable instances (EVACUATED, 2,000, each bound
#   once) moved to another, in-process (examples/evacuation.rs), against the rate at
#   which they were provisioned and bound in the same run.
# DURATION (8s), CONNECTIONS (32), THREADS (2), INSTANCES (100000), LATENCY_DURATION (5s),
# EVACUATED (2000).
source "$(dirname "$0")/lib.sh"
need wrk wrk
build_esm
cargo build --release --locked --quiet --example placement --example evacuation
duration=${DURATION:-8s}; conns=${CONNECTIONS:-32}; threads=${THREADS:-2}
instances=${INSTANCES:-100000}

# place URL RULE: plan-1 places by RULE (its metadata.placement, JSON).
place() {
  curl -fsS -o /dev/null -X PUT "$1/v2/et/catalog" "${OSB_HDR[@]}" -H 'Content-Type: application/json' -d '{
    "id": "bench-svc", "name": "bench", "description": "a benchmark service", "bindable": true,
    "plans": [{"id": "plan-1", "name": "small", "description": "small plan", "metadata": {"placement": '"$2"'}}]}'
}

# engines URL COUNT [PREFIX]: COUNT dummy engines PREFIX0.. labelled bench=yes.
engines() {
  local n
  for n in $(seq 0 $(($2 - 1))); do
    curl -fsS -o /dev/null -X PUT "$1/v2/et/engines/${3:-e}$n" "${OSB_HDR[@]}" -H 'Content-Type: application/json' \
      -d '{"backend": "dummy", "labels": {"bench": "yes"}, "capacity": {"instances": 1000000}}'
  done
}

# p99_ms URL PREFIX: the p99 latency in ms of provisions one at a time.
p99_ms() {
  write_provision_lua "$BENCH_TMP/one.lua" "$2"
  wrk -t 1 -c 1 -d "${LATENCY_DURATION:-5s}" --latency -s "$BENCH_TMP/one.lua" "$1" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; printf "%.3f", v}'
}

write_provision_lua "$BENCH_TMP/provision.lua"
wrk_args=(-t "$threads" -c "$conns" -d "$duration")
script='x-esm-dummy: {mode: sync}'

start_esm off ESM_STORE=memory
register "$ESM_URL_off" "$script"
rate_off=$(wrk_rps "${wrk_args[@]}" -s "$BENCH_TMP/provision.lua" "$ESM_URL_off")

start_esm one ESM_STORE=memory
register "$ESM_URL_one" "$script"
place "$ESM_URL_one" '{"requires": {"bench": "yes"}}'
curl -fsS -o /dev/null -X PUT "$ESM_URL_one/v2/et/engines/default" "${OSB_HDR[@]}" -H 'Content-Type: application/json' \
  -d '{"backend": "dummy", "labels": {"bench": "yes"}, "capacity": {"instances": 1000000}}'
rate_one=$(wrk_rps "${wrk_args[@]}" -s "$BENCH_TMP/provision.lua" "$ESM_URL_one")

start_esm four ESM_STORE=memory
register "$ESM_URL_four" "$script"
place "$ESM_URL_four" '{"requires": {"bench": "yes"}}'
engines "$ESM_URL_four" 4
rate_four=$(wrk_rps "${wrk_args[@]}" -s "$BENCH_TMP/provision.lua" "$ESM_URL_four")

start_esm fleet ESM_STORE=memory
register "$ESM_URL_fleet" "$script"
place "$ESM_URL_fleet" '{"requires": {"bench": "yes"}}'
engines "$ESM_URL_fleet" 100
provision_many "$ESM_URL_fleet" "$instances" fill "$threads" "$conns"
p99_fleet=$(p99_ms "$ESM_URL_fleet" one)
on_engines=$(curl -fsS "${OSB_HDR[@]}" "$ESM_URL_fleet/v2/et/engines" | python3 -c 'import json,sys; print(sum(e["instances"] for e in json.load(sys.stdin)["engines"]))')

start_esm flat ESM_STORE=memory
register "$ESM_URL_flat" "$script"
provision_many "$ESM_URL_flat" "$instances" fill "$threads" "$conns"
p99_flat=$(p99_ms "$ESM_URL_flat" one)

{
  echo "bench/engines.sh  $(date -u +%FT%TZ)  memory store, dummy engines, wrk $threads threads, $conns connections, $duration each"
  printf '%-44s %12s %10s\n' scenario "provisions/s" ratio
  printf '%-44s %12s %10s\n' "no placement rule (feature off)" "$rate_off" "1.00"
  printf '%-44s %12s %10s\n' "placed on 1 engine (default, labelled)" "$rate_one" "$(ratio "$rate_one" "$rate_off")"
  printf '%-44s %12s %10s\n' "placed over 4 engines" "$rate_four" "$(ratio "$rate_four" "$rate_off")"
  printf '%-44s %12s\n' "4 engines / 1 engine (goal >= 1.0)" "$(ratio "$rate_four" "$rate_one")"
  echo
  printf '%-44s %12s\n' "instances placed over 100 engines" "$on_engines"
  printf '%-44s %12s\n' "p99 ms, one provision, 100 engines" "$p99_fleet"
  printf '%-44s %12s\n' "p99 ms, one provision, no rule, same count" "$p99_flat"
  printf '%-44s %12s\n' "placement's p99 cost, ms (goal <= 1)" "$(python3 -c "print(f'{$p99_fleet - $p99_flat:.3f}')")"
  echo
  "$BENCH_TARGET/release/examples/placement" 100 "$instances" 5000
  echo
  "$BENCH_TARGET/release/examples/evacuation" "${EVACUATED:-2000}"
} | tee bench/results/engines.txt
