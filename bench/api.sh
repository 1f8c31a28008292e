#!/usr/bin/env bash
# GET /v2/catalog and dummy provisioning through esm, against a bare axum server
# returning the same catalog bytes (examples/catalog_baseline.rs), in one run.
# DURATION (default 10s), CONNECTIONS (32), THREADS (2).
source "$(dirname "$0")/lib.sh"
need wrk wrk
cargo build --release --locked --quiet --bin esm --example catalog_baseline
duration=${DURATION:-10s}; conns=${CONNECTIONS:-32}; threads=${THREADS:-2}

start_esm mem ESM_STORE=memory
register "$ESM_URL_mem" 'x-esm-dummy: {mode: sync}'
curl -fsS -H 'X-Broker-API-Version: 2.17' "$ESM_URL_mem/v2/catalog" >"$BENCH_TMP/catalog.json"
base_port=$(free_port)
"$BENCH_TARGET/release/examples/catalog_baseline" "$base_port" "$BENCH_TMP/catalog.json" &
BENCH_PIDS+=($!)
base="http://127.0.0.1:$base_port"
wait_http "$base/v2/catalog"
write_provision_lua "$BENCH_TMP/provision.lua"

wrk_args=(-t "$threads" -c "$conns" -d "$duration")
cat_esm=$(wrk_rps "${wrk_args[@]}" -H 'X-Broker-API-Version: 2.17' "$ESM_URL_mem/v2/catalog")
cat_base=$(wrk_rps "${wrk_args[@]}" "$base/v2/catalog")
prov_esm=$(wrk_rps "${wrk_args[@]}" -s "$BENCH_TMP/provision.lua" "$ESM_URL_mem")
prov_base=$(wrk_rps "${wrk_args[@]}" -s "$BENCH_TMP/provision.lua" "$base")

{
  echo "bench/api.sh  $(date -u +%FT%TZ)  wrk $threads threads, $conns connections, $duration each"
  printf '%-34s %12s %12s %8s\n' scenario "esm req/s" "base req/s" "esm/base"
  printf '%-34s %12s %12s %8s\n' "GET /v2/catalog" "$cat_esm" "$cat_base" "$(ratio "$cat_esm" "$cat_base")"
  printf '%-34s %12s %12s %8s\n' "PUT provision (dummy, sync, memory)" "$prov_esm" "$prov_base" "$(ratio "$prov_esm" "$prov_base")"
} | tee bench/results/api.txt
