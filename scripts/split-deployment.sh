#!/usr/bin/env bash
# The platform split as it is deployed, on this machine: each of the five services in its
# own `todo serve` process, PostgreSQL, a Kafka-protocol broker when TODO_BUS=kafka, and
# nginx in front routing by path. Everything listens on 127.0.0.1 on free ports.
#
#   scripts/split-deployment.sh up DIR          start everything; returns once all is ready
#   scripts/split-deployment.sh kill DIR NAME   SIGKILL one part
#   scripts/split-deployment.sh start DIR NAME  start that part again (same port and settings)
#   scripts/split-deployment.sh down DIR        stop everything `up` started, by PID
#
# NAME: api, recurring, notification, sync, audit, proxy, broker (TODO_BUS=kafka) or
# postgres (TODO_SPLIT_PRIVATE_PG=1). DIR keeps data, logs (DIR/logs/NAME.log), PIDs and
# DIR/env (BASE_URL, TODO_JWT_SECRET, DATABASE_URL, KAFKA_BROKERS), and
# DIR/prometheus-targets.json (every service's /metrics, for scripts/observability.sh).
# See docs/split-deployment.md.
set -euo pipefail

# The bus when TODO_BUS is unset: the broker, as in production (`memory` runs without one).
DEFAULT_BUS=kafka

SERVICES=(api recurring notification sync audit)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ready_timeout="${TODO_SPLIT_READY_TIMEOUT:-60}"
stop_timeout=20

say() { printf 'split-deployment: %s\n' "$*"; }
die() {
  say "error: $*" >&2
  exit 1
}

usage() {
  cat >&2 <<EOF
usage: $0 up DIR
       $0 kill DIR NAME
       $0 start DIR NAME
       $0 down DIR
NAME: ${SERVICES[*]} proxy broker postgres
EOF
  exit 2
}

# --- small utilities -----------------------------------------------------------------

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# shellcheck source=scripts/lib/ports.sh
source "$root/scripts/lib/ports.sh"

# Runs a command as the `postgres` user when this is root (initdb refuses root).
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Finds a PostgreSQL server program: Debian keeps them out of PATH.
pg_program() {
  local found
  if found="$(command -v "$1" 2>/dev/null)"; then
    echo "$found"
    return
  fi
  for found in /usr/lib/postgresql/*/bin/"$1"; do
    [[ -x "$found" ]] && echo "$found" && return
  done
  die "$1 not found (install PostgreSQL's server package, e.g. apt-get install -y postgresql)"
}

# Installs a Debian package when a command is missing (CI runs as root on Debian).
need() {
  local command=$1 package=$2
  command -v "$command" >/dev/null 2>&1 && return
  [[ -x "/usr/sbin/$command" ]] && return
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "$command is missing: installing the Debian package $package"
    if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$package"; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$package"
    fi
  else
    die "$command is missing: install the $package package"
  fi
}

nginx_program() {
  command -v nginx 2>/dev/null || echo /usr/sbin/nginx
}

# --- state -----------------------------------------------------------------------------

# DIR/state holds what `start` and `down` need, written once by `up` (sourceable).
save_state() {
  local name
  {
    for name in BIN BUS BROKER BROKER_PORT PROXY_PORT PRIVATE_PG PG_PORT PG_SERVER \
      CREATED_DB DATABASE_URL KAFKA_BROKERS JWT_SECRET "${SERVICES[@]/#/PORT_}"; do
      printf '%s=%q\n' "$name" "${!name-}"
    done
  } >"$DIR/state"
  chmod 600 "$DIR/state"
}

load_state() {
  [[ -f "$DIR/state" ]] || die "$DIR holds no deployment (no $DIR/state); run: $0 up $DIR"
  # shellcheck source=/dev/null
  source "$DIR/state"
  PASSTHROUGH=()
  if [[ -f "$DIR/service.env" ]]; then
    mapfile -d '' -t PASSTHROUGH <"$DIR/service.env"
  fi
}

# Settings from the caller's environment handed to every service, kept so that `start`
# uses the same ones as `up` did. The script's own settings are excluded.
save_passthrough() {
  local pair name
  while IFS= read -r -d '' pair; do
    name=${pair%%=*}
    case $name in
      TODO_BIN | TODO_SPLIT_* | TODO_TEST_* | TODO_SERVICES | TODO_LISTEN_ADDR | TODO_LOG_FORMAT | \
        TODO_DATA_DIR | TODO_JWT_SECRET | TODO_BUS) ;;
      TODO_* | RUST_LOG | RUST_BACKTRACE | OTEL_*) printf '%s\0' "$pair" ;;
    esac
  done < <(env -0) >"$DIR/service.env"
  chmod 600 "$DIR/service.env"
}

# --- processes -------------------------------------------------------------------------

# A PID file holds "PID START": the start time (clock ticks since boot) tells a reused PID
# from the process that was started.
proc_start() {
  local stat fields
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  read -r -a fields <<<"${stat##*) }"
  [[ ${fields[0]} != Z ]] || return 1
  echo "${fields[19]}"
}

record_pid() {
  local start
  start="$(proc_start "$2")" || start=0
  echo "$2 $start" >"$DIR/pids/$1.pid"
}

# The PID of NAME if it is running, else nothing (and status 1).
running_pid() {
  local pid start now
  [[ -f "$DIR/pids/$1.pid" ]] || return 1
  read -r pid start <"$DIR/pids/$1.pid"
  now="$(proc_start "$pid")" || return 1
  [[ $now == "$start" ]] || return 1
  echo "$pid"
}

log_tail() {
  local file="$DIR/logs/$1.log"
  if [[ -s $file ]]; then
    say "last lines of $file:"
    tail -n 30 "$file" | sed 's/^/    /' >&2
  else
    say "$file is empty"
  fi
}

# Waits until `check` succeeds, NAME dies, or the deadline passes.
wait_until() {
  local name=$1 what=$2
  shift 2
  local deadline=$((SECONDS + ready_timeout))
  while ! "$@"; do
    if ! running_pid "$name" >/dev/null; then
      say "$name exited before it was ready" >&2
      log_tail "$name"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      say "$name was not $what within ${ready_timeout} s" >&2
      log_tail "$name"
      return 1
    fi
    sleep 0.1
  done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sends SIGKILL and waits for the process to be gone.
kill_part() {
  local pid
  if ! pid="$(running_pid "$1")"; then
    say "$1 is not running"
    return 0
  fi
  say "kill -KILL $pid ($1)"
  kill -KILL "$pid"
  local deadline=$((SECONDS + 10))
  while running_pid "$1" >/dev/null; do
    ((SECONDS < deadline)) || die "$1 (PID $pid) still runs 10 s after SIGKILL"
    sleep 0.05
  done
}

# Sends SIG to each named part that runs, then waits for all of them (SIGKILL after
# $stop_timeout seconds).
stop_parts() {
  local sig=$1 name pid
  shift
  local -a names=()
  for name in "$@"; do
    if pid="$(running_pid "$name")"; then
      say "kill -$sig $pid ($name)"
      kill "-$sig" "$pid" 2>/dev/null || true
      names+=("$name")
    fi
  done
  local deadline=$((SECONDS + stop_timeout))
  for name in "${names[@]}"; do
    while pid="$(running_pid "$name")"; do
      if ((SECONDS >= deadline)); then
        say "$name (PID $pid) did not stop within $stop_timeout s: kill -KILL $pid"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + stop_timeout))
      fi
      sleep 0.1
    done
    rm -f "$DIR/pids/$name.pid"
  done
}

# --- the parts ---------------------------------------------------------------------------

service_env() {
  local name=$1 port_var="PORT_$1"
  SERVICE_ENV=(PATH="$PATH" HOME="${HOME:-/}" "${PASSTHROUGH[@]}"
    TODO_SERVICES="$name" TODO_LISTEN_ADDR="127.0.0.1:${!port_var}"
    DATABASE_URL="$DATABASE_URL" TODO_BUS="$BUS" TODO_JWT_SECRET="$JWT_SECRET"
    TODO_LOG_FORMAT=json TODO_DATA_DIR="$DIR/data/$name")
  if [[ $BUS == kafka ]]; then
    SERVICE_ENV+=(KAFKA_BROKERS="$KAFKA_BROKERS")
  fi
}

start_service() {
  local name=$1 port_var="PORT_$1"
  mkdir -p "$DIR/data/$name"
  service_env "$name"
  say "start $name: TODO_SERVICES=$name TODO_LISTEN_ADDR=127.0.0.1:${!port_var} TODO_BUS=$BUS $BIN serve >> logs/$name.log"
  nohup env -i "${SERVICE_ENV[@]}" "$BIN" serve </dev/null >>"$DIR/logs/$name.log" 2>&1 &
  record_pid "$name" $!
}

wait_service() {
  local port_var="PORT_$1"
  wait_until "$1" ready http_ok "http://127.0.0.1:${!port_var}/readyz" || {
    say "its /readyz said: $(curl -sS --max-time 2 "http://127.0.0.1:${!port_var}/readyz" 2>&1 || true)" >&2
    return 1
  }
  say "$1 ready (/readyz 200 on 127.0.0.1:${!port_var})"
}

migrate() {
  service_env api
  say "migrate: $BIN migrate >> logs/migrate.log"
  if ! env -i "${SERVICE_ENV[@]}" "$BIN" migrate </dev/null >>"$DIR/logs/migrate.log" 2>&1; then
    say "migration failed" >&2
    log_tail migrate
    return 1
  fi
}

start_postgres() {
  local pg_ctl deadline
  pg_ctl="$(pg_program pg_ctl)"
  say "start postgres: pg_ctl start on 127.0.0.1:$PG_PORT (data in pg/data)"
  deadline=$((SECONDS + ready_timeout))
  # After a SIGKILL the lock file names the dead server until its process is reaped, and
  # its backends may hold the shared memory for a moment: retry until the deadline.
  # pg_ctl's own messages go to the server's log, which both append to.
  # shellcheck disable=SC2094
  until as_pg "$pg_ctl" -D "$DIR/pg/data" -l "$DIR/logs/postgres.log" -w -t "$ready_timeout" \
    -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=127.0.0.1" start </dev/null >>"$DIR/logs/postgres.log" 2>&1; do
    if ((SECONDS >= deadline)); then
      say "postgres did not start within ${ready_timeout} s" >&2
      log_tail postgres
      return 1
    fi
    say "postgres did not start yet (see logs/postgres.log); retrying"
    sleep 0.5
  done
  record_pid postgres "$(head -n 1 "$DIR/pg/data/postmaster.pid")"
  say "postgres ready"
}

init_private_postgres() {
  local initdb
  initdb="$(pg_program initdb)"
  mkdir -p "$DIR/pg"
  touch "$DIR/logs/postgres.log"
  if [[ $EUID -eq 0 ]]; then
    # The server runs as `postgres`, which must reach its directory inside DIR.
    say "chmod a+x $DIR; chown postgres $DIR/pg (PostgreSQL refuses to run as root)"
    chmod a+x "$DIR"
    chown postgres "$DIR/pg" "$DIR/logs/postgres.log"
    runuser -u postgres -- test -w "$DIR/pg" ||
      die "the postgres user cannot reach $DIR/pg: choose a DIR whose parents it may enter"
  fi
  say "initdb pg/data"
  as_pg "$initdb" -D "$DIR/pg/data" -U postgres -A trust -N >>"$DIR/logs/postgres.log" 2>&1 || {
    log_tail postgres
    return 1
  }
  start_postgres
  psql -qX -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -c 'CREATE DATABASE todo'
}

start_broker() {
  local program="$root/.tools/bin"
  mkdir -p "$DIR/broker"
  case $BROKER in
    noida)
      say "start broker: noida-db on 127.0.0.1:$BROKER_PORT (data in broker/) >> logs/broker.log"
      nohup "$program/noida-db" start --only kafka --host 127.0.0.1 --kafka-port "$BROKER_PORT" \
        --data-dir "$DIR/broker" </dev/null >>"$DIR/logs/broker.log" 2>&1 &
      ;;
    tansu)
      # Memory storage: a restarted tansu starts empty.
      say "start broker: tansu on 127.0.0.1:$BROKER_PORT (memory storage) >> logs/broker.log"
      nohup "$program/tansu" broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" --storage-engine memory://tansu/ \
        </dev/null >>"$DIR/logs/broker.log" 2>&1 &
      ;;
  esac
  record_pid broker $!
  wait_until broker listening tcp_open "$BROKER_PORT"
  say "broker ready (127.0.0.1:$BROKER_PORT accepts connections)"
}

write_nginx_conf() {
  local name
  mkdir -p "$DIR/nginx"
  {
    cat <<EOF
# Written by scripts/split-deployment.sh for the deployment in $DIR.
# One process, in the foreground: its PID is all there is to stop (a SIGKILLed master
# would leave its workers serving), and it runs as the user who started it.
daemon off;
master_process off;
pid $DIR/nginx/nginx.pid;
error_log $DIR/logs/proxy.log notice;

events {
    worker_connections 1024;
}

http {
    client_body_temp_path $DIR/nginx/client_body;
    proxy_temp_path $DIR/nginx/proxy;
    fastcgi_temp_path $DIR/nginx/fastcgi;
    uwsgi_temp_path $DIR/nginx/uwsgi;
    scgi_temp_path $DIR/nginx/scgi;
    server_tokens off;

    # A client's X-Request-Id goes on to the service; without one nginx's own id is used,
    # so the access log and the service's log lines carry the same id.
    map \$http_x_request_id \$todo_request_id {
        default \$http_x_request_id;
        ""      \$request_id;
    }
    # Upgrade requests get "Connection: upgrade"; all others none, so upstream connections
    # are kept alive.
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ""      "";
    }

    log_format edge escape=json '{"time":"\$time_iso8601","request_id":"\$todo_request_id",'
        '"method":"\$request_method","uri":"\$request_uri","status":\$status,'
        '"upstream":"\$upstream_addr","request_time":\$request_time,'
        '"upstream_time":"\$upstream_response_time"}';
    access_log $DIR/logs/proxy.access.log edge;

EOF
    for name in "${SERVICES[@]}"; do
      local port_var="PORT_$name"
      printf '    upstream todo_%s {\n        server 127.0.0.1:%s;\n        keepalive 8;\n    }\n' \
        "$name" "${!port_var}"
    done
    cat <<EOF

    server {
        listen 127.0.0.1:$PROXY_PORT;
        # Above the services' own 64 KiB limit, so they answer 413 as problem+json.
        client_max_body_size 1m;
        # Bodies up to the services' limit stay in memory (no temp file per request).
        client_body_buffer_size 64k;
        # Long query strings (a repeated tag= filter) reach the service, which judges them.
        large_client_header_buffers 4 64k;

        proxy_http_version 1.1;
        proxy_set_header Host \$http_host;
        proxy_set_header X-Request-Id \$todo_request_id;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection \$connection_upgrade;

        # ---- Routing: path -> service. The Kubernetes routing copies this table. ----
        # Paths are matched after nginx decodes them; the query string is not part of it.
        #   /api/{user_id}/audit                       -> audit
        #   /api/{user_id}/reminders                   -> notification
        #   /api/{user_id}/notifications               -> notification
        #   /api/{user_id}/ws  (WebSocket)             -> sync
        #   everything else (tasks, /openapi.json,
        #   /healthz, /readyz, /metrics)               -> api
        location ~ ^/api/[^/]+/audit$ {
            proxy_pass http://todo_audit;
        }
        location ~ ^/api/[^/]+/(reminders|notifications)$ {
            proxy_pass http://todo_notification;
        }
        location ~ ^/api/[^/]+/ws$ {
            proxy_pass http://todo_sync;
            # A WebSocket stays open for hours; the service pings every TODO_WS_PING_SECS.
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
        location / {
            proxy_pass http://todo_api;
        }
        # ---- End of routing. ----

        # What nginx answers itself is problem+json too, like every error of the services;
        # a service that is down or too slow is a 503, as a service answers when a
        # dependency is down. (URI targets, not named locations: a request line nginx
        # could not parse has no URI to carry into a named location.)
        error_page 400 /.proxy/400;
        error_page 404 /.proxy/404;
        error_page 413 /.proxy/413;
        error_page 414 /.proxy/414;
        error_page 502 504 =503 /.proxy/503;
EOF
    local status slug title detail
    while IFS='|' read -r status slug title detail; do
      cat <<EOF
        location = /.proxy/$status {
            internal;
            default_type application/problem+json;
            add_header X-Request-Id \$todo_request_id always;
            return $status '{"type":"urn:todo:problem:$slug","title":"$title","status":$status,"detail":"$detail"}';
        }
EOF
    done <<'ROWS'
400|bad-request|Bad Request|the proxy could not read this request
404|not-found|Not Found|no route matches this path
413|payload-too-large|Payload Too Large|the request body is larger than the proxy accepts
414|uri-too-long|URI Too Long|the request line is longer than the proxy accepts
503|unavailable|Service Unavailable|the service is temporarily unavailable; retry shortly
ROWS
    cat <<EOF
    }
}
EOF
  } >"$DIR/nginx.conf"
}

start_proxy() {
  local nginx
  nginx="$(nginx_program)"
  # nginx appends its own log lines to the file its standard streams also go to.
  # shellcheck disable=SC2094
  "$nginx" -t -q -e "$DIR/logs/proxy.log" -p "$DIR/nginx" -c "$DIR/nginx.conf" 2>>"$DIR/logs/proxy.log" || {
    say "nginx rejected $DIR/nginx.conf" >&2
    log_tail proxy
    return 1
  }
  say "start proxy: nginx -c nginx.conf on 127.0.0.1:$PROXY_PORT >> logs/proxy.log"
  # shellcheck disable=SC2094
  nohup "$nginx" -e "$DIR/logs/proxy.log" -p "$DIR/nginx" -c "$DIR/nginx.conf" \
    </dev/null >>"$DIR/logs/proxy.log" 2>&1 &
  record_pid proxy $!
  wait_until proxy ready http_ok "http://127.0.0.1:$PROXY_PORT/healthz"
  say "proxy ready (http://127.0.0.1:$PROXY_PORT)"
}

valid_part() {
  case $1 in
    api | recurring | notification | sync | audit | proxy) ;;
    broker) [[ $BUS == kafka ]] || die "no broker runs: this deployment uses TODO_BUS=$BUS" ;;
    postgres) [[ $PRIVATE_PG == 1 ]] || die "postgres is not this deployment's own (TODO_SPLIT_PRIVATE_PG=1 runs one)" ;;
    *) die "unknown part $1; choose from: ${SERVICES[*]} proxy broker postgres" ;;
  esac
}

start_part() {
  running_pid "$1" >/dev/null && die "$1 is already running"
  case $1 in
    proxy) start_proxy ;;
    broker) start_broker ;;
    postgres) start_postgres ;;
    *)
      start_service "$1"
      wait_service "$1"
      ;;
  esac
}

# --- commands ----------------------------------------------------------------------------

cmd_up() {
  if [[ -f "$DIR/state" ]]; then
    load_state
    local name
    for name in "${SERVICES[@]}" proxy broker postgres; do
      running_pid "$name" >/dev/null && die "$DIR already holds a running deployment; run: $0 down $DIR"
    done
  fi
  mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/data"
  rm -f "$DIR/env"

  BIN="${TODO_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/todo-target}/debug/todo}"
  [[ -x $BIN ]] || die "no todo binary at $BIN: build it (cargo build --bin todo) or set TODO_BIN"
  BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
  BUS="${TODO_BUS:-$DEFAULT_BUS}"
  case $BUS in memory | kafka) ;; *) die "TODO_BUS must be memory or kafka, not $BUS" ;; esac
  BROKER="${TODO_SPLIT_BROKER:-noida}"
  case $BROKER in noida | tansu) ;; *) die "TODO_SPLIT_BROKER must be noida or tansu, not $BROKER" ;; esac
  PRIVATE_PG="${TODO_SPLIT_PRIVATE_PG:-0}"
  if [[ $PRIVATE_PG == 1 && -n ${DATABASE_URL:-} ]]; then
    die "set either DATABASE_URL or TODO_SPLIT_PRIVATE_PG=1, not both"
  fi
  need curl curl
  need nginx nginx-light
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to pick free ports"
  JWT_SECRET="${TODO_JWT_SECRET:-$(random_hex 32)}"

  local ports
  read -r -a ports <<<"$(free_ports 8)"
  # Read by name (PORT_$service) in service_env and write_nginx_conf.
  # shellcheck disable=SC2034
  PORT_api=${ports[0]} PORT_recurring=${ports[1]} PORT_notification=${ports[2]}
  # shellcheck disable=SC2034
  PORT_sync=${ports[3]} PORT_audit=${ports[4]} PROXY_PORT=${ports[5]}
  BROKER_PORT="" PG_PORT="" PG_SERVER="" CREATED_DB="" KAFKA_BROKERS=""
  [[ $BUS == kafka ]] && BROKER_PORT=${ports[6]} && KAFKA_BROKERS="127.0.0.1:$BROKER_PORT"
  say "deployment in $DIR: binary $BIN, TODO_BUS=$BUS"

  # From here on a failure stops whatever was started; the logs stay in DIR.
  trap up_failed EXIT

  if [[ $PRIVATE_PG == 1 ]]; then
    PG_PORT=${ports[7]}
    DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/todo"
    save_state
    init_private_postgres
  elif [[ -n ${DATABASE_URL:-} ]]; then
    say "database: DATABASE_URL from the environment (kept on down)"
  else
    need psql postgresql-client
    PG_SERVER="${TODO_SPLIT_PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
    CREATED_DB="todo_split_$(random_hex 4)"
    DATABASE_URL="$PG_SERVER/$CREATED_DB"
    save_state
    say "database: CREATE DATABASE $CREATED_DB on $PG_SERVER (dropped on down)"
    psql -qX -v ON_ERROR_STOP=1 "$PG_SERVER/postgres" -c "CREATE DATABASE $CREATED_DB"
  fi
  save_passthrough
  save_state
  load_state

  if [[ $BUS == kafka ]]; then
    say "broker: scripts/install-broker.sh $BROKER"
    "$root/scripts/install-broker.sh" "$BROKER"
    start_broker
  fi
  migrate
  local name
  for name in "${SERVICES[@]}"; do
    start_service "$name"
  done
  for name in "${SERVICES[@]}"; do
    wait_service "$name"
  done
  write_nginx_conf
  start_proxy

  write_scrape_targets
  trap - EXIT
  {
    echo "BASE_URL=http://127.0.0.1:$PROXY_PORT"
    echo "TODO_JWT_SECRET=$JWT_SECRET"
    echo "DATABASE_URL=$DATABASE_URL"
    echo "KAFKA_BROKERS=$KAFKA_BROKERS"
  } >"$DIR/env"
  chmod 600 "$DIR/env"
  say "up: BASE_URL=http://127.0.0.1:$PROXY_PORT (settings in $DIR/env, logs in $DIR/logs)"
}

# DIR/prometheus-targets.json: each service's /metrics as a Prometheus file_sd target, with
# the labels the rules and dashboards select on (job todo-<service>, namespace local).
write_scrape_targets() {
  local name port_var sep=""
  {
    echo "["
    for name in "${SERVICES[@]}"; do
      port_var="PORT_$name"
      printf '%s  {"targets": ["127.0.0.1:%s"], "labels": {"job": "todo-%s", "namespace": "local"}}' \
        "$sep" "${!port_var}" "$name"
      sep=$',\n'
    done
    printf '\n]\n'
  } >"$DIR/prometheus-targets.json"
}

up_failed() {
  local status=$?
  trap - EXIT
  say "up failed: stopping what was started (logs stay in $DIR/logs)" >&2
  cmd_down || true
  exit "$status"
}

cmd_down() {
  if [[ ! -f "$DIR/state" ]]; then
    say "nothing to stop in $DIR"
    return 0
  fi
  load_state
  say "down: stopping the deployment in $DIR"
  stop_parts TERM proxy
  stop_parts TERM "${SERVICES[@]}"
  stop_parts TERM broker
  # SIGINT is PostgreSQL's fast shutdown: clients are cut off, nothing waits for them.
  stop_parts INT postgres
  if [[ -n ${CREATED_DB:-} ]]; then
    say "DROP DATABASE $CREATED_DB"
    psql -qX -v ON_ERROR_STOP=1 "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $CREATED_DB WITH (FORCE)" &&
      sed -i 's/^CREATED_DB=.*/CREATED_DB=/' "$DIR/state"
  fi
  rm -f "$DIR/env"
  say "down: done (logs kept in $DIR/logs)"
}

[[ $# -ge 2 ]] || usage
command=$1
DIR=$2
case $command in
  up)
    [[ $# -eq 2 ]] || usage
    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd)"
    cmd_up
    ;;
  down)
    [[ $# -eq 2 ]] || usage
    [[ -d $DIR ]] || die "no such directory: $DIR"
    DIR="$(cd "$DIR" && pwd)"
    cmd_down
    ;;
  kill | start)
    [[ $# -eq 3 ]] || usage
    [[ -d $DIR ]] || die "no such directory: $DIR"
    DIR="$(cd "$DIR" && pwd)"
    load_state
    valid_part "$3"
    if [[ $command == kill ]]; then
      kill_part "$3"
    else
      start_part "$3"
    fi
    ;;
  *) usage ;;
esac
