#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for the store tests (Debian's postgresql package).
#   bash tests/pg_server.sh start DIR   → a new cluster in DIR on port $PG_TEST_PORT (5433); prints its URL
#   bash tests/pg_server.sh stop DIR
# As root the server runs as the `postgres` user (PostgreSQL refuses root); trust auth is fine on loopback
# for a cluster that lives as long as one test session.
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?folder for the cluster} port=${PG_TEST_PORT:-5433}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case $cmd in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    as_server "$bin/initdb" -D "$dir/data" -U postgres -A trust >"$dir/initdb.log"
    as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres" ;;
  stop)
    as_server "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
