#!/usr/bin/env bash
# Schemathesis against a live esm, from the committed openapi/esm.json: every check,
# with auth and the version header, deterministic data. Fails on any finding.
#   tests/fuzz/run.sh [ESM_BINARY]      (default target/release/esm)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/esm}
venv=${SCHEMATHESIS_VENV:-$HOME/.cache/esm-schemathesis}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
check=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ESM_IP=127.0.0.1 ESM_PORT=$port ESM_CHECK_IP=127.0.0.1 ESM_CHECK_PORT=$check ESM_STORE=memory ESM_BACKENDS=dummy \
  ESM_BROKER_USERNAME=fuzz ESM_BROKER_PASSWORD=fuzz-pass RUST_LOG=error "$bin" &
esm=$!
trap 'kill $esm 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/swagger.json" && break; sleep 0.1; done
"$venv/bin/schemathesis" --config-file tests/fuzz/schemathesis.toml run openapi/esm.json \
  --url "http://127.0.0.1:$port" -a fuzz:fuzz-pass -H 'X-Broker-API-Version: 2.17' \
  --checks all --max-examples 50 --generation-deterministic
