# mariadb: Debian's MariaDB server (10.11, bookworm) for the users table. The project's own image
# rather than the official one, so the accounts are exactly the two users-svc needs (see
# mariadb-init.sh): the migration account (DDL on the database, used once by `users-svc migrate`)
# and the runtime account (SELECT and INSERT on tb_users, nothing else).
#
#   docker build -f deploy/docker/mariadb.Dockerfile -t meiduo/mariadb .
#
# Data in /var/lib/mysql (a volume); runs as Debian's `mysql` user; root has no password and no
# network login (unix_socket only, as Debian installs it).

ARG RUNTIME_IMAGE=debian:bookworm-slim
FROM ${RUNTIME_IMAGE}

# policy-rc.d keeps the postinst from starting a server in the build; apt's lists and caches are
# removed in the same layer. The Debian package's datadir is dropped: the first start creates one.
# The mysql user gets a fixed uid first (the package keeps an existing one), so USER is numeric:
# Kubernetes' runAsNonRoot can only verify a numeric user.
RUN groupadd --system --gid 999 mysql \
    && useradd --system --uid 999 --gid mysql --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mysql \
    && printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends mariadb-server \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
       /usr/sbin/policy-rc.d /var/lib/mysql/* \
    && mkdir -p /run/mysqld /var/lib/mysql \
    && chown mysql:mysql /run/mysqld /var/lib/mysql
COPY --chmod=0755 deploy/docker/mariadb-init.sh /usr/local/bin/mariadb-start

USER 999:999
VOLUME /var/lib/mysql
EXPOSE 3306
# Healthy = the real server accepts connections on its socket (the first-start initialisation
# runs on another socket, so it is not mistaken for ready). `ping` logs in as the OS user over
# unix_socket; no password is involved.
HEALTHCHECK --interval=1s --timeout=2s --start-period=60s --retries=3 \
    CMD ["mariadb-admin", "--socket=/run/mysqld/mysqld.sock", "ping", "--silent"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mariadb-start"]
