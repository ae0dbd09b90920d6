#!/usr/bin/env bash
# Real brokers for the SDK's integration tests: NATS, Redis and RabbitMQ on loopback, on fixed
# ports that do not clash with a system install (tests read the same ports, or the env vars below).
#
#   scripts/services.sh start   install what is missing (Debian packages), start, wait until ready
#   scripts/services.sh stop    stop what `start` started
#   scripts/services.sh status  say which are accepting connections
#
# Idempotent: `start` leaves a running service alone. Data, logs and pid files live under
# $AGENTRACE_SERVICES_DIR (default /tmp/agentrace-services).
set -euo pipefail

DIR="${AGENTRACE_SERVICES_DIR:-/tmp/agentrace-services}"
NATS_PORT=14222
REDIS_PORT=16379
AMQP_PORT=15673
RABBIT_DIST_PORT=25673
EPMD_PORT=14369
export ERL_EPMD_PORT="$EPMD_PORT"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if listening "$2"; then echo "$1 ready on 127.0.0.1:$2"; return 0; fi
    sleep 0.1
  done
  echo "$1 did not accept connections on 127.0.0.1:$2 within $3 s; see $DIR/$1.log" >&2
  return 1
}

install_missing() {
  local missing=()
  command -v nats-server >/dev/null || missing+=(nats-server)
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    # Debian's postinst would try to start the system services; we run our own instances. Leave
    # an existing policy-rc.d alone (it is the machine's), remove only the one we wrote.
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server redis-server rabbitmq-server >/dev/null
    [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
  fi
}

start_nats() {
  listening "$NATS_PORT" && { echo "nats already running"; return; }
  nohup nats-server -a 127.0.0.1 -p "$NATS_PORT" -P "$DIR/nats.pid" >"$DIR/nats.log" 2>&1 &
}

start_redis() {
  listening "$REDIS_PORT" && { echo "redis already running"; return; }
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" --pidfile "$DIR/redis.pid" \
    --save '' --appendonly no --daemonize yes --logfile "$DIR/redis.log"
}

start_rabbit() {
  listening "$AMQP_PORT" && { echo "rabbitmq already running"; return; }
  mkdir -p "$DIR/rabbitmq/home"
  : >"$DIR/rabbitmq/enabled_plugins"
  # Run the server directly (not Debian's wrapper, which switches to the rabbitmq user) with every
  # path under our directory, and its own epmd and distribution ports.
  HOME="$DIR/rabbitmq/home" \
  RABBITMQ_NODENAME=agentrace@localhost \
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
  RABBITMQ_NODE_PORT="$AMQP_PORT" \
  RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" \
  RABBITMQ_MNESIA_BASE="$DIR/rabbitmq/mnesia" \
  RABBITMQ_LOG_BASE="$DIR/rabbitmq/log" \
  RABBITMQ_PID_FILE="$DIR/rabbitmq.pid" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rabbitmq/enabled_plugins" \
  nohup /usr/lib/rabbitmq/bin/rabbitmq-server >"$DIR/rabbitmq.log" 2>&1 &
}

stop_pidfile() { # name
  local f="$DIR/$1.pid"
  if [ -f "$f" ]; then
    local pid
    pid="$(cat "$f")"
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "$1 stopped"
    fi
    rm -f "$f"
  fi
}

case "${1:-}" in
  start)
    install_missing
    mkdir -p "$DIR/redis"
    start_nats
    start_redis
    start_rabbit
    wait_for nats "$NATS_PORT" 20
    wait_for redis "$REDIS_PORT" 20
    wait_for rabbitmq "$AMQP_PORT" 90
    ;;
  stop)
    stop_pidfile nats
    stop_pidfile redis
    stop_pidfile rabbitmq
    # epmd outlives the node it served; it is ours (own port), so stop it too.
    command -v epmd >/dev/null && epmd -kill >/dev/null 2>&1 || true
    ;;
  status)
    for s in "nats $NATS_PORT" "redis $REDIS_PORT" "rabbitmq $AMQP_PORT"; do
      set -- $s
      if listening "$2"; then echo "$1 up on $2"; else echo "$1 down"; fi
    done
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
