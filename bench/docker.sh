#!/usr/bin/env bash
# Provision-to-ready and deprovision of a two-container manifest through esm (the
# docker-compose backend, synchronous), against the same two containers started and
# removed directly with the docker CLI, in one run: the engine is the physical bound.
# Needs a running Docker engine and the test image (tests/docker/build-test-images.sh).
# ROUNDS (default 5).
source "$(dirname "$0")/lib.sh"
cargo build --release --locked --quiet --bin esm
rounds=${ROUNDS:-5}
image=esm-test/busybox:latest
docker image inspect "$image" >/dev/null

start_esm dock ESM_STORE=embedded ESM_BACKENDS=docker-compose ESM_PUBLISH_ADDRESS=127.0.0.1 ESM_DOCKER_PULL=never \
  ESM_NAME="bench-$$"
register "$ESM_URL_dock" "$(two_containers "$image")" docker-compose
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
body='{"service_id":"bench-svc","plan_id":"plan-1","organization_guid":"o","space_guid":"s"}'
esm_up=(); esm_down=(); cli_up=(); cli_down=()
for i in $(seq 1 "$rounds"); do
  t0=$(now)
  curl -fsS -o /dev/null -X PUT "$ESM_URL_dock/v2/service_instances/bench-$i" \
    -H 'X-Broker-API-Version: 2.17' -H 'Content-Type: application/json' -d "$body"
  t1=$(now)
  curl -fsS -o /dev/null -X DELETE "$ESM_URL_dock/v2/service_instances/bench-$i?service_id=bench-svc&plan_id=plan-1" \
    -H 'X-Broker-API-Version: 2.17'
  t2=$(now)
  esm_up+=("$(elapsed "$t0" "$t1")"); esm_down+=("$(elapsed "$t1" "$t2")")

  t0=$(now)
  docker network create "cli-$i" >/dev/null
  docker run -d --name "cli-$i-web" --network "cli-$i" -p 127.0.0.1::8080 "$image" httpd -f -p 8080 -h /www >/dev/null
  docker run -d --name "cli-$i-worker" --network "cli-$i" "$image" sleep 3600 >/dev/null
  until [ "$(docker inspect -f '{{.State.Running}}' "cli-$i-web" "cli-$i-worker" | sort -u)" = "true" ]; do sleep 0.05; done
  t1=$(now)
  docker rm -f "cli-$i-web" "cli-$i-worker" >/dev/null
  docker network rm "cli-$i" >/dev/null
  t2=$(now)
  cli_up+=("$(elapsed "$t0" "$t1")"); cli_down+=("$(elapsed "$t1" "$t2")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
up_e=$(median "${esm_up[@]}"); up_c=$(median "${cli_up[@]}")
down_e=$(median "${esm_down[@]}"); down_c=$(median "${cli_down[@]}")
{
  echo "bench/docker.sh  $(date -u +%FT%TZ)  two containers, median of $rounds rounds (seconds)"
  printf '%-22s %10s %12s %10s\n' "" "esm" "docker CLI" "esm/CLI"
  printf '%-22s %10s %12s %10s\n' "provision to ready" "$up_e" "$up_c" "$(ratio "$up_e" "$up_c")"
  printf '%-22s %10s %12s %10s\n' "deprovision" "$down_e" "$down_c" "$(ratio "$down_e" "$down_c")"
  echo "esm's provision includes its readiness rule: every container running, and still running after half as long"
  echo "as its start took (50 ms to 1 s); the CLI's ends when docker inspect first says running."
} | tee bench/results/docker.txt
