#!/usr/bin/env bash
# Real servers for the end-to-end tests: NATS, Redis, RabbitMQ and PostgreSQL on loopback, on ports chosen
# free when they start, so they collide with nothing else on the machine. The tests find them
# through the environment that `env` prints:
#
#   scripts/services.sh start   install what is missing (Debian packages), start, wait until ready
#   eval "$(scripts/services.sh env)"
#                               AGENTRACE_NATS_URL, AGENTRACE_REDIS_URL, AGENTRACE_AMQP_URL,
#                               AGENTRACE_POSTGRES_URL (a server whose tests each make their own
#                               database; TLS too, with AGENTRACE_POSTGRES_CA's certificate) and
#                               REDIS_URL (the Celery corpus) for this shell
#   scripts/services.sh stop    stop what `start` started
#   scripts/services.sh status  say which are accepting connections
#
# Idempotent: `start` leaves running services alone (on the ports they have). Data, logs, pid
# files and the chosen ports live under $AGENTRACE_SERVICES_DIR (default /tmp/agentrace-services).
set -euo pipefail

DIR="${AGENTRACE_SERVICES_DIR:-/tmp/agentrace-services}"
PORTS="$DIR/ports"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The ports of the services that run, or new free ones when none run.
if [ -f "$PORTS" ]; then
  # shellcheck source=/dev/null
  . "$PORTS"
fi
choose_ports() {
  NATS_PORT="$(free_port)"
  REDIS_PORT="$(free_port)"
  AMQP_PORT="$(free_port)"
  RABBIT_DIST_PORT="$(free_port)"
  EPMD_PORT="$(free_port)"
  PG_PORT="$(free_port)"
  mkdir -p "$DIR"
  printf 'NATS_PORT=%s\nREDIS_PORT=%s\nAMQP_PORT=%s\nRABBIT_DIST_PORT=%s\nEPMD_PORT=%s\nPG_PORT=%s\n' \
    "$NATS_PORT" "$REDIS_PORT" "$AMQP_PORT" "$RABBIT_DIST_PORT" "$EPMD_PORT" "$PG_PORT" >"$PORTS"
}

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
  pg_bin >/dev/null || missing+=(postgresql)
  command -v openssl >/dev/null || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    # Debian's postinst would try to start the system services; we run our own instances. Leave
    # an existing policy-rc.d alone (it is the machine's), remove only the one we wrote.
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
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

# Debian's PostgreSQL server binaries (initdb, postgres, pg_ctl), newest major version.
pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# PostgreSQL refuses to run as root: the cluster belongs to Debian's postgres user, in our
# directory, with trust authentication on loopback and its socket beside its data.
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
  listening "$PG_PORT" && { echo "postgresql already running"; return; }
  local bin data="$DIR/postgres"
  bin="$(pg_bin)"
  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    mkdir -p "$data"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$data"; fi
    as_postgres "$bin/initdb" -D "$data" -U agentrace --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/postgres-initdb.log" 2>&1
  fi
  : >"$DIR/postgres.log"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR/postgres.log"; fi
  # TLS for the tests that ask for it: a CA of our own and a certificate for 127.0.0.1 signed
  # by it; clients that do not ask for TLS connect without it.
  local tls="$DIR/postgres-tls"
  # Made again when missing or within a day of expiring (the directory outlives a `stop`).
  if ! openssl x509 -checkend 86400 -noout -in "$tls/server.crt" >/dev/null 2>&1; then
    rm -rf "$tls" && mkdir -p "$tls"
    {
      openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=agentrace test CA" \
        -keyout "$tls/ca.key" -out "$tls/ca.pem"
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/server.key" -out "$tls/server.csr"
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext"
      openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 30 \
        -extfile "$tls/ext" -out "$tls/server.crt"
    } >"$DIR/postgres-tls.log" 2>&1 || { echo "cannot make the test server's certificate; see $DIR/postgres-tls.log" >&2; return 1; }
    chmod 600 "$tls/server.key"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$tls/server.key" "$tls/server.crt"; fi
  fi
  # Sized for the tests: a few collectors' connections each, no durability tuning.
  as_postgres "$bin/pg_ctl" -D "$data" -l "$DIR/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $data -c max_connections=200 -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key" start >/dev/null
}

stop_postgres() {
  local data="$DIR/postgres" bin
  bin="$(pg_bin)" || return 0
  if [ -f "$data/postmaster.pid" ]; then
    as_postgres "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 && echo "postgresql stopped"
  fi
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

print_env() {
  [ -f "$PORTS" ] || { echo "no services started: run $0 start" >&2; exit 1; }
  echo "export AGENTRACE_NATS_URL=nats://127.0.0.1:$NATS_PORT"
  echo "export AGENTRACE_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/"
  echo "export AGENTRACE_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
  echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
  echo "export AGENTRACE_POSTGRES_URL=postgres://agentrace@127.0.0.1:$PG_PORT/postgres"
  echo "export AGENTRACE_POSTGRES_CA=$DIR/postgres-tls/ca.pem"
}

any_running() {
  local s
  for s in nats redis rabbitmq; do
    [ -f "$DIR/$s.pid" ] && kill -0 "$(cat "$DIR/$s.pid")" 2>/dev/null && return 0
  done
  [ -f "$DIR/postgres/postmaster.pid" ] && return 0
  return 1
}

case "${1:-}" in
  start)
    install_missing
    # New ports unless our services already run on the recorded ones.
    if [ ! -f "$PORTS" ] || ! any_running; then choose_ports; fi
    export ERL_EPMD_PORT="$EPMD_PORT"
    mkdir -p "$DIR/redis"
    start_nats
    start_redis
    start_rabbit
    start_postgres
    wait_for nats "$NATS_PORT" 20
    wait_for redis "$REDIS_PORT" 20
    wait_for rabbitmq "$AMQP_PORT" 90
    wait_for postgresql "$PG_PORT" 60
    ;;
  stop)
    stop_pidfile nats
    stop_pidfile redis
    stop_pidfile rabbitmq
    stop_postgres
    # epmd outlives the node it served; it is ours (own port), so stop it too.
    if [ -n "${EPMD_PORT:-}" ] && command -v epmd >/dev/null; then
      ERL_EPMD_PORT="$EPMD_PORT" epmd -kill >/dev/null 2>&1 || true
    fi
    rm -f "$PORTS"
    ;;
  env)
    print_env
    ;;
  status)
    [ -f "$PORTS" ] || { echo "no services started"; exit 0; }
    for s in "nats $NATS_PORT" "redis $REDIS_PORT" "rabbitmq $AMQP_PORT" "postgresql ${PG_PORT:-0}"; do
      set -- $s
      if listening "$2"; then echo "$1 up on $2"; else echo "$1 down"; fi
    done
    ;;
  *)
    echo "usage: $0 start|env|stop|status" >&2
    exit 2
    ;;
esac
