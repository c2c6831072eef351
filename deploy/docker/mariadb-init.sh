#!/usr/bin/env bash
# MariaDB container entrypoint (deploy/docker/mariadb.Dockerfile). On the first start (empty
# data directory) it creates the database and two accounts, then it runs the server:
#
#   MARIADB_DATABASE                                   database (the original's meiduo_mall)
#   MARIADB_MIGRATE_USER / MARIADB_MIGRATE_PASSWORD    every privilege on that database: the
#                                                      one-shot `users-svc migrate` only
#   MARIADB_USER / MARIADB_PASSWORD                    the running users-svc: SELECT and INSERT
#                                                      on tb_users, nothing else
#
# Every variable is required (no default password anywhere). Later starts ignore them: the
# accounts live in the data volume. Extra arguments go to mariadbd.
#
# MariaDB grants on a table only once it exists, and tb_users is created by the migration. So
# the migration account holds GRANT OPTION, and after `users-svc migrate` compose runs this image
# once more as `mariadb-start grant-runtime` (MARIADB_HOST, the same variables without
# MARIADB_PASSWORD): it grants the runtime account SELECT, INSERT on tb_users, over the network,
# as the migration account.
set -euo pipefail

datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock
required=(MARIADB_DATABASE MARIADB_USER MARIADB_PASSWORD MARIADB_MIGRATE_USER MARIADB_MIGRATE_PASSWORD)
[ "${1:-}" != grant-runtime ] || required=(MARIADB_HOST MARIADB_DATABASE MARIADB_USER MARIADB_MIGRATE_USER MARIADB_MIGRATE_PASSWORD)
for name in "${required[@]}"; do
  if [ -z "${!name:-}" ]; then
    echo "mariadb-start: $name is required" >&2
    exit 1
  fi
done

# A string literal for SQL: backslashes and quotes doubled.
quote() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }
# shellcheck disable=SC2016 # the backquotes are SQL's identifier quotes, not a command
ident() { printf '`%s`' "${1//\`/\`\`}"; }

initialise() {
  echo "mariadb-start: empty data directory, creating $MARIADB_DATABASE and its two accounts" >&2
  # root and the OS user mysql (the one this runs as) log in over the socket only, no password.
  mariadb-install-db --datadir="$datadir" --skip-test-db --auth-root-authentication-method=socket \
    --auth-root-socket-user=mysql \
    >/dev/null
  # A private socket and no network while the accounts are created: nobody connects to a
  # half-initialised server, and the healthcheck (main socket) stays unhealthy meanwhile.
  local init_socket=/run/mysqld/init.sock
  mariadbd --datadir="$datadir" --skip-networking --socket="$init_socket" --pid-file=/run/mysqld/init.pid &
  local pid=$! i=0
  until mariadb-admin --socket="$init_socket" ping --silent >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "mariadb-start: the initialising server did not start" >&2
      exit 1
    fi
    sleep 0.1
  done
  local db migrate runtime
  db=$(ident "$MARIADB_DATABASE")
  migrate="$(quote "$MARIADB_MIGRATE_USER")@'%'"
  runtime="$(quote "$MARIADB_USER")@'%'"
  mariadb --socket="$init_socket" <<SQL
CREATE DATABASE $db CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER $migrate IDENTIFIED BY $(quote "$MARIADB_MIGRATE_PASSWORD");
GRANT ALL PRIVILEGES ON $db.* TO $migrate WITH GRANT OPTION;
CREATE USER $runtime IDENTIFIED BY $(quote "$MARIADB_PASSWORD");
SQL
  mariadb-admin --socket="$init_socket" shutdown
  wait "$pid" || true
}

grant_runtime() {
  local table runtime
  table="$(ident "$MARIADB_DATABASE").tb_users"
  runtime="$(quote "$MARIADB_USER")@'%'"
  # MYSQL_PWD keeps the password off the command line.
  MYSQL_PWD="$MARIADB_MIGRATE_PASSWORD" mariadb --host="$MARIADB_HOST" --user="$MARIADB_MIGRATE_USER" \
    -e "GRANT SELECT, INSERT ON $table TO $runtime"
  echo "mariadb-start: $MARIADB_USER may SELECT, INSERT on $MARIADB_DATABASE.tb_users" >&2
}

if [ "${1:-}" = grant-runtime ]; then
  grant_runtime
  exit 0
fi
[ -d "$datadir/mysql" ] || initialise
exec mariadbd --datadir="$datadir" --socket="$socket" --pid-file=/run/mysqld/mysqld.pid \
  --bind-address=0.0.0.0 --port=3306 --skip-name-resolve \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci "$@"
