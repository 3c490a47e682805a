#!/usr/bin/env bash
# Trimming benchmark of the embedded event log: does a trim with much to delete hold up the
# writes around it? BENCH_FILL_SECS (15) of creates fill the log; the server stops, every
# event in the file is made three hours older (python3's sqlite3), and the server starts
# again with TODO_EVENT_RETENTION_HOURS=1 under BENCH_LOAD_SECS (75) of creates at
# BENCH_CONNECTIONS (32). The first trim runs a minute after start, so in the middle of
# them. Reports the events trimmed, the writes that waited longer than BENCH_STALL_MS (20)
# for their commit (`slow write commit`) and the creates' latency. Not a test: it prints
# numbers and exits 0 either way.
#
# Usage: bench/trim.sh [BIN]     (default: the release binary in CARGO_TARGET_DIR)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/todo-target}
FILL_SECS=${BENCH_FILL_SECS:-15}
LOAD_SECS=${BENCH_LOAD_SECS:-75}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
STALL_MS=${BENCH_STALL_MS:-20}
# shellcheck source=scripts/lib/numbers.sh
source "$ROOT/scripts/lib/numbers.sh"
positive_integers "$FILL_SECS" "$LOAD_SECS" "$CONNECTIONS" "$STALL_MS"
((LOAD_SECS > 65)) || { echo "BENCH_LOAD_SECS must pass the trim at 60 s" >&2; exit 2; }
BIN=${1:-$CARGO_TARGET_DIR/release/todo}
for tool in wrk curl python3 "$BIN"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [[ -z $SERVER_PID ]] || { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

TODO_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export TODO_JWT_SECRET TODO_LOG_FORMAT=json
ADDR=127.0.0.1:18098

start() {
  echo "+ TODO_EVENT_RETENTION_HOURS=1 TODO_SQLITE_SLOW_WRITE_MS=$STALL_MS TODO_DATA_DIR=$WORK/data $BIN serve &" >&2
  TODO_EVENT_RETENTION_HOURS=1 TODO_SQLITE_SLOW_WRITE_MS=$STALL_MS TODO_LISTEN_ADDR=$ADDR \
    TODO_DATA_DIR="$WORK/data" RUST_LOG=info "$BIN" serve >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 400); do
    curl -sf "http://$ADDR/readyz" >/dev/null && return
    sleep 0.05
  done
  cat "$WORK/server.log" >&2
  echo "server did not start" >&2
  exit 1
}
stop() {
  kill "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=""
}
creates() {
  echo "+ wrk -t2 -c$CONNECTIONS -d${1}s --latency (create)" >&2
  BENCH_MODE=create BENCH_USER=bench BENCH_TOKEN=$TOKEN \
    wrk -t2 -c"$CONNECTIONS" -d"${1}s" --timeout 10s --latency \
    -s "$ROOT/bench/wrk.lua" "http://$ADDR/api/bench/tasks"
}

mkdir -p "$WORK/data"
start
TOKEN=$("$BIN" token --user bench)
creates "$FILL_SECS" >/dev/null
# Every consumer must be past the events, or the trim keeps them.
for _ in $(seq 1 240); do
  lag=$(curl -s "http://$ADDR/metrics" | awk '/^todo_consumer_lag_events[{ ]/ {s += $NF; n++} END {print (n ? s : "?")}')
  [[ $lag == 0 ]] && break
  sleep 0.5
done
stop
AGED=$(python3 - "$WORK/data/todo.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE events SET created_at = created_at - 3 * 3600 * 1000000")
db.commit()
print(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
EOF
)
echo "events aged by three hours: $AGED" >&2
start
creates "$LOAD_SECS" >"$WORK/wrk.txt"
stop

echo "the trim's and the stalls' log lines (the trim is logged when it ends):" >&2
grep -E '"message":"(listening|event log trimmed|slow write commit)"' "$WORK/server.log" | cut -c 1-300 >&2 || true
RESULT=$(grep '^BENCH_RESULT' "$WORK/wrk.txt")
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<" $RESULT"; }
TRIMMED=$(grep -o '"message":"event log trimmed".*"deleted":[0-9]*' "$WORK/server.log" | grep -o '[0-9]*$' || echo 0)
STALLS=$(grep -c '"message":"slow write commit"' "$WORK/server.log" || true)
WORST=$(grep -o '"worst_ms":[0-9.]*' "$WORK/server.log" | cut -d: -f2 | sort -g | tail -n 1 || true)

echo
echo "| trim under creates ($LOAD_SECS s, $CONNECTIONS connections) | result |"
echo "| --- | --- |"
echo "| events in the log, aged past the retention | $AGED |"
echo "| events the trim deleted | ${TRIMMED:-0} |"
echo "| writes that waited over $STALL_MS ms | $STALLS${WORST:+, the longest $WORST ms} |"
echo "| creates | $(field rps) req/s, p50 $(field p50_ms) ms, p99 $(field p99_ms) ms, longest $(field max_ms) ms, errors $(( $(field connect_errors) + $(field read_errors) + $(field write_errors) + $(field timeouts) + $(field status_errors) )) |"
