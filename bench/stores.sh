#!/usr/bin/env bash
# Durable provisioning throughput: esm on the embedded store and on MongoDB against
# esm on the in-memory store, in one run; and the disk's raw fsync rate, measured by
# this script too, as the physical bound of a durable write. Each synchronous dummy
# provision is three durable writes (create; its inventory record; the outcome).
# MongoDB: ESM_BENCH_MONGO_URI, or a SecantusDB started here (pip install secantusdb);
# its bound is the same server's own rate of durable single-document inserts, measured
# here too (pymongo, as many threads as wrk has connections, esm's write concern), so
# the figure says how much of the store's capacity esm uses.
source "$(dirname "$0")/lib.sh"
need wrk wrk
cargo build --release --locked --quiet --bin esm
duration=${DURATION:-10s}; conns=${CONNECTIONS:-32}; threads=${THREADS:-2}
write_provision_lua "$BENCH_TMP/provision.lua"
# A provision slower than wrk's default 2 s timeout is still a provision: counted as an
# error instead, its connection closed, and esm's work on it cancelled halfway.
wrk_args=(-t "$threads" -c "$conns" -d "$duration" --timeout 60s -s "$BENCH_TMP/provision.lua")

bench_mongo
mongo_uri=$MONGO_URI

start_esm mem ESM_STORE=memory
start_esm emb ESM_STORE=embedded
start_esm mongo ESM_STORE=mongodb ESM_MONGO_URI="$mongo_uri" ESM_MONGO_DB="bench_$RANDOM"
for url in "$ESM_URL_mem" "$ESM_URL_emb" "$ESM_URL_mongo"; do register "$url" 'x-esm-dummy: {mode: sync}'; done

mem=$(wrk_rps "${wrk_args[@]}" "$ESM_URL_mem")
emb=$(wrk_rps "${wrk_args[@]}" "$ESM_URL_emb")
mongo=$(wrk_rps "${wrk_args[@]}" "$ESM_URL_mongo")
# The MongoDB server's raw durable insert rate, right after esm's run on it: single
# `{_id, version, json}` inserts with the write concern esm uses (majority, journaled;
# what the URI sets wins, as in esm) and retryable writes (both drivers' default).
mongo_raw=$(python3 - "$mongo_uri" "$duration" "$conns" <<'PY'
import json, sys, threading, time, uuid
from pymongo import MongoClient
from pymongo.uri_parser import parse_uri
uri, duration, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
unit = {"s": 1, "m": 60, "h": 3600}
seconds = float(duration[:-1]) * unit[duration[-1]] if duration[-1] in unit else float(duration)
given = parse_uri(uri)["options"]
concern = {} if "w" in given else {"w": "majority"}
concern |= {} if "journal" in given else {"journal": True}
client = MongoClient(uri, maxPoolSize=threads, **concern)
db = client[f"bench_raw_{uuid.uuid4().hex[:8]}"]
docs = db["docs"]
docs.insert_one({"_id": "warm-up", "version": 1, "json": "{}"})
body = json.dumps({"service_id": "bench-svc", "plan_id": "plan-1", "status": "provisioned", "pad": "x" * 120})
done = [0] * threads
start = time.perf_counter()
stop = start + seconds
def insert(t):
    n = 0
    while time.perf_counter() < stop:
        docs.insert_one({"_id": f"{t}-{n}", "version": 1, "json": body})
        n += 1
    done[t] = n
workers = [threading.Thread(target=insert, args=(t,)) for t in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(f"{sum(done) / (time.perf_counter() - start):.0f}")
client.drop_database(db.name)
PY
)
fsyncs=$(fsync_rate "$BENCH_TMP/emb")
{
  echo "bench/stores.sh  $(date -u +%FT%TZ)  wrk $threads threads, $conns connections, $duration each"
  printf '%-30s %12s %10s\n' "store" "provisions/s" "vs memory"
  printf '%-30s %12s %10s\n' "memory (baseline)" "$mem" "1.00"
  printf '%-30s %12s %10s\n' "embedded (redb, fsync)" "$emb" "$(ratio "$emb" "$mem")"
  printf '%-30s %12s %10s\n' "mongodb" "$mongo" "$(ratio "$mongo" "$mem")"
  echo "disk fsync rate: $fsyncs/s; embedded provisions per fsync: $(ratio "$emb" "$fsyncs") (goal: >= 1.0)"
  echo "mongodb server's own durable single inserts: $mongo_raw/s ($conns threads, esm's write concern, retryable writes)"
  echo "mongodb provisions per raw insert: $(ratio "$mongo" "$mongo_raw") (goal: 0.40 or more)"
} | tee bench/results/stores.txt
