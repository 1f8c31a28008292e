#!/usr/bin/env bash
# Durable provisioning throughput: esm on the embedded store and on MongoDB against
# esm on the in-memory store, in one run; and the disk's raw fsync rate, measured by
# this script too, as the physical bound of a durable write. Each synchronous dummy
# provision is two durable writes (create, then record the outcome).
# MongoDB: ESM_BENCH_MONGO_URI, or a SecantusDB started here (pip install secantusdb).
source "$(dirname "$0")/lib.sh"
need wrk wrk
cargo build --release --locked --quiet --bin esm
duration=${DURATION:-10s}; conns=${CONNECTIONS:-32}; threads=${THREADS:-2}
write_provision_lua "$BENCH_TMP/provision.lua"
wrk_args=(-t "$threads" -c "$conns" -d "$duration" -s "$BENCH_TMP/provision.lua")

bench_mongo
mongo_uri=$MONGO_URI

start_esm mem ESM_STORE=memory
start_esm emb ESM_STORE=embedded
start_esm mongo ESM_STORE=mongodb ESM_MONGO_URI="$mongo_uri" ESM_MONGO_DB="bench_$RANDOM"
for url in "$ESM_URL_mem" "$ESM_URL_emb" "$ESM_URL_mongo"; do register "$url" 'x-esm-dummy: {mode: sync}'; done

mem=$(wrk_rps "${wrk_args[@]}" "$ESM_URL_mem")
emb=$(wrk_rps "${wrk_args[@]}" "$ESM_URL_emb")
mongo=$(wrk_rps "${wrk_args[@]}" "$ESM_URL_mongo")
# The disk's fsync rate in the embedded store's own directory: write 4 KiB, fsync, repeat.
fsyncs=$(python3 - "$BENCH_TMP/emb" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
block, n, start = b"x" * 4096, 0, time.perf_counter()
while time.perf_counter() - start < 3:
    os.pwrite(fd, block, 0); os.fsync(fd); n += 1
print(f"{n / (time.perf_counter() - start):.0f}")
os.close(fd); os.unlink(path)
PY
)
{
  echo "bench/stores.sh  $(date -u +%FT%TZ)  wrk $threads threads, $conns connections, $duration each"
  printf '%-30s %12s %10s\n' "store" "provisions/s" "vs memory"
  printf '%-30s %12s %10s\n' "memory (baseline)" "$mem" "1.00"
  printf '%-30s %12s %10s\n' "embedded (redb, fsync)" "$emb" "$(ratio "$emb" "$mem")"
  printf '%-30s %12s %10s\n' "mongodb" "$mongo" "$(ratio "$mongo" "$mem")"
  echo "disk fsync rate: $fsyncs/s; embedded provisions per fsync: $(ratio "$emb" "$fsyncs") (2 durable writes each)"
} | tee bench/results/stores.txt
