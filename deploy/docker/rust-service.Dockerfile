# One image per Rust service, all from this file: verifications-svc, users-svc, sms-worker and
# (development only) sms-sandbox. The binary and its port are build arguments:
#
#   docker build -f deploy/docker/rust-service.Dockerfile --build-arg BIN=users-svc \
#       --build-arg PORT=8002 -t meiduo/users-svc .
#
# or through deploy/compose.yaml (build.args). The build stage does not depend on BIN: it
# compiles every binary of the workspace at once, so building the four images compiles the
# workspace once (the later builds find the stage in the build cache). Cache mounts keep cargo's
# registry and target/ between builds. rust-service.Dockerfile.dockerignore keeps target/,
# .data/, .git/ and the deployment files out of the context, so editing deploy/ or docs/ does not
# invalidate the compiled stage. No `# syntax=` line: the engine's built-in Dockerfile frontend
# (BuildKit, Docker 20.10+) understands RUN --mount and COPY --chmod, and a build never has to
# fetch a frontend image.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- build: every binary of the workspace, release profile ----------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# COPY keeps the context's modification times, and target/ is a cache mount that outlives
# builds: sources older than what the cache compiled last (another branch, an older commit)
# would look fresh to cargo and the image would get a stale binary. Touching them first makes
# cargo rebuild the workspace's own crates whenever this stage runs (the registry crates stay
# cached). The binaries are copied out of the cache mount (it is not part of the image).
RUN --mount=type=cache,id=meiduo-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=meiduo-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=meiduo-target,target=/src/target,sharing=locked \
    find . -path ./target -prune -o -type f -exec touch {} + \
    && cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && for bin in verifications-svc users-svc sms-worker sms-sandbox; do \
         install -m 0755 "target/release/$bin" "/out/$bin" || exit 1; \
       done

# --- runtime: Debian slim, CA certificates (TLS to real providers), a non-root user ---------------
FROM ${RUNTIME_IMAGE}
# apt's lists and caches are removed in the same layer, so they never reach the image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
    && groupadd --system --gid 10001 meiduo \
    && useradd --system --uid 10001 --gid meiduo --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin meiduo
COPY --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/healthcheck
# compose's `preflight` one-shot runs it from the sms-worker image (provider URL checks).
COPY --chmod=0755 deploy/docker/preflight.sh /usr/local/bin/preflight
# Only now the per-image arguments: everything above is shared by the four images.
ARG BIN
ARG PORT
ARG HEALTH_PATH=/readyz
COPY --from=build /out/${BIN} /usr/local/bin/service
# Listen on every interface of the container, on the service's fixed port (docs/http-contract.md §7).
ENV HOST=0.0.0.0 \
    PORT=${PORT} \
    HEALTH_PATH=${HEALTH_PATH} \
    RUST_LOG=info \
    LOG_FORMAT=json
USER 10001:10001
EXPOSE ${PORT}
# GET $HEALTH_PATH on $PORT must answer 200 (bash /dev/tcp: no curl in the image). A short
# interval: compose starts the dependants as soon as a service is healthy, within a second or two.
HEALTHCHECK --interval=1s --timeout=2s --start-period=30s --retries=3 CMD ["healthcheck"]
# The binaries handle SIGTERM themselves: they finish in-flight work, then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/service"]
