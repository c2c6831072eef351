# gateway: nginx in front of the services (docs/http-contract.md §1), serving the register page and
# /openapi.json. The same template as `deploy/dev up` (deploy/nginx/meiduo.conf.template),
# rendered at start by deploy/nginx/render.sh (the one renderer) with envsubst limited to its
# variables, then nginx runs.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t meiduo/gateway .
#
# Debian's nginx-light on Debian slim: the same nginx build `deploy/dev up`, the end-to-end tests
# and deploy/checks use, so what the tests prove is what runs here. Runs as the unprivileged
# `nginx` user (uid 101) on port 8080: the master never has root, so the main config
# (deploy/nginx/nginx.conf) keeps its pid and temp files in /tmp/nginx (a tmpfs under compose's
# read-only root filesystem).

ARG RUNTIME_IMAGE=debian:bookworm-slim
FROM ${RUNTIME_IMAGE}

# Debian's postinst would start nginx and install the default site: policy-rc.d forbids the
# start, the default site is removed; apt's lists and caches are removed in the same layer.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends nginx-light gettext-base \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
       /usr/sbin/policy-rc.d /etc/nginx/sites-enabled /etc/nginx/sites-available /var/www/html \
    && groupadd --system --gid 101 nginx \
    && useradd --system --uid 101 --gid nginx --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin nginx \
    && mkdir -p /usr/share/meiduo/web /etc/meiduo /etc/nginx/conf.d \
    && chown nginx:nginx /etc/nginx/conf.d
COPY deploy/nginx/nginx.conf /etc/nginx/nginx.conf
COPY deploy/nginx/meiduo.conf.template /etc/meiduo/meiduo.conf.template
COPY --chmod=0755 deploy/nginx/render.sh /usr/local/bin/meiduo-render
# The register page and the OpenAPI document (deploy/web/openapi.json is a symlink to it in the
# repository; the image gets the real file).
COPY deploy/web/*.html deploy/web/*.js deploy/web/*.css /usr/share/meiduo/web/
COPY docs/openapi.json /usr/share/meiduo/web/openapi.json

# The template's variables, and where the renderer finds the template and writes the config.
# Upstreams are compose service names (resolved when nginx starts, which is why compose starts
# the gateway only after both services are healthy); requests in flight to each server, then
# 503 + Retry-After: 1 (render.sh's defaults).
ENV LISTEN=8080 \
    VERIFICATIONS_UPSTREAM=verifications-svc:8001 \
    USERS_UPSTREAM=users-svc:8002 \
    WEB_ROOT=/usr/share/meiduo/web \
    VERIFICATIONS_MAX_CONNS=256 \
    USERS_MAX_CONNS=256 \
    REGISTER_MAX_CONNS=256 \
    MEIDUO_TEMPLATE=/etc/meiduo/meiduo.conf.template \
    MEIDUO_CONF_OUT=/etc/nginx/conf.d/meiduo.conf

USER 101:101
EXPOSE 8080
# nginx's own liveness location, over bash /dev/tcp (no curl in the image).
HEALTHCHECK --interval=1s --timeout=2s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /gateway/healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 2 status <&3 && [[ $status == *' 200 '* ]]"]
# SIGQUIT: nginx's graceful shutdown (finish the requests in flight).
STOPSIGNAL SIGQUIT
# Render (conf.d is a tmpfs owned by nginx under compose's read-only root), then exec nginx.
ENTRYPOINT ["sh", "-c", "/usr/local/bin/meiduo-render && exec \"$@\"", "gateway-start"]
CMD ["nginx", "-e", "stderr", "-g", "daemon off;"]
