#!/usr/bin/env bash
# Sustained-write benchmark of the embedded store: creates for BENCH_SUSTAINED_SECS (60)
# at BENCH_CONNECTIONS (32), one server, one SQLite file growing the whole time. Reports
# the throughput, the latency percentiles, the file and WAL sizes, and the longest write
# stall: the server logs every write that waited longer than TODO_SQLITE_SLOW_WRITE_MS
# (set to BENCH_STALL_MS, 50) for its commit as `slow write commit`, with the worst wait
# since its last such line (`worst_ms`). Not a test: it prints numbers against the target
# (no stall over 50 ms) and exits 0 either way.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/todo-target}
SECS=${BENCH_SUSTAINED_SECS:-60}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
STALL_MS=${BENCH_STALL_MS:-50}
# shellcheck source=scripts/lib/numbers.sh
source "$ROOT/scripts/lib/numbers.sh"
positive_integers "$SECS" "$CONNECTIONS" "$THREADS" "$STALL_MS"
run() { printf '+ %s\n' "$*" >&2; "$@"; }

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  run cargo build --release --locked --bin todo
fi
BIN="$CARGO_TARGET_DIR/release/todo"
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install -y wrk)" >&2; exit 1; }

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [[ -z $SERVER_PID ]] || { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "+ TODO_SQLITE_SLOW_WRITE_MS=$STALL_MS TODO_LISTEN_ADDR=127.0.0.1:0 TODO_DATA_DIR=$WORK/data RUST_LOG=warn,todo_app::startup=info $BIN serve &" >&2
TODO_SQLITE_SLOW_WRITE_MS=$STALL_MS TODO_LISTEN_ADDR=127.0.0.1:0 TODO_DATA_DIR="$WORK/data" \
  RUST_LOG=warn,todo_app::startup=info "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
ADDR=""
for _ in $(seq 1 2000); do
  ADDR=$(grep -m 1 -o '"addr":"[^"]*"' "$WORK/server.log" 2>/dev/null | cut -d'"' -f4 || true)
  [[ -n $ADDR ]] && [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/readyz" || true) == 200 ]] && break
  sleep 0.01
done
[[ -n $ADDR ]] || { cat "$WORK/server.log" >&2; echo "server did not start" >&2; exit 1; }
TOKEN=$(TODO_DATA_DIR="$WORK/data" "$BIN" token --user bench)

echo "+ wrk -t$THREADS -c$CONNECTIONS -d${SECS}s --latency (create)" >&2
BENCH_MODE=create BENCH_USER=bench BENCH_TOKEN=$TOKEN \
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECS}s" --timeout 10s --latency \
  -s "$ROOT/bench/wrk.lua" "http://$ADDR/api/bench/tasks" >"$WORK/wrk.txt"
cat "$WORK/wrk.txt" >&2
RESULT=$(grep '^BENCH_RESULT' "$WORK/wrk.txt")
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<" $RESULT"; }
DB=$(du -m "$WORK/data/todo.db" | cut -f1)
WAL=$(du -m "$WORK/data/todo.db-wal" 2>/dev/null | cut -f1 || echo 0)
# Every stall line: its own wait and the worst it stands for.
STALLS=$(grep -c '"message":"slow write commit"' "$WORK/server.log" || true)
read -r WORST WORST_COMMIT COUNTED < <(
  grep '"message":"slow write commit"' "$WORK/server.log" |
    sed -n 's/.*"commit_ms":\([0-9.]*\).*"stalls":\([0-9]*\).*"worst_ms":\([0-9.]*\).*/\3 \1 \2/p' |
    awk '{ if ($1 > w) { w = $1; c = $2 } n += $3 } END { printf "%.1f %.1f %d\n", w, c, n }'
)
echo
echo "| sustained creates ($SECS s, $CONNECTIONS connections) | result | target |"
echo "| --- | --- | --- |"
echo "| throughput | $(field rps) req/s, p50 $(field p50_ms) ms, p99 $(field p99_ms) ms, max $(field max_ms) ms, errors $(($(field status_errors) + $(field timeouts))) | |"
echo "| database file / WAL at the end | $DB MB / $WAL MB | file past 500 MB |"
echo "| writes that waited over $STALL_MS ms | ${COUNTED:-0} (in $STALLS log lines) | 0 |"
echo "| longest wait of a write | ${WORST:-0} ms (on that log line, the transaction of the batch logged took ${WORST_COMMIT:-0} ms) | ≤ 50 ms |"
