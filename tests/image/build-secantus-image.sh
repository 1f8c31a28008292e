#!/usr/bin/env bash
# Builds esm-test/secantus:latest (see secantus.Dockerfile); needs debian:bookworm-slim
# (build-base-image.sh).
set -euo pipefail
cd "$(dirname "$0")"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp secantus.Dockerfile "$context/Dockerfile"
python3 -m pip download --quiet --disable-pip-version-check --dest "$context/wheels" \
  --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform any secantusdb
docker build --network host -q -t esm-test/secantus:latest "$context" >/dev/null
echo "built esm-test/secantus:latest"
