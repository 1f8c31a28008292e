#!/usr/bin/env bash
# The provisioning rate as instances grow: one esm on STORE (memory; or embedded),
# synchronous dummy provisions with wrk for DURATION (8s) at each of STEPS instances
# (0 20000 100000: the store is first filled up to that many with provision_many, then
# measured). Goals: memory >= 10,000 provisions/s, flat from 0 to 100,000 instances;
# embedded >= 1.0 provision per fsync of the disk (measured here, in the store's own
# directory, after each step), flat within 20 %. The measured runs add instances too:
# the figure says how many the store held before each.
# STORE, STEPS, DURATION, CONNECTIONS (32), THREADS (2).
source "$(dirname "$0")/lib.sh"
need wrk wrk
build_esm
duration=${DURATION:-8s}; conns=${CONNECTIONS:-32}; threads=${THREADS:-2}

store=${STORE:-memory}
start_esm mem ESM_STORE="$store"
register "$ESM_URL_mem" 'x-esm-dummy: {mode: sync}'

held=0; filled=0; rows=()
for step in ${STEPS:-0 20000 100000}; do
  if ((step > held)); then
    provision_many "$ESM_URL_mem" $((step - held)) "fill$step" "$threads" "$conns"
    filled=$((filled + PROVISIONED)); held=$((held + PROVISIONED))
  fi
  write_provision_lua "$BENCH_TMP/measure.lua" "run$step"
  out=$(wrk -t "$threads" -c "$conns" -d "$duration" -s "$BENCH_TMP/measure.lua" "$ESM_URL_mem" 2>&1)
  if grep -q "Non-2xx or 3xx responses" <<<"$out"; then
    echo "$out" >&2; echo "wrk saw error answers: the benchmark would measure errors" >&2; exit 1
  fi
  rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  # The disk bounds a durable store only; the memory store has no directory.
  fsyncs=-; per=-
  [[ $store == memory ]] || { fsyncs=$(fsync_rate "$BENCH_TMP/mem"); per=$(ratio "$rate" "$fsyncs"); }
  rows+=("$(printf '%-24s %12s %12s %12s' "$held" "$rate" "$fsyncs" "$per")")
  held=$((held + $(awk '/requests in/ {print $1}' <<<"$out")))
done
{
  echo "bench/growth.sh  $(date -u +%FT%TZ)  store $store, wrk $threads threads, $conns connections, $duration each"
  printf '%-24s %12s %12s %12s\n' "instances held before" "provisions/s" "fsyncs/s" "per fsync"
  printf '%s\n' "${rows[@]}"
  echo "filled with provision_many: $filled; held at the end: $held"
} | tee "bench/results/growth-$store.txt"
