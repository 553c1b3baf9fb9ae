#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside (never touching) the
# main node at 5672: for trying quorum queues and broker fail-over.
#
#   scripts/rabbit-cluster.sh start     # start and cluster the nodes, print AMQP_URI
#   scripts/rabbit-cluster.sh status    # cluster status
#   scripts/rabbit-cluster.sh uri       # the fail-over AMQP_URI of the running cluster
#   scripts/rabbit-cluster.sh stop      # stop the nodes and delete their data
#   scripts/rabbit-cluster.sh kill-node NAME   # SIGKILL one node (a crash)
#
# Nodes imagepipe-a/b/c@localhost; AMQP ports BASE..BASE+2 (default 5681-5683),
# management BASE+10000.. (15681-15683), distribution BASE+20000.. (25681-25683).
# Everything (mnesia, logs, config, Erlang cookie) lives in RABBIT_CLUSTER_DIR
# (default: $TMPDIR/imagepipe-rabbit-cluster).  Needs the rabbitmq-server package.
set -euo pipefail

BASE_PORT=${RABBIT_CLUSTER_BASE_PORT:-5681}
CLUSTER_DIR=${RABBIT_CLUSTER_DIR:-${TMPDIR:-/tmp}/imagepipe-rabbit-cluster}
NODES=(a b c)
RABBIT_BIN=${RABBIT_BIN:-/usr/lib/rabbitmq/bin}  # the real scripts, not Debian's su wrapper

node_name() { echo "imagepipe-$1@localhost"; }
node_index() { case $1 in a) echo 0 ;; b) echo 1 ;; c) echo 2 ;; *) echo "unknown node $1" >&2; exit 2 ;; esac; }
amqp_port() { echo $((BASE_PORT + $(node_index "$1"))); }

# The CLI tools and the nodes find the shared Erlang cookie in $HOME/.erlang.cookie
# (RABBITMQ_ERLANG_COOKIE is deprecated in 3.x); HOME is the cluster folder.
ctl() {
  local node=$1; shift
  HOME=$CLUSTER_DIR "$RABBIT_BIN/rabbitmqctl" -n "$(node_name "$node")" "$@"
}

prepare() {
  command -v "$RABBIT_BIN/rabbitmq-server" >/dev/null || [ -x "$RABBIT_BIN/rabbitmq-server" ] || {
    echo "rabbit-cluster: $RABBIT_BIN/rabbitmq-server not found (apt-get install rabbitmq-server)" >&2
    exit 1
  }
  mkdir -p "$CLUSTER_DIR"
  if [ ! -s "$CLUSTER_DIR/.erlang.cookie" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLUSTER_DIR/.erlang.cookie"
    chmod 400 "$CLUSTER_DIR/.erlang.cookie"
  fi
  # our own env file: the system one pins NODENAME to the main node
  printf 'ERL_EPMD_ADDRESS=127.0.0.1\n' >"$CLUSTER_DIR/rabbitmq-env.conf"
  printf '[rabbitmq_management].\n' >"$CLUSTER_DIR/enabled_plugins"
}

start_node() {
  local node=$1 port dir
  port=$(amqp_port "$node")
  dir=$CLUSTER_DIR/$node
  mkdir -p "$dir/mnesia" "$dir/log"
  cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$port
management.tcp.port = $((port + 10000))
management.tcp.ip = 127.0.0.1
loopback_users.guest = true
log.console = false
log.file.level = info
EOF
  (
    export HOME=$CLUSTER_DIR
    export RABBITMQ_CONF_ENV_FILE=$CLUSTER_DIR/rabbitmq-env.conf
    export RABBITMQ_NODENAME=$(node_name "$node")
    export RABBITMQ_NODE_PORT=$port
    export RABBITMQ_DIST_PORT=$((port + 20000))
    export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
    export RABBITMQ_ENABLED_PLUGINS_FILE=$CLUSTER_DIR/enabled_plugins
    export RABBITMQ_MNESIA_BASE=$dir/mnesia
    export RABBITMQ_LOG_BASE=$dir/log
    export RABBITMQ_PID_FILE=$dir/rabbitmq.pid
    export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
    setsid "$RABBIT_BIN/rabbitmq-server" >"$dir/log/stdout.log" 2>&1 </dev/null &
  )
}

await_node() {
  local node=$1 deadline=$((SECONDS + 90))
  # await_startup fails at once until the node has registered with epmd
  until ctl "$node" await_startup --timeout 90 >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] && sleep 1 && continue
    echo "rabbit-cluster: node $(node_name "$node") did not start; see $CLUSTER_DIR/$node/log" >&2
    tail -n 20 "$CLUSTER_DIR/$node/log/stdout.log" >&2 || true
    return 1
  done
}

uri() {
  local parts=() node
  for node in "${NODES[@]}"; do
    parts+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$node")/")
  done
  (IFS=';'; echo "${parts[*]}")
}

start() {
  prepare
  for node in "${NODES[@]}"; do start_node "$node"; done
  for node in "${NODES[@]}"; do await_node "$node"; done
  for node in "${NODES[@]:1}"; do
    ctl "$node" stop_app >/dev/null
    ctl "$node" join_cluster "$(node_name a)" >/dev/null
    ctl "$node" start_app >/dev/null
  done
  local running
  running=$(ctl a cluster_status --formatter json | python3 -c \
    'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))')
  if [ "$running" != "${#NODES[@]}" ]; then
    echo "rabbit-cluster: only $running of ${#NODES[@]} nodes are running in the cluster" >&2
    exit 1
  fi
  uri
}

stop() {
  local node pid
  for node in "${NODES[@]}"; do
    ctl "$node" shutdown >/dev/null 2>&1 || true
    # a node that would not shut down (or a half-started one) is killed
    if [ -s "$CLUSTER_DIR/$node/rabbitmq.pid" ]; then
      pid=$(cat "$CLUSTER_DIR/$node/rabbitmq.pid")
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
  done
  case "$CLUSTER_DIR" in
    */imagepipe-rabbit-cluster*) rm -rf "$CLUSTER_DIR" ;;
    *) echo "rabbit-cluster: left $CLUSTER_DIR in place (not a folder this script made)" >&2 ;;
  esac
}

kill_node() {
  local node=$1
  kill -9 "$(cat "$CLUSTER_DIR/$node/rabbitmq.pid")"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) ctl a cluster_status ;;
  uri) uri ;;
  kill-node) kill_node "${2:?which node: a, b or c}" ;;
  *) echo "usage: $0 start|stop|status|uri|kill-node NODE" >&2; exit 2 ;;
esac
