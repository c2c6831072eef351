# syntax=docker/dockerfile:1
# verifications-svc: image captchas and SMS codes (docs/http-contract.md §3, §4)
#
# Build from the repository root (the workspace is the build context):
#   docker build -f deploy/docker/verifications-svc.Dockerfile -t meiduo/verifications-svc .
# or through deploy/compose.yaml. Only the files COPY names are sent to the builder, and
# verifications-svc.Dockerfile.dockerignore keeps target/, .data/ and .git/ out of the context.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- build: the one binary, release profile, with cargo's registry and target dir cached -------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Every workspace member's manifest must exist for cargo to load the workspace, so all members
# are copied; only verifications-svc's dependency graph is compiled.
COPY Cargo.toml Cargo.lock ./
COPY shared shared
COPY harness harness
COPY verifications-svc verifications-svc
COPY users-svc users-svc
COPY sms-worker sms-worker
COPY sms-sandbox sms-sandbox
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p verifications-svc --bin verifications-svc \
    && install -D -m 0755 target/release/verifications-svc /out/verifications-svc

# --- runtime: Debian slim, CA certificates (TLS to real providers), a non-root user ---------------
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 meiduo \
    && useradd --system --uid 10001 --gid meiduo --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin meiduo
COPY --from=build /out/verifications-svc /usr/local/bin/verifications-svc
COPY --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/healthcheck
# Listen on every interface of the container; the port is fixed per service
# (docs/http-contract.md §7).
ENV HOST=0.0.0.0 \
    PORT=8001 \
    RUST_LOG=info \
    LOG_FORMAT=json
USER 10001:10001
EXPOSE 8001
# GET /healthz on $PORT must answer 200 (bash /dev/tcp: no curl in the image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["healthcheck"]
# The binary handles SIGTERM itself: it finishes in-flight work, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/verifications-svc"]
