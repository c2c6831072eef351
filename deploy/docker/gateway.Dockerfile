# syntax=docker/dockerfile:1
# gateway: nginx in front of the services (docs/http-contract.md §1), serving the register page and
# /openapi.json. The same template as `deploy/dev up` (deploy/nginx/meiduo.conf.template),
# rendered at start by deploy/nginx/render.sh (the one renderer) with envsubst limited to its four
# variables.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t meiduo/gateway .
#
# Runs as the image's unprivileged `nginx` user (uid 101) on port 8080: the master process never
# has root, so the main config (deploy/nginx/nginx.conf) keeps its pid and temp files in /tmp.

ARG NGINX_IMAGE=nginx:stable
FROM ${NGINX_IMAGE}

# The official image's default server (port 80) is replaced by ours; conf.d is written at start
# by the render script, which runs as the nginx user.
RUN rm -f /etc/nginx/conf.d/default.conf \
    && chown nginx:nginx /etc/nginx/conf.d \
    && mkdir -p /tmp/nginx /usr/share/meiduo/web /etc/meiduo \
    && chown nginx:nginx /tmp/nginx
COPY deploy/nginx/nginx.conf /etc/nginx/nginx.conf
COPY deploy/nginx/meiduo.conf.template /etc/meiduo/meiduo.conf.template
COPY --chmod=0755 deploy/nginx/render.sh /docker-entrypoint.d/19-meiduo-render.sh
# The register page and the OpenAPI document (deploy/web/openapi.json is a symlink to it in the
# repository; the image gets the real file).
COPY deploy/web/*.html deploy/web/*.js deploy/web/*.css /usr/share/meiduo/web/
COPY docs/openapi.json /usr/share/meiduo/web/openapi.json

# The template's four variables, and where the renderer finds the template and writes the
# config. Upstreams are compose service names (resolved when nginx starts, which is why compose
# starts the gateway only after both services are healthy).
ENV LISTEN=8080 \
    VERIFICATIONS_UPSTREAM=verifications-svc:8001 \
    USERS_UPSTREAM=users-svc:8002 \
    WEB_ROOT=/usr/share/meiduo/web \
    MEIDUO_TEMPLATE=/etc/meiduo/meiduo.conf.template \
    MEIDUO_CONF_OUT=/etc/nginx/conf.d/meiduo.conf \
    NGINX_ENTRYPOINT_QUIET_LOGS=1

USER nginx
EXPOSE 8080
# nginx's own liveness location; bash /dev/tcp works whether or not the image ships curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /gateway/healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 3 status <&3 && [[ $status == *' 200 '* ]]"]
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
