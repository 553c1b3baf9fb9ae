#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use (TEST_POSTGRES_URL, default
# postgresql://postgres@127.0.0.1:5432/postgres) answers; start a local
# cluster when one is installed but stopped.
set -euo pipefail
url=${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
hostport=${url#*@}; hostport=${hostport%%/*}
host=${hostport%%:*}; port=${hostport##*:}

answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

if ! answers; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL is not answering on $host:$port; starting the local cluster"
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
    for _ in $(seq 30); do answers && break; sleep 1; done
  fi
fi
if ! answers; then
  cat >&2 <<MSG
No PostgreSQL answers at $host:$port. The tests of the PostgreSQL catalog need
one (trust or password auth, a user that may CREATE DATABASE); set
TEST_POSTGRES_URL=postgresql://user:password@host:port/postgres to use another.
MSG
  exit 1
fi
echo "PostgreSQL answers at $host:$port"
