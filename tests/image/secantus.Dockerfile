# A MongoDB wire-protocol stand-in for CI's compose test: SecantusDB on the locally
# built Debian base (no registry image can be pulled there). The wheels are fetched
# on the host by build-secantus-image.sh, which trusts the network's certificates.
FROM debian:bookworm-slim
COPY wheels /tmp/wheels
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null \
    && pip3 install --quiet --break-system-packages --no-index --find-links /tmp/wheels secantusdb \
    && rm -rf /var/lib/apt/lists/* /root/.cache /tmp/wheels
EXPOSE 27017
CMD ["python3", "-m", "secantus", "--host", "0.0.0.0", "--port", "27017", "--storage-path", "/data/db", "--sync-on-commit"]
