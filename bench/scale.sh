#!/usr/bin/env bash
# esm holding COUNT instances (default 100000) in the embedded store, dummy backend
# (sync): provision rate, resident memory after provisioning / after the full listing /
# after a restart, start time, and the latency of a page of 100, a fetch, the dashboard and the
# catalog, each against nginx serving a static file of the same size on loopback (the
# floor one HTTP round trip costs here); and what a scrape of /metrics costs when it
# counts the instances afresh and when it reuses the counts; and, left idle for
# IDLE_SECONDS with every instance watched (liveness and reconciliation rounds), the
# share of a core it used and its RSS (sampled every 5 s: the peak and the last).
# Goals: RSS <= 200 MB at every point, idle CPU <= 5 % of a core, start <= 1 s, page of
# 100 <= 10 ms, fetch <= 1 ms.
# COUNT, CONNECTIONS (32), THREADS (2), LATENCY_DURATION (5s), IDLE_SECONDS (600).
source "$(dirname "$0")/lib.sh"
need wrk wrk
need nginx nginx
build_esm
count=${COUNT:-100000}; conns=${CONNECTIONS:-32}; threads=${THREADS:-2}

esm_pid() { echo "${BENCH_PIDS[-1]}"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, in clock ticks
now() { date +%s.%N; }

start_esm scale ESM_STORE=embedded
register "$ESM_URL_scale" 'x-esm-dummy: {mode: sync}'
t0=$(now)
provision_many "$ESM_URL_scale" "$count" scale "$threads" "$conns"
t1=$(now)
provisioned=$PROVISIONED
rate=$(python3 -c "print(round($provisioned / ($t1 - $t0)))")
rss_provisioned=$(rss_mb "$(esm_pid)")

t2=$(now)
curl -fsS "${OSB_HDR[@]}" "$ESM_URL_scale/v2/et/service_instances" >"$BENCH_TMP/listing.json"
t3=$(now)
listed_bytes=$(wc -c <"$BENCH_TMP/listing.json")
# What the store holds (a provision cut off when wrk stops may be missing).
listed=$(grep -o '"service_type":' "$BENCH_TMP/listing.json" | wc -l)
rm "$BENCH_TMP/listing.json"
rss_listed=$(rss_mb "$(esm_pid)")

# Idle, still the process that provisioned (the dummy backend lists what it deployed,
# as an engine would; after a restart it lists nothing): only esm's own rounds run.
# The first half includes the first rounds' writes (each instance's first liveness);
# the second half is the steady state.
idle=${IDLE_SECONDS:-600}
ticks_per_s=$(getconf CLK_TCK)
rss_idle_peak=0
ta=$(now); ca=$(cpu_ticks "$(esm_pid)")
half_done=
while :; do
  sleep 5
  rss=$(rss_mb "$(esm_pid)")
  [ "$rss" -gt "$rss_idle_peak" ] && rss_idle_peak=$rss
  elapsed=$(python3 -c "print($(now) - $ta)")
  if [ -z "$half_done" ] && python3 -c "import sys; sys.exit(0 if $elapsed >= $idle / 2 else 1)"; then
    half_done=yes; tm=$(now); cm=$(cpu_ticks "$(esm_pid)")
  fi
  python3 -c "import sys; sys.exit(0 if $elapsed >= $idle else 1)" && break
done
tb=$(now); cb=$(cpu_ticks "$(esm_pid)")
rss_idle_last=$rss
cpu_pct() { python3 -c "print(f'{($2 - $1) / $ticks_per_s / ($4 - $3) * 100:.1f}')"; }
idle_cpu=$(cpu_pct "$ca" "$cb" "$ta" "$tb")
idle_cpu_steady=$(cpu_pct "$cm" "$cb" "$tm" "$tb")

# Restart on the same data: the time from exec to the first answered request.
kill -TERM "$(esm_pid)"; wait "$(esm_pid)" 2>/dev/null || true
t4=$(now)
start_esm scale ESM_STORE=embedded
t5=$(now)
rss_restarted=$(rss_mb "$(esm_pid)")

# Median latency with one connection: a page of 100 from the middle, a fetch, the catalog.
middle=$(curl -fsS "${OSB_HDR[@]}" "$ESM_URL_scale/v2/et/service_instances?limit=1&after=$(python3 -c 'print("c1" + "scale-1-0050000".encode().hex())')" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next"])')
page_url="$ESM_URL_scale/v2/et/service_instances?limit=100&after=$middle"
curl -fsS "${OSB_HDR[@]}" "$page_url" >"$BENCH_TMP/page.json"
curl -fsS "${OSB_HDR[@]}" "$ESM_URL_scale/v2/service_instances/scale-1-0000042" >"$BENCH_TMP/fetch.json"
curl -fsS "${OSB_HDR[@]}" "$ESM_URL_scale/v2/catalog" >"$BENCH_TMP/catalog.json"
page_ms=$(median_ms "$page_url")
fetch_ms=$(median_ms "$ESM_URL_scale/v2/service_instances/scale-1-0000042")
catalog_ms=$(median_ms "$ESM_URL_scale/v2/catalog")
# The dashboard: a page of its instance table from the middle (50 rows), and the overview
# (counts from the index, the newest 1,000 events).
dashboard_url="$ESM_URL_scale/dashboard/instances?after=scale-1-0050000"
curl -fsS "$dashboard_url" >"$BENCH_TMP/dashboard.html"
curl -fsS "$ESM_URL_scale/dashboard" >"$BENCH_TMP/overview.html"
dashboard_ms=$(median_ms "$dashboard_url")
overview_ms=$(median_ms "$ESM_URL_scale/dashboard")
rss_after_reads=$(rss_mb "$(esm_pid)")

# /metrics: the first scrape since the restart counts the instances from the index; the
# scrapes of the next 5 s reuse those counts (the median is over those and a fresh count
# every 5 s).
metrics_url="$ESM_OPS_URL_scale/metrics"
metrics_fresh_ms=$(curl -fsS -o "$BENCH_TMP/metrics.txt" -w '%{time_total}' "$metrics_url" | python3 -c 'import sys; print(f"{float(sys.stdin.read()) * 1000:.1f}")')
counted=$(awk '/^esm_instances\{/ {n += $NF} END {print n + 0}' "$BENCH_TMP/metrics.txt")
[ "$counted" -eq "$listed" ] || { grep '^esm_instances' "$BENCH_TMP/metrics.txt"; echo "/metrics counts $counted instances, the listing has $listed" >&2; exit 1; }
metrics_ms=$(median_ms "$metrics_url")

# nginx serving the same bytes as static files: what a round trip costs on this machine.
mkdir -p "$BENCH_TMP/www"
cp "$BENCH_TMP/page.json" "$BENCH_TMP/fetch.json" "$BENCH_TMP/catalog.json" "$BENCH_TMP/dashboard.html" \
  "$BENCH_TMP/overview.html" "$BENCH_TMP/www/"
serve_static "$BENCH_TMP/www" catalog.json
page_base=$(median_ms "$NGINX_URL/page.json")
fetch_base=$(median_ms "$NGINX_URL/fetch.json")
catalog_base=$(median_ms "$NGINX_URL/catalog.json")
dashboard_base=$(median_ms "$NGINX_URL/dashboard.html")
overview_base=$(median_ms "$NGINX_URL/overview.html")

verdict() { python3 -c "print('ok' if float($1) <= float($2) else 'OVER')"; }
{
  echo "bench/scale.sh  $(date -u +%FT%TZ)  $provisioned instances, embedded store, dummy (sync), wrk $threads threads $conns connections"
  echo "data file: $(du -m "$BENCH_TMP/scale/esm.redb" | cut -f1) MB; full listing: $((listed_bytes / 1048576)) MB in $(python3 -c "print(f'{$t3 - $t2:.1f}')") s"
  printf '%-36s %12s %10s %6s\n' measure value goal ""
  printf '%-36s %12s %10s\n' "provision rate (req/s)" "$rate" "-"
  for row in "RSS after provisioning (MB):$rss_provisioned" "RSS after the full listing (MB):$rss_listed" \
             "RSS idle, peak (MB):$rss_idle_peak" "RSS idle, at the end (MB):$rss_idle_last" \
             "RSS right after restart (MB):$rss_restarted" "RSS after the latency runs (MB):$rss_after_reads"; do
    printf '%-36s %12s %10s %6s\n' "${row%%:*}" "${row##*:}" 200 "$(verdict "${row##*:}" 200)"
  done
  printf '%-36s %12s %10s %6s   over %s s idle\n' "idle CPU (% of a core)" "$idle_cpu" 5 "$(verdict "$idle_cpu" 5)" "$idle"
  printf '%-36s %12s %10s %6s\n' "idle CPU, second half (% of a core)" "$idle_cpu_steady" 5 "$(verdict "$idle_cpu_steady" 5)"
  start_ms=$(python3 -c "print(round(($t5 - $t4) * 1000))")
  printf '%-36s %12s %10s %6s\n' "start, exec to first answer (ms)" "$start_ms" 1000 "$(verdict "$start_ms" 1000)"
  printf '%-36s %12s %10s %6s   nginx %s ms, ratio %s\n' "page of 100 (ms)" "$page_ms" 10 "$(verdict "$page_ms" 10)" "$page_base" "$(ratio "$page_ms" "$page_base")"
  printf '%-36s %12s %10s %6s   nginx %s ms, ratio %s\n' "fetch (ms)" "$fetch_ms" 1 "$(verdict "$fetch_ms" 1)" "$fetch_base" "$(ratio "$fetch_ms" "$fetch_base")"
  printf '%-36s %12s %10s %6s   nginx %s ms, ratio %s\n' "catalog (ms)" "$catalog_ms" "-" "" "$catalog_base" "$(ratio "$catalog_ms" "$catalog_base")"
  printf '%-36s %12s %10s %6s   nginx %s ms, ratio %s\n' "dashboard, 50 rows (ms)" "$dashboard_ms" 10 "$(verdict "$dashboard_ms" 10)" "$dashboard_base" "$(ratio "$dashboard_ms" "$dashboard_base")"
  printf '%-36s %12s %10s %6s   nginx %s ms, ratio %s\n' "dashboard overview (ms)" "$overview_ms" "-" "" "$overview_base" "$(ratio "$overview_ms" "$overview_base")"
  printf '%-36s %12s %10s   %s instances counted, as listed\n' "/metrics, counting afresh (ms)" "$metrics_fresh_ms" "-" "$counted"
  printf '%-36s %12s %10s\n' "/metrics, median (ms)" "$metrics_ms" "-"
} | tee bench/results/scale.txt
