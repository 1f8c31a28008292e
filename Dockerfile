# esm's container image.
#
#   docker build -t elastest/esm .
#
# builds esm from source in the official Rust image and copies it into a slim Debian
# runtime. Stages, in the order the classic builder walks them:
#   runtime-base  the runtime: Debian slim, a non-root user, the data volume
#   prebuilt      runtime-base + a binary already built on the host (target/release/esm,
#                 inside the build context: copy it there when CARGO_TARGET_DIR is set);
#                 CI builds this target (`--target prebuilt`), because no registry image
#                 can be pulled there; it stops before the Rust stage, so nothing is pulled
#   build         compiles esm (official Rust image)
#   runtime       the default image: runtime-base + the binary from `build`
# Both finished images are the same apart from where the binary was compiled.

ARG RUNTIME_BASE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-slim-bookworm

FROM ${RUNTIME_BASE} AS runtime-base
# A fixed uid/gid so volume ownership is predictable. To use the Docker backends, mount
# the engine's socket and add the socket's group to the container:
#   docker run -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" elastest/esm
RUN groupadd --system --gid 10001 esm \
    && useradd --system --uid 10001 --gid esm --home-dir /var/lib/esm --shell /usr/sbin/nologin esm \
    && mkdir -p /var/lib/esm && chown esm:esm /var/lib/esm
ENV ESM_DATA_DIR=/var/lib/esm \
    ESM_PORT=8080 \
    ESM_CHECK_PORT=5000 \
    ESM_LOG_FORMAT=json
VOLUME ["/var/lib/esm"]
EXPOSE 8080 5000
USER esm
WORKDIR /var/lib/esm
# `esm health` asks the check port for /health: no curl needed in the image.
HEALTHCHECK --interval=5s --timeout=5s --start-period=5s --retries=3 CMD ["esm", "health"]
ENTRYPOINT ["esm"]

FROM runtime-base AS prebuilt
COPY target/release/esm /usr/local/bin/esm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY examples ./examples
RUN cargo build --release --locked --bin esm

FROM runtime-base AS runtime
COPY --from=build /src/target/release/esm /usr/local/bin/esm
