#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers at $AMQP_URI (default localhost:5672).
# Starts a locally installed rabbitmq-server when none answers; otherwise says
# how to get one.  With --management, also makes sure the management API
# (used by the test fixtures to create a vhost per test) answers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
want_management=0
[ "${1:-}" = "--management" ] && want_management=1

amqp_uri=${AMQP_URI:-amqp://guest:guest@localhost:5672/}
read -r host port < <("$PY" - "$amqp_uri" <<'PYEOF'
import sys
from urllib.parse import urlparse
uri = urlparse(sys.argv[1])
print(uri.hostname or "localhost", uri.port or 5672)
PYEOF
)

answers() {  # host port
  "$PY" -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2).close()" "$1" "$2" 2>/dev/null
}

wait_for() {  # host port seconds
  for _ in $(seq "$3"); do answers "$1" "$2" && return 0; sleep 1; done
  return 1
}

is_local() { case "$host" in localhost|127.*|::1) return 0;; *) return 1;; esac; }

if ! answers "$host" "$port"; then
  if is_local && command -v rabbitmq-server >/dev/null 2>&1; then
    echo "RabbitMQ is not answering on $host:$port; starting the local rabbitmq-server"
    rabbitmq-server -detached || true
    wait_for "$host" "$port" 90 || { echo "rabbitmq-server did not come up on $host:$port" >&2; exit 1; }
    # the AMQP port opens a moment before the node accepts logins
    rabbitmqctl await_startup >/dev/null 2>&1 || sleep 5
  else
    cat >&2 <<MSG
No RabbitMQ broker answers at $host:$port (AMQP_URI=$amqp_uri).
Start one, for example:
  docker run -d --name rabbitmq -p 5672:5672 -p 15672:15672 rabbitmq:3-management
  or: sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached
or point AMQP_URI at an existing broker.
MSG
    exit 1
  fi
fi
echo "RabbitMQ answers at $host:$port"

if [ "$want_management" = 1 ] && ! answers "$host" 15672; then
  if is_local && command -v rabbitmq-plugins >/dev/null 2>&1; then
    echo "enabling the RabbitMQ management plugin (the tests create a vhost per test through it)"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
    wait_for "$host" 15672 60 || { echo "management API did not come up" >&2; exit 1; }
  else
    echo "The tests need the RabbitMQ management API on $host:15672 (rabbitmq-plugins enable rabbitmq_management)." >&2
    exit 1
  fi
fi
