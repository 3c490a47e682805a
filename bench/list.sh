#!/usr/bin/env bash
# Server CPU per page of the task list, for one or more builds side by side: each binary
# serves all five services in one process (`todo serve`) on SQLite and on PostgreSQL, with
# 10,000 seeded tasks, and wrk asks for one page (status=pending&priority=high) at each
# size for 10 s. Not a test: it prints a table and exits 0.
#
# Usage: bench/list.sh [BIN ...]     (default: the release binary in CARGO_TARGET_DIR)
#   BENCH_LIST_LIMITS   page sizes (default "50 200")
#   BENCH_LIST_STORES   sqlite and/or postgres (default both; postgres uses a schema of its
#                       own on TODO_TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test)
# Each run waits until the consumers have handled the seed (lag 0) and, on PostgreSQL, runs
# ANALYZE (a freshly filled table has no statistics, and its plans would be the planner's
# guesses), so only the list is measured. On PostgreSQL the database's own CPU per page is
# shown too (every `postgres` process on the machine), so work moved from this process into
# the database is not counted as saved.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/todo-target}
LIMITS=${BENCH_LIST_LIMITS:-50 200}
STORES=${BENCH_LIST_STORES:-sqlite postgres}
PG=${TODO_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
SEEDER="$CARGO_TARGET_DIR/release/examples/bench_latency"
BINS=("$@")
((${#BINS[@]} > 0)) || BINS=("$CARGO_TARGET_DIR/release/todo")
for tool in wrk curl psql "$SEEDER" "${BINS[@]}"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

WORK=$(mktemp -d)
SERVER_PID=""
SCHEMA=""
cleanup() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  [[ -z $SCHEMA ]] || psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

TODO_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export TODO_JWT_SECRET TODO_LOG_FORMAT=json
TICKS=$(getconf CLK_TCK)
# CPU ticks of every PostgreSQL server process (backends and background workers).
pg_ticks() {
  local pid total=0 t
  for pid in $(pgrep -x postgres || true); do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

# measure BIN STORE LIMIT: prints "req/s us_per_request db_us_per_request bytes"
measure() {
  local bin=$1 store=$2 limit=$3 data="$WORK/data" addr="127.0.0.1:18088" url="sqlite://$WORK/data/todo.db" i lag s0 s1 d0 d1 token
  rm -rf "$data" && mkdir -p "$data"
  if [[ $store == postgres ]]; then
    SCHEMA="todo_list_bench_$$"
    psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null 2>&1
    url="$PG?options=-c%20search_path%3D$SCHEMA"
  fi
  DATABASE_URL=$url TODO_LISTEN_ADDR=$addr TODO_DATA_DIR=$data RUST_LOG=info "$bin" serve >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for ((i = 0; i < 200; i++)); do
    curl -sf "http://$addr/readyz" >/dev/null && break
    sleep 0.05
  done
  "$SEEDER" --addr "$addr" seed --user bench --count 10000 --ids-out "$WORK/ids.txt" >/dev/null 2>&1
  for ((i = 0; i < 240; i++)); do
    lag=$(curl -s "http://$addr/metrics" | awk '/^todo_consumer_lag_events[{ ]/ {s += $NF; n++} END {print (n ? s : "?")}')
    ((i > 3)) && [[ $lag == 0 ]] && break
    sleep 0.5
  done
  [[ $store == postgres ]] && psql -q "$url" -c "ANALYZE tasks" >/dev/null
  token=$("$bin" token --user bench)
  s0=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  d0=$(pg_ticks)
  BENCH_MODE=list BENCH_USER=bench BENCH_TOKEN=$token BENCH_LIST_QUERY="status=pending&priority=high&limit=$limit" \
    wrk -t2 -c32 -d10s -s "$ROOT/bench/wrk.lua" "http://$addr/api/bench/tasks" >"$WORK/wrk.txt"
  s1=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  d1=$(pg_ticks)
  local result requests rps bytes
  result=$(grep '^BENCH_RESULT' "$WORK/wrk.txt")
  requests=$(sed -n 's/^BENCH_RESULT requests=\([0-9]*\).*/\1/p' <<<"$result")
  rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$result")
  bytes=$(curl -s -H "Authorization: Bearer $token" "http://$addr/api/bench/tasks?status=pending&priority=high&limit=$limit" | wc -c)
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  if [[ -n $SCHEMA ]]; then
    psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1
    SCHEMA=""
  fi
  awk -v s=$((s1 - s0)) -v d=$((d1 - d0)) -v pg="$([[ $store == postgres ]] && echo 1 || echo 0)" \
    -v t="$TICKS" -v r="$requests" -v rps="$rps" -v b="$bytes" \
    'BEGIN {printf "%s %.1f %s %d\n", rps, s * 1e6 / t / r, (pg ? sprintf("%.1f", d * 1e6 / t / r) : "—"), b}'
}

echo "| binary | store | page | req/s | server CPU µs per page | database CPU µs per page | response bytes |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for store in $STORES; do
  for limit in $LIMITS; do
    for bin in "${BINS[@]}"; do
      echo "+ $bin on $store, limit $limit" >&2
      read -r rps us db bytes < <(measure "$bin" "$store" "$limit")
      echo "| $(basename "$bin") ($(sha256sum "$bin" | cut -c 1-12)) | $store | $limit | $rps | $us | $db | $bytes |"
    done
  done
done
