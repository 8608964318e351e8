#!/usr/bin/env bash
# with-postgres.sh CMD [ARGS...]
#
# Finds a PostgreSQL for the tests, runs CMD with RELAY_TEST_DATABASE_URL exported, cleans up
# and exits with CMD's exit code. In order:
#
#   1. RELAY_TEST_DATABASE_URL already set: use it as is.
#   2. A server answering on 127.0.0.1:5432 as user postgres: use it.
#   3. initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin (newest version): start a
#      throwaway cluster in a temporary directory on a free port, stop and delete it on exit.
#   4. Otherwise: say how to get one, exit 1.
#
# RELAY_TEST_PG_BINDIR is exported too when the PostgreSQL binaries are found.
# RELAY_TEST_FORCE_THROWAWAY=1 skips steps 1 and 2 (to test step 3, or to keep tests off a
# shared server).
set -euo pipefail

log() { echo "with-postgres: $*" >&2; }

if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

# find_bindir prints the directory holding initdb and pg_ctl: PATH first, then the newest
# Debian-style /usr/lib/postgresql/<version>/bin. Symlinks are resolved because pg_ctl looks
# for the postgres binary next to its real location.
find_bindir() {
  local initdb dir
  if initdb=$(command -v initdb) && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$initdb")"
    return 0
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

# find_tool NAME prints the path of a PostgreSQL client tool, from PATH or the bindir.
find_tool() {
  if command -v "$1" 2>/dev/null; then
    return 0
  fi
  if [ -n "$bindir" ] && [ -x "$bindir/$1" ]; then
    echo "$bindir/$1"
    return 0
  fi
  return 1
}

# local_server_answers reports whether a server accepts connections on 127.0.0.1:5432.
local_server_answers() {
  local tool
  if tool=$(find_tool pg_isready); then
    "$tool" -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -t 3 2>/dev/null
  elif tool=$(find_tool psql); then
    "$tool" -X -q -A -t -c 'SELECT 1' "$local_url" >/dev/null 2>&1
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

local_url='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
bindir=$(find_bindir) || bindir=''
if [ -n "$bindir" ]; then
  export RELAY_TEST_PG_BINDIR="$bindir"
fi

if [ "${RELAY_TEST_FORCE_THROWAWAY:-}" != 1 ]; then
  if [ -n "${RELAY_TEST_DATABASE_URL:-}" ]; then
    exec "$@"
  fi
  if local_server_answers; then
    log "using the server on 127.0.0.1:5432"
    export RELAY_TEST_DATABASE_URL="$local_url"
    exec "$@"
  fi
fi

if [ -z "$bindir" ]; then
  echo "no PostgreSQL found: install it (e.g. apt-get install postgresql) or set RELAY_TEST_DATABASE_URL" >&2
  exit 1
fi

# The throwaway cluster. PostgreSQL refuses to run as root, so root hands it to the postgres
# user (or nobody). The directory is under /tmp rather than $TMPDIR: that user must reach it,
# and the unix socket path inside it must stay under about 100 bytes.
pg_user=''
if [ "$(id -u)" -eq 0 ]; then
  if id postgres >/dev/null 2>&1; then pg_user=postgres; else pg_user=nobody; fi
fi

# as_pg_user runs a command as the cluster's owner, from inside the cluster directory: the
# PostgreSQL tools fail when they cannot read the current directory.
as_pg_user() {
  if [ -z "$pg_user" ]; then
    (cd "$tmp" && "$@")
  elif command -v runuser >/dev/null; then
    (cd "$tmp" && runuser -u "$pg_user" -- "$@")
  else
    (cd "$tmp" && su -s "$BASH" "$pg_user" -c "$(printf '%q ' "$@")")
  fi
}

tmp=$(mktemp -d /tmp/relay-pg.XXXXXX)
started=''
cleanup() {
  if [ -n "$started" ]; then
    as_pg_user "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "$pg_user" ]; then
  chown "$pg_user" "$tmp"
fi

if ! as_pg_user "$bindir/initdb" -D "$tmp/data" -U postgres -A trust -E UTF8 --locale=C -N \
  >"$tmp/initdb.log" 2>&1; then
  log "initdb failed:"
  cat "$tmp/initdb.log" >&2
  exit 1
fi
cat >>"$tmp/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
CONF

# A port that looks free can still be taken before the server binds it, so try a few.
port=''
for _ in 1 2 3 4 5 6 7 8 9 10; do
  candidate=$((20000 + RANDOM % 30000))
  if (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
    continue
  fi
  started=yes
  if as_pg_user "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 60 \
    -o "-p $candidate" start >/dev/null 2>&1; then
    port=$candidate
    break
  fi
  as_pg_user "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true
  started=''
done
if [ -z "$port" ]; then
  log "could not start a throwaway PostgreSQL; its log:"
  cat "$tmp/server.log" >&2 || true
  exit 1
fi

log "started a throwaway PostgreSQL on 127.0.0.1:$port (data in $tmp)"
export RELAY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"

# Not exec: the trap must stop the cluster after CMD, whatever CMD returns.
status=0
"$@" || status=$?
exit "$status"
