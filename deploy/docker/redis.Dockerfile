# redis: Debian's Redis server (7.0, bookworm) for verify codes, limits and the SMS queue.
#
#   docker build -f deploy/docker/redis.Dockerfile -t meiduo/redis .
#
# REDIS_PASSWORD is required (redis-start.sh); data (append-only file) in /data, a volume.
# Runs as Debian's `redis` user.

ARG RUNTIME_IMAGE=debian:bookworm-slim
FROM ${RUNTIME_IMAGE}

# The redis user gets a fixed uid first (the package keeps an existing one), so USER is numeric:
# Kubernetes' runAsNonRoot can only verify a numeric user.
RUN groupadd --system --gid 998 redis \
    && useradd --system --uid 998 --gid redis --no-create-home --home-dir /var/lib/redis \
       --shell /usr/sbin/nologin redis \
    && printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
       /usr/sbin/policy-rc.d \
    && mkdir -p /data && chown redis:redis /data
COPY --chmod=0755 deploy/docker/redis-start.sh /usr/local/bin/redis-start

USER 998:998
WORKDIR /data
VOLUME /data
EXPOSE 6379
# PONG to an authenticated PING (REDISCLI_AUTH keeps the password off the command line).
HEALTHCHECK --interval=1s --timeout=2s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "[ \"$(REDISCLI_AUTH=\"$REDIS_PASSWORD\" redis-cli ping)\" = PONG ]"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/redis-start"]
