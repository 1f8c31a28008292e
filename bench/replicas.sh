#!/usr/bin/env bash
# Three esm replicas on one MongoDB behind nginx (round-robin), one killed -9 amid the load
# and restarted, under concurrent provision/bind/unbind/deprovision on repeated ids:
# the load and the checks of tests/process/replicas.rs (one driver, not a copy), run in release
# mode and longer, against the same load on one esm without nginx and without a kill,
# in one run; once with synchronous operations, once with asynchronous ones.
# DURATION (seconds per run, default 20), WORKERS (16), INSTANCES (12, 2 bindings each);
# MongoDB: ESM_BENCH_MONGO_URI, or a SecantusDB started here (pip install secantusdb).
# The esm binary is the test build's: release, with the test-support feature, which
# the dummy's call log (how backend calls are counted) needs; `cargo build --release`
# makes the plain one again.
source "$(dirname "$0")/lib.sh"
need nginx nginx-light
duration=${DURATION:-20}; workers=${WORKERS:-16}; instances=${INSTANCES:-12}

# The MongoDB suites are compiled in when the build sees ESM_TEST_MONGO_URI (build.rs);
# a fixed value at build time, so a new server port does not rebuild esm.
binary=$(ESM_TEST_MONGO_URI=set-at-run-time cargo test --release --locked --quiet --test process --no-run \
  --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "process" and m.get("executable"):
        print(m["executable"])')
bench_mongo
report="$BENCH_TMP/report.txt"
figures="$BENCH_TMP/figures.txt"
failed=0

# run MODE BASELINE: one run of the test, its figures appended to $figures and $report.
run() {
  local test="three_replicas_behind_nginx_survive_a_kill_9_with_$1_operations"
  echo "-- $1, $([ "$2" = 1 ] && echo "baseline: 1 esm, direct" || echo "3 esm behind nginx, one killed") (${duration}s)" >&2
  if ! ESM_TEST_MONGO_URI="$MONGO_URI" ESM_REPLICAS_BASELINE="$2" ESM_REPLICAS_REPORT="$report" \
    ESM_REPLICAS_SECONDS="$duration" ESM_REPLICAS_WORKERS="$workers" ESM_REPLICAS_INSTANCES="$instances" \
    "$binary" --exact "replicas::$test" --nocapture --test-threads=1 >"$BENCH_TMP/run.log" 2>&1; then
    failed=1
    grep -v '^ *[0-9]*: \|^ *at ' "$BENCH_TMP/run.log" | tail -20 >&2
  fi
  sed -n '/^== /,/^$/p' "$BENCH_TMP/run.log" >>"$figures"
}
for mode in synchronous asynchronous; do
  run "$mode" 1
  run "$mode" 0
done

val() { grep "^$1=" "$report" | tail -1 | cut -d= -f2-; }
{
  echo "bench/replicas.sh  $(date -u +%FT%TZ)  ${duration}s per run, $workers workers on $instances instances x 2 bindings"
  printf '%-6s %14s %14s %8s %6s %5s %5s %7s %8s %8s %12s %8s %9s\n' mode "ops/s 3+nginx" "ops/s 1 esm" ratio \
    acked lost dup redone "2x made" "in prog" "5xx window" "5xx out" takeovers
  for mode in sync async; do
    r=${mode}_replicas_; b=${mode}_baseline_
    printf '%-6s %14s %14s %8s %6s %5s %5s %7s %8s %8s %12s %8s %9s\n' "$mode" \
      "$(val "${r}operations_per_s")" "$(val "${b}operations_per_s")" \
      "$(ratio "$(val "${r}operations_per_s")" "$(val "${b}operations_per_s")")" \
      "$(val "${r}acknowledged")" "$(val "${r}lost")" "$(val "${r}duplicated")" "$(val "${r}redone_after_kill")" \
      "$(val "${r}created_twice")" "$(val "${r}in_progress")" "$(val "${r}errors_in_window" | tr -d ' ' | sed 's/^$/none/')" \
      "$(val "${r}errors_outside")" "$(val "${r}takeovers")"
  done
  echo "ops/s: provision, deprovision, bind and unbind requests answered per second (polls not counted);"
  echo "the other columns are the 3-replica run's (the baseline's are in the figures below)."
  echo
  cat "$figures"
} | tee bench/results/replicas.txt
exit "$failed"
