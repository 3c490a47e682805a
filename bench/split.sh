#!/usr/bin/env bash
# Load benchmark of the split deployment (scripts/split-deployment.sh: five single-service
# processes on PostgreSQL, Kafka on noida-db, nginx in front), beside the ceilings it is
# judged by, measured in the same run: pgbench with the same two-row insert transaction as
# a create, and with a select by primary key, at the same concurrency. Not a test: it
# prints numbers and marks each against its target, and exits 0 even when targets are
# missed. bench/run.sh runs it after the embedded benchmark (BENCH_SPLIT=0 skips it).
#
# What it does, all against 127.0.0.1 only:
#   1. cargo build --release (the binary and examples/bench_latency) unless BENCH_SKIP_BUILD=1
#   2. scripts/split-deployment.sh up (TODO_BUS=kafka, on noida-db or, with
#      BENCH_SPLIT_BROKER=tansu, on tansu), on a fresh database; BENCH_KAFKA_PROPERTIES is
#      handed to every service as TODO_KAFKA_PROPERTIES (librdkafka settings)
#   3. pgbench ceilings in a schema of their own: insert transaction, select by id
#   4. wrk straight at the api process: create, then get-by-id over BENCH_SEED seeded tasks;
#      the relay's throughput during the creates, and whether any consumer lag is left 2 s
#      after the load stops (the lag gauges, and the audit log's rows in the database)
#   5. examples/bench_latency events: API -> WebSocket (api process -> Kafka -> sync process)
#      and completion -> next occurrence (api -> Kafka -> recurring -> outbox -> Kafka -> sync)
#   6. a backlog: the broker stopped, BENCH_BACKLOG tasks created (they wait in the outbox),
#      the broker started again, and the time until the outbox and every consumer drained it
#      (noida-db only: tansu keeps its topics in memory, so a restart would lose them)
#   7. down, and a Markdown table of the results
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/todo-target}
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
SEED_COUNT=${BENCH_SEED:-10000}
CREATES=${BENCH_CREATES:-500}
RECURRING=${BENCH_RECURRING:-200}
BACKLOG=${BENCH_BACKLOG:-100000}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
BROKER=${BENCH_SPLIT_BROKER:-noida}
KAFKA_PROPERTIES=${BENCH_KAFKA_PROPERTIES:-}
case $BROKER in
  noida) BROKER_NAME=noida-db ;;
  tansu) BROKER_NAME=tansu ;;
  *) echo "BENCH_SPLIT_BROKER must be noida or tansu, not $BROKER" >&2; exit 2 ;;
esac
# shellcheck source=scripts/lib/numbers.sh
source "$ROOT/scripts/lib/numbers.sh"
positive_integers "$DURATION" "$CONNECTIONS" "$THREADS" "$SEED_COUNT" "$CREATES" "$RECURRING" "$BACKLOG"

run() { printf '+ %s\n' "$*" >&2; "$@"; }
log() { printf '\n== %s\n' "$*" >&2; }
now_ns() { date +%s%N; }
calc() { # calc EXPR NAME=VALUE...: EXPR with one decimal
  local expr=$1 args=() pair
  shift
  for pair in "$@"; do args+=(-v "$pair"); done
  awk "${args[@]}" "BEGIN { printf \"%.1f\", $expr }" 2>/dev/null || echo "?"
}
kv() { sed -n "s/^$1=//p" "$2" | tail -n 1; }
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<" $2"; }
metric_sum() { # metric_sum URL NAME: the sum of every sample of NAME at URL
  curl -fsS "$1/metrics" | awk -v name="$2" '$1 == name || index($1, name "{") == 1 { s += $NF } END { printf "%d", s }'
}

if [[ $SKIP_BUILD != 1 ]]; then
  log "build (release)"
  run cargo build --release --locked --bin todo --example bench_latency
fi
BIN="$CARGO_TARGET_DIR/release/todo"
LATENCY="$CARGO_TARGET_DIR/release/examples/bench_latency"
for tool in wrk pgbench curl; do
  command -v "$tool" >/dev/null || {
    echo "$tool is needed (apt-get install -y wrk postgresql-client curl)" >&2
    exit 1
  }
done

WORK=$(mktemp -d)
DIR="$WORK/deployment"
cleanup() {
  "$ROOT/scripts/split-deployment.sh" down "$DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "the split deployment (TODO_BUS=kafka on $BROKER_NAME${KAFKA_PROPERTIES:+, TODO_KAFKA_PROPERTIES=$KAFKA_PROPERTIES})"
DEPLOY_ENV=(TODO_BIN="$BIN" TODO_BUS=kafka TODO_SPLIT_BROKER="$BROKER" RUST_LOG=warn)
[[ -n $KAFKA_PROPERTIES ]] && DEPLOY_ENV+=(TODO_KAFKA_PROPERTIES="$KAFKA_PROPERTIES")
run env "${DEPLOY_ENV[@]}" \
  "$ROOT/scripts/split-deployment.sh" up "$DIR" >&2
# shellcheck source=/dev/null
source "$DIR/env"
# shellcheck source=/dev/null
source "$DIR/state"
: "${PORT_api:?} ${PORT_sync:?}" # from DIR/state
API="127.0.0.1:$PORT_api"
SYNC="127.0.0.1:$PORT_sync"
export TODO_JWT_SECRET
token() { "$BIN" token --user "$1" 2>/dev/null; }

# --- pgbench ceilings -------------------------------------------------------------------
log "pgbench ceilings ($CONNECTIONS clients, $THREADS threads, ${DURATION}s each)"
PG="$DATABASE_URL"
run psql -q "$PG" -v ON_ERROR_STOP=1 <<'SQL' >&2
CREATE SCHEMA ceiling;
CREATE TABLE ceiling.tasks (LIKE public.tasks INCLUDING ALL);
CREATE TABLE ceiling.events (LIKE public.events INCLUDING ALL);
INSERT INTO ceiling.tasks (id, user_id, title, title_key, description, search_text, completed,
    priority, tags, version, created_at, updated_at)
  SELECT md5(g::text)::uuid, 'pgbench', 'Task ' || g, 'task ' || g, NULL, 'task ' || g, false,
    1, '{}', 1, now(), now()
  FROM generate_series(1, 10000) AS g;
ANALYZE ceiling.tasks;
SQL
# A create: the task row and its outbox row in one transaction, positioned as the store
# positions them; the payload is the size of a task.created event (pgbench would read the
# colons of a JSON text as variables, so it is made by repeat()).
cat >"$WORK/insert.sql" <<'SQL'
\set n random(1, 2000000000)
BEGIN;
INSERT INTO tasks (id, user_id, title, title_key, description, search_text, completed, priority, tags, version, created_at, updated_at) VALUES (gen_random_uuid(), 'pgbench', 'Task ' || :n::text, 'task ' || :n::text, NULL, 'task ' || :n::text, false, 1, '{}', 1, now(), now());
INSERT INTO events (pos, id, topic, key, payload, created_at) VALUES (pg_current_xact_id()::text::bigint * 1048576, gen_random_uuid(), 'task-events', 'pgbench', repeat('x', 620), now());
END;
SQL
cat >"$WORK/select.sql" <<'SQL'
\set k random(1, 10000)
SELECT * FROM tasks WHERE id = md5(:k::text)::uuid AND user_id = 'pgbench';
SQL
pgbench_tps() { # pgbench_tps SCRIPT: transactions per second, in schema ceiling
  if ! PGOPTIONS="-c search_path=ceiling" pgbench -n -M prepared -c "$CONNECTIONS" -j "$THREADS" \
    -T "$DURATION" -f "$1" "$PG" >"$WORK/pgbench.log" 2>&1; then
    cat "$WORK/pgbench.log" >&2
    echo "pgbench failed" >&2
    exit 1
  fi
  sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.log"
}
echo "+ pgbench -n -M prepared -c $CONNECTIONS -j $THREADS -T $DURATION -f insert.sql" >&2
PG_INSERT=$(pgbench_tps "$WORK/insert.sql")
echo "+ pgbench -n -M prepared -c $CONNECTIONS -j $THREADS -T $DURATION -f select.sql" >&2
PG_SELECT=$(pgbench_tps "$WORK/select.sql")
echo "pgbench: insert transaction $PG_INSERT tps, select by id $PG_SELECT tps" >&2
run psql -q "$PG" -c "DROP SCHEMA ceiling CASCADE" >&2

# --- wrk against the api process ---------------------------------------------------------
wrk_run() { # wrk_run MODE USER TOKEN IDS: prints the BENCH_RESULT line
  BENCH_MODE=$1 BENCH_USER=$2 BENCH_TOKEN=$3 BENCH_IDS=$4 \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency \
    -s "$ROOT/bench/wrk.lua" "http://$API/api/$2/tasks" >"$WORK/wrk-$1.txt"
  cat "$WORK/wrk-$1.txt" >&2
  grep '^BENCH_RESULT' "$WORK/wrk-$1.txt"
}
left() {
  local total=0 name
  total=$((total + $(metric_sum "http://$API" todo_outbox_backlog_events)))
  for name in recurring notification audit sync; do
    local port_var="PORT_$name"
    total=$((total + $(metric_sum "http://127.0.0.1:${!port_var}" todo_consumer_lag_events)))
  done
  echo "$total"
}
# wait_drained: until the outbox and every consumer group read no lag (the gauges refresh
# every second, so at least 2 s), at most 300 s; keeps one phase's backlog out of the next.
wait_drained() {
  local i lag=""
  for ((i = 0; i < 300; i++)); do
    lag=$(left)
    if ((i >= 2)) && [[ $lag == 0 ]]; then
      echo "drained (lag 0) after ${i} s" >&2
      return 0
    fi
    sleep 1
  done
  echo "still lagging ($lag events) after 300 s" >&2
}

log "seed $SEED_COUNT tasks for the get workload"
run "$LATENCY" --addr "$API" seed --user bench --count "$SEED_COUNT" --ids-out "$WORK/ids.txt" >"$WORK/seed.txt"
wait_drained

log "wrk: create (api process)"
RELAYED0=$(metric_sum "http://$API" todo_events_relayed_total)
T0=$(now_ns)
CREATE=$(wrk_run create bench-create "$(token bench-create)" "$WORK/ids.txt")
T1=$(now_ns)
RELAYED1=$(metric_sum "http://$API" todo_events_relayed_total)
# The relay's throughput while the creates ran: events published per second (each event
# goes to its topic and to task-updates, counted once here).
RELAY_RATE=$(calc '(b - a) / 2 / ((t1 - t0) / 1e9)' a="$RELAYED0" b="$RELAYED1" t0="$T0" t1="$T1")
# Lag after the load stopped: the outbox (relay backlog) and every consumer group, from the
# gauges (refreshed every second; on Kafka from librdkafka's statistics, also emitted every
# second, so a reading reflects a moment at most about 2 s earlier). Read every 0.25 s for
# 10 s: the value read 2 s after the stop, and the first reading of 0 that is at least 2 s
# after the stop (so it reflects a moment after the stop). Independently, and exactly: when
# the audit log (one consumer group's effect, read from the database) holds every task.
CREATED=$(psql -tA "$PG" -c "SELECT count(*) FROM tasks WHERE user_id = 'bench-create'")
LAG_AT_2="?" LAG_ZERO_AT="not within 10 s" AUDIT_DONE_AT="not within 10 s"
while :; do
  t=$(now_ns)
  elapsed=$(calc '(t - t1) / 1e9' t="$t" t1="$T1")
  awk -v e="$elapsed" 'BEGIN {exit !(e > 10)}' && break
  if [[ $AUDIT_DONE_AT == not* ]] &&
    [[ $(psql -tA "$PG" -c "SELECT count(*) FROM audit_log WHERE user_id = 'bench-create'") -ge $CREATED ]]; then
    AUDIT_DONE_AT="$elapsed s"
  fi
  if awk -v e="$elapsed" 'BEGIN {exit !(e >= 2)}'; then
    lag=$(left)
    [[ $LAG_AT_2 == "?" ]] && LAG_AT_2=$lag
    if [[ $lag == 0 && $LAG_ZERO_AT == not* ]]; then
      LAG_ZERO_AT="$elapsed s"
    fi
  fi
  [[ $LAG_ZERO_AT != not* && $AUDIT_DONE_AT != not* ]] && break
  sleep 0.25
done
echo "after the creates: lag read 2 s after the stop $LAG_AT_2; first zero $LAG_ZERO_AT; audit log complete $AUDIT_DONE_AT" >&2

wait_drained
log "wrk: get by id (api process)"
GET=$(wrk_run get bench "$(token bench)" "$WORK/ids.txt")

wait_drained
# --- event latencies through Kafka --------------------------------------------------------
log "event latencies through Kafka: API -> WebSocket ($CREATES), completion -> next occurrence ($RECURRING)"
run "$LATENCY" --addr "$API" --ws-addr "$SYNC" events --user bench-events --creates "$CREATES" \
  --recurring "$RECURRING" --reminders 1 >"$WORK/events.txt"
cat "$WORK/events.txt" >&2

# --- a backlog of BACKLOG events ------------------------------------------------------------
DRAIN="not run (tansu keeps its topics in memory: a restart loses them)"
if [[ $BROKER == noida ]]; then
  log "backlog: broker stopped, $BACKLOG tasks created, broker started; time to drain"
  run "$ROOT/scripts/split-deployment.sh" kill "$DIR" broker >&2
  run "$LATENCY" --addr "$API" seed --user bench-backlog --count "$BACKLOG" --complete-every 0 \
    --ids-out "$WORK/backlog-ids.txt" >"$WORK/backlog.txt"
  BACKLOG_BEFORE=$(psql -tA "$PG" -c "SELECT count(*) FROM tasks WHERE user_id = 'bench-backlog'")
  T0=$(now_ns)
  run "$ROOT/scripts/split-deployment.sh" start "$DIR" broker >&2
  # Drained when the audit log (the last consumer of each event) holds every backlog task.
  deadline=$(($(date +%s) + 600))
  while :; do
    audited=$(psql -tA "$PG" -c "SELECT count(*) FROM audit_log WHERE user_id = 'bench-backlog'")
    [[ $audited -ge $BACKLOG ]] && break
    [[ $(date +%s) -lt $deadline ]] || { echo "not drained within 600 s: audited $audited of $BACKLOG" >&2; break; }
    sleep 0.2
  done
  T1=$(now_ns)
  DRAIN_S=$(calc '(t1 - t0) / 1e9' t0="$T0" t1="$T1")
  DRAIN="$DRAIN_S s ($(calc 'n / s' n="$BACKLOG_BEFORE" s="$DRAIN_S") events/s)"
fi

# --- results ----------------------------------------------------------------------------------
C_RPS=$(field rps "$CREATE") G_RPS=$(field rps "$GET")
echo
echo "| split deployment (Kafka on $BROKER_NAME${KAFKA_PROPERTIES:+, $KAFKA_PROPERTIES}; $(nproc) cores, everything on one machine) | result | target |"
echo "| --- | --- | --- |"
echo "| pgbench insert transaction (task + outbox row), $CONNECTIONS clients | $PG_INSERT tps | ceiling |"
echo "| pgbench select by id, $CONNECTIONS clients | $PG_SELECT tps | ceiling |"
echo "| create through the api process | $C_RPS req/s ($(calc '100 * c / p' c="$C_RPS" p="$PG_INSERT") % of pgbench), p50 $(field p50_ms "$CREATE") ms, p99 $(field p99_ms "$CREATE") ms | ≥ 50 % of pgbench and ≥ 1,200 |"
echo "| get by id through the api process | $G_RPS req/s ($(calc '100 * g / p' g="$G_RPS" p="$PG_SELECT") % of pgbench), p50 $(field p50_ms "$GET") ms, p99 $(field p99_ms "$GET") ms | ≥ 50 % of pgbench and ≥ 16,900 |"
echo "| relay throughput during the creates | $RELAY_RATE events/s | — |"
echo "| consumer lag + outbox backlog after the creates stopped ($CREATED tasks) | read 2 s after: $LAG_AT_2 events; first 0 (≥ 2 s after): $LAG_ZERO_AT; audit log complete: $AUDIT_DONE_AT | 0, 2 s after |"
echo "| API -> WebSocket through Kafka | p50 $(kv api_ws_p50_ms "$WORK/events.txt") ms, p99 $(kv api_ws_p99_ms "$WORK/events.txt") ms | p99 ≤ 100 ms |"
echo "| completion -> next occurrence through Kafka | p50 $(kv next_occ_p50_ms "$WORK/events.txt") ms, p99 $(kv next_occ_p99_ms "$WORK/events.txt") ms | ≤ 10 s |"
echo "| drain a backlog of $BACKLOG task events (outbox -> broker -> audit) | $DRAIN | — |"
