#!/usr/bin/env bash
# Load benchmark of `todo serve` (embedded SQLite + in-process bus). Not a test: it prints
# numbers and marks each against its target, and exits 0 even when targets are missed.
#
# Usage: bench/run.sh            (from anywhere; see the BENCH_* knobs below)
#
# What it does, all against 127.0.0.1 only:
#   1. cargo build --release (the binary and examples/bench_latency), installs wrk if missing
#   2. start -> ready (spawn to first 200 on /readyz) over BENCH_STARTS fresh starts; RSS idle
#   3. wrk (BENCH_DURATION s, BENCH_CONNECTIONS connections, BENCH_THREADS threads, --latency):
#      /healthz (the ceiling), create, get-by-id and a filtered list over BENCH_SEED seeded
#      tasks, a 70/20/10 read/update/complete mix with RSS sampled (peak)
#   4. event latencies with examples/bench_latency: API -> WebSocket, completion -> next
#      occurrence, reminder remind_at -> WebSocket; then BENCH_WS_CLIENTS idle WebSockets:
#      server memory per client and the fan-out of one event to all of them
#   5. SIGTERM, a Markdown table of results against the targets, temp dirs removed
set -euo pipefail
# Each idle WebSocket holds a descriptor in the server and one in the client.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/todo-target}

DURATION=${BENCH_DURATION:-10}          # seconds per wrk run
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
SEED_COUNT=${BENCH_SEED:-10000}         # tasks of the user behind get/list/mix
STARTS=${BENCH_STARTS:-5}               # fresh starts timed (the last one is benchmarked)
LOG_LEVEL=${BENCH_RUST_LOG:-info}       # RUST_LOG of the server (info: the shipped default)
# The address is read from the info-level "listening" line, so keep that one line whatever
# the level (RUST_LOG=warn would otherwise hide it).
SERVER_RUST_LOG="$LOG_LEVEL,todo_app::startup=info"
CREATES=${BENCH_CREATES:-500}           # API -> WebSocket samples
RECURRING=${BENCH_RECURRING:-200}       # completion -> next occurrence samples
REMINDERS=${BENCH_REMINDERS:-20}        # reminder samples
WS_CLIENTS=${BENCH_WS_CLIENTS:-10000}   # idle WebSocket clients held at once (needs 2 fds each)
LIST_QUERY=${BENCH_LIST_QUERY:-status=pending&priority=high&limit=50}
PERF_PHASE=${BENCH_PERF:-}              # healthz|create|get|list|mix: perf-profile that phase
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}       # 1: use the binaries already in CARGO_TARGET_DIR
SPLIT=${BENCH_SPLIT:-1}                 # 0: skip the split deployment (bench/split.sh) afterwards

# shellcheck source=scripts/lib/numbers.sh
source "$ROOT/scripts/lib/numbers.sh"
positive_integers "$DURATION" "$CONNECTIONS" "$THREADS" "$SEED_COUNT" "$STARTS" "$CREATES" "$RECURRING" "$REMINDERS"

# Prints a command, then runs it.
run() {
  printf '+ %s\n' "$*" >&2
  "$@"
}
log() { printf '\n== %s\n' "$*" >&2; }
now_ns() { date +%s%N; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
# CPU accounting from /proc (in clock ticks): the whole machine, and one process.
TICKS=$(getconf CLK_TCK)
machine_ticks() { awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; all = busy + $5 + $6; print busy, all}' /proc/stat; }
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# ctx_snapshot PID: "tid switches" for every thread (voluntary + involuntary).
ctx_snapshot() {
  local f
  for f in "/proc/$1/task/"*/status; do
    awk -v f="$f" '/^(voluntary|nonvoluntary)_ctxt_switches:/ {s += $2} END {split(f, p, "/"); print p[5], s + 0}' "$f" 2>/dev/null || true
  done
}
# ctx_delta BEFORE AFTER: switches in between, over threads alive at the end (a thread
# that exited meanwhile is left out, so this may undercount slightly, never go negative).
ctx_delta() {
  awk 'NR == FNR {before[$1] = $2; next} {d += $2 - before[$1]} END {print d + 0}' <(echo "$1") <(echo "$2")
}
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
# calc EXPR NAME=VALUE...: decimal arithmetic, one decimal place.
calc() {
  local expr=$1 arg args=()
  shift
  for arg in "$@"; do args+=(-v "$arg"); done
  awk "${args[@]}" "BEGIN {printf \"%.1f\", $expr}"
}
le() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a + 0 <= b + 0)}'; }
# field NAME LINE: the value of NAME=... in a key=value line.
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }
# kv NAME FILE: the value of a NAME=... line.
kv() { sed -n "s/^$1=//p" "$2" | tail -n 1; }
# server_buckets: the server's own request-duration histogram, summed over every route but
# /metrics, as cumulative "le count" lines (le in seconds, +Inf last).
server_buckets() {
  curl -s --max-time 5 "http://$ADDR/metrics" | awk '
    /^todo_http_request_duration_seconds_bucket[{]/ && !/route="[/]metrics"/ {
      match($1, /le="[^"]*"/); sum[substr($1, RSTART + 4, RLENGTH - 5)] += $2 }
    END { for (le in sum) print le, sum[le] }' | sort -g
}
# server_tail BEFORE AFTER: from two server_buckets snapshots, the requests in between as
# "p99 <= X ms, Y % over 5 ms, Z % over 10 ms". The p99 is the upper bound of the bucket
# holding it, so it reads as "at most". This is the time inside the server (middleware in
# to response ready); wrk's figure adds the socket and any wait for a CPU the two share,
# and wrk counts a long wait about once per expected interval it spans (its correction for
# coordinated omission), so a few very slow requests move wrk's p99 much more than this one.
server_tail() {
  awk 'NR == FNR { before[$1] = $2; next }
    { n++; le[n] = $1; c[n] = $2 - before[$1]; if ($1 == "0.005") c5 = c[n]; if ($1 == "0.01") c10 = c[n] }
    END {
      total = c[n]
      if (total <= 0) { print "no requests"; exit }
      for (i = 1; i <= n; i++) if (c[i] >= 0.99 * total) { p99 = le[i] == "+Inf" ? "> 10000" : sprintf("<= %g", le[i] * 1000); break }
      printf "p99 %s ms, %.2f %% over 5 ms, %.2f %% over 10 ms\n", p99, 100 * (total - c5) / total, 100 * (total - c10) / total
    }' <(echo "$1") <(echo "$2")
}

WORK=$(mktemp -d /tmp/todo-bench.XXXXXX)
SERVER_PID=""
SAMPLER_PID=""
PERF_PID=""
cleanup() {
  local status=$?
  [[ -n $PERF_PID ]] && kill -INT "$PERF_PID" 2>/dev/null && wait "$PERF_PID" 2>/dev/null
  [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    stop_server || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
log "machine"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM_TOTAL=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); nproc: $(nproc); cpu: ${CPU_MODEL:-unknown}; memory: $MEM_TOTAL; kernel: $(uname -r)" >&2
echo "load average before: $LOAD_BEFORE" >&2
REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)

log "build"
if [[ $SKIP_BUILD != 1 ]]; then
  (cd "$ROOT" && run cargo build --release --bin todo --example bench_latency)
fi
# Private copies, so a concurrent rebuild cannot swap the binaries mid-run.
run cp "$CARGO_TARGET_DIR/release/todo" "$WORK/todo"
run cp "$CARGO_TARGET_DIR/release/examples/bench_latency" "$WORK/bench_latency"
BIN=$WORK/todo
LATENCY=$WORK/bench_latency
BIN_SHA=$(sha256sum "$BIN" | cut -c 1-12)

if ! command -v wrk >/dev/null; then
  log "installing wrk"
  run apt-get install -y wrk
fi
echo "+ wrk --version" >&2
{ wrk --version 2>&1 || true; } | head -n 1 >&2

TODO_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export TODO_JWT_SECRET TODO_LOG_FORMAT=json
echo "+ export TODO_JWT_SECRET=<64 random hex chars> TODO_LOG_FORMAT=json" >&2

# start_server DATA_DIR LOG: sets SERVER_PID, ADDR, READY_MS, STARTUP_MS (as logged).
start_server() {
  local dir=$1 out=$2 t0 t1 i line
  ADDR=""
  printf '+ TODO_LISTEN_ADDR=127.0.0.1:0 TODO_DATA_DIR=%s RUST_LOG=%s %s serve >%s &\n' \
    "$dir" "$SERVER_RUST_LOG" "$BIN" "$out" >&2
  t0=$(now_ns)
  TODO_LISTEN_ADDR=127.0.0.1:0 TODO_DATA_DIR="$dir" RUST_LOG="$SERVER_RUST_LOG" "$BIN" serve >"$out" 2>&1 &
  SERVER_PID=$!
  # Poll every ~2 ms (plus curl's own start-up), at most 4000 times and 20 s.
  for ((i = 0; i < 4000; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$out" >&2; echo "server exited" >&2; return 1; }
    if [[ -z $ADDR ]]; then
      line=$(grep -m 1 '"message":"listening"' "$out" || true)
      ADDR=$(grep -o '"addr":"[^"]*"' <<<"$line" | cut -d'"' -f4 || true)
    fi
    if [[ -n $ADDR ]] &&
      [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$ADDR/readyz" || true) == 200 ]]; then
      t1=$(now_ns)
      READY_MS=$(calc 'd / 1e6' d=$((t1 - t0)))
      STARTUP_MS=$(grep -o '"startup_ms":[0-9.]*' <<<"$line" | cut -d: -f2 || true)
      [[ $ADDR == 127.0.0.1:* ]] || { echo "not loopback: $ADDR" >&2; return 1; }
      return 0
    fi
    (($(now_ns) - t0 < 20000000000)) || break
    sleep 0.002
  done
  echo "server not ready within 20 s" >&2
  cat "$out" >&2
  return 1
}

# stop_server: SIGTERM, wait (at most 30 s); sets STOP_MS and STOP_STATUS.
stop_server() {
  local t0 i
  run kill -TERM "$SERVER_PID"
  t0=$(now_ns)
  for ((i = 0; i < 3000; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    (($(now_ns) - t0 < 30000000000)) || break
    sleep 0.01
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "server still running 30 s after SIGTERM; SIGKILL" >&2
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  STOP_STATUS=0
  wait "$SERVER_PID" 2>/dev/null || STOP_STATUS=$?
  STOP_MS=$(calc 'd / 1e6' d=$(($(now_ns) - t0)))
  SERVER_PID=""
}

# wait_drained: until every consumer's lag gauge reads 0 (refreshed every second, so at
# least 2 s), at most 180 s. Keeps one phase's event backlog out of the next phase.
wait_drained() {
  local i lag=""
  for ((i = 0; i < 180; i++)); do
    lag=$(curl -s --max-time 2 "http://$ADDR/metrics" |
      awk '/^todo_consumer_lag_events[{ ]/ {s += $NF; n++} END {if (n) print s; else print "?"}')
    if ((i >= 2)) && [[ $lag == 0 ]]; then
      echo "consumers drained (lag 0) after ${i} s" >&2
      return 0
    fi
    sleep 1
  done
  echo "consumers still lagging ($lag events) after 180 s" >&2
}

# ---------------------------------------------------------------------------------------
log "start -> ready ($STARTS fresh starts; the last one stays up)"
READY_SAMPLES=()
for ((s = 1; s <= STARTS; s++)); do
  mkdir "$WORK/data$s"
  start_server "$WORK/data$s" "$WORK/server$s.log"
  READY_SAMPLES+=("$READY_MS")
  echo "start $s: ready after $READY_MS ms (server's startup_ms: ${STARTUP_MS:-?})" >&2
  if ((s < STARTS)); then
    stop_server
    rm -rf "$WORK/data$s"
  fi
done
SERVER_LOG=$WORK/server$STARTS.log
READY_MEDIAN=$(printf '%s\n' "${READY_SAMPLES[@]}" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
READY_MAX=$(printf '%s\n' "${READY_SAMPLES[@]}" | sort -g | tail -n 1)
echo "server pid $SERVER_PID on $ADDR" >&2

run sleep 1
RSS_IDLE=$(rss_kib "$SERVER_PID")
echo "RSS idle: $(mib "$RSS_IDLE") MiB" >&2

TOKEN_BENCH=$("$BIN" token --user bench)
TOKEN_CREATE=$("$BIN" token --user bench-create)
echo "+ $BIN token --user bench; $BIN token --user bench-create" >&2

declare -A RPS P50 P99 ERRS CPU LOADS CTX USPR TAIL
WRK_TIMEOUT=$((DURATION + 30))
# wrk_phase NAME MODE USER TOKEN: one wrk run; fills RPS/P50/P99/ERRS[NAME].
wrk_phase() {
  local name=$1 mode=$2 user=$3 token=$4 out="$WORK/wrk-$1.txt" result url="http://$ADDR/healthz"
  local m0 m1 s0 s1 t0 t1 c0 c1 h0 h1
  [[ $mode == healthz ]] || url="http://$ADDR/api/$user/tasks"
  LOADS[$name]=$(cut -d' ' -f1-3 /proc/loadavg)
  log "wrk: $name (load average ${LOADS[$name]})"
  if [[ $PERF_PHASE == "$name" ]] && command -v perf >/dev/null; then
    echo "+ perf record -F 499 -g -p $SERVER_PID -o $WORK/perf.data -- sleep $DURATION &" >&2
    perf record -F 499 -g -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep "$DURATION" 2>"$WORK/perf.log" &
    PERF_PID=$!
  fi
  export BENCH_TOKEN=$token
  [[ -z $user ]] || echo "+ export BENCH_TOKEN=<token for $user>" >&2
  m0=$(machine_ticks)
  s0=$(proc_ticks "$SERVER_PID")
  c0=$(ctx_snapshot "$SERVER_PID")
  h0=$(server_buckets)
  t0=$(now_ns)
  run timeout "$WRK_TIMEOUT" env BENCH_MODE="$mode" BENCH_USER="$user" BENCH_IDS="$WORK/ids.txt" \
    BENCH_LIST_QUERY="$LIST_QUERY" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency \
    -s "$ROOT/bench/wrk.lua" "$url" >"$out"
  t1=$(now_ns)
  s1=$(proc_ticks "$SERVER_PID")
  c1=$(ctx_snapshot "$SERVER_PID")
  h1=$(server_buckets)
  m1=$(machine_ticks)
  TAIL[$name]=$(server_tail "$h0" "$h1")
  # Cores in use over the run: the server, and every process on the machine (wrk included).
  CPU[$name]="$(calc 's / t / w' s=$((s1 - s0)) t="$TICKS" w="$(calc 'd / 1e9' d=$((t1 - t0)))") / $(calc "n * b / a" n="$(nproc)" \
    b=$((${m1% *} - ${m0% *})) a=$((${m1#* } - ${m0#* })))"
  cat "$out" >&2
  echo "CPU cores used: server / whole machine = ${CPU[$name]} (of $(nproc))" >&2
  echo "server's own request durations: ${TAIL[$name]}" >&2
  if [[ -n $PERF_PID ]]; then
    wait "$PERF_PID" || true
    PERF_PID=""
    echo "+ perf report -i $WORK/perf.data --stdio --no-children -g none --sort comm,dso,sym --percent-limit 0.7" >&2
    perf report -i "$WORK/perf.data" --stdio --no-children -g none --sort comm,dso,sym --percent-limit 0.7 2>/dev/null |
      grep -E '^ +[0-9]' | cut -c 1-160 | head -n 50 >&2 || true
  fi
  result=$(grep '^BENCH_RESULT' "$out")
  RPS[$name]=$(field rps "$result")
  P50[$name]=$(field p50_ms "$result")
  P99[$name]=$(field p99_ms "$result")
  USPR[$name]=$(calc 's * 1e6 / t / r' s=$((s1 - s0)) t="$TICKS" r="$(field requests "$result")")
  CTX[$name]=$(calc 'c / r' c="$(ctx_delta "$c0" "$c1")" r="$(field requests "$result")")
  ERRS[$name]=$(($(field connect_errors "$result") + $(field read_errors "$result") + \
    $(field write_errors "$result") + $(field timeouts "$result") + $(field status_errors "$result")))
}

wrk_phase healthz healthz "" ""
wrk_phase create create bench-create "$TOKEN_CREATE"
wait_drained

log "seed: $SEED_COUNT tasks for user bench"
run "$LATENCY" --addr "$ADDR" seed --user bench --count "$SEED_COUNT" --concurrency "$CONNECTIONS" \
  --ids-out "$WORK/ids.txt" | tee "$WORK/seed.txt" >&2
wait_drained
LIST_MATCHES=$(curl -s --max-time 10 -H "Authorization: Bearer $TOKEN_BENCH" \
  "http://$ADDR/api/bench/tasks?$LIST_QUERY" | grep -o '"id":"' | wc -l)
echo "list page returns $LIST_MATCHES items" >&2

wrk_phase get get bench "$TOKEN_BENCH"
wrk_phase list list bench "$TOKEN_BENCH"

# The mix, with RSS sampled every 100 ms (bounded by count).
RSS_SAMPLES=$((DURATION * 10 + 100))
(for ((i = 0; i < RSS_SAMPLES; i++)); do
  rss_kib "$SERVER_PID" || break
  sleep 0.1
done) >"$WORK/rss-mix.txt" &
SAMPLER_PID=$!
wrk_phase mix mix bench "$TOKEN_BENCH"
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
RSS_MIX_PEAK=$(sort -n "$WORK/rss-mix.txt" | tail -n 1)
RSS_HWM=$(hwm_kib "$SERVER_PID")
echo "RSS during the mix: peak $(mib "$RSS_MIX_PEAK") MiB over $(wc -l <"$WORK/rss-mix.txt") samples; VmHWM $(mib "$RSS_HWM") MiB" >&2
wait_drained

log "event latencies (load average $(cut -d' ' -f1-3 /proc/loadavg))"
run timeout 600 "$LATENCY" --addr "$ADDR" events --user bench-events --creates "$CREATES" \
  --recurring "$RECURRING" --reminders "$REMINDERS" | tee "$WORK/events.txt" >&2
EV=$WORK/events.txt

RSS_END=$(rss_kib "$SERVER_PID")
RSS_HWM=$(hwm_kib "$SERVER_PID")

log "$WS_CLIENTS idle WebSocket clients: memory per client, fan-out of one event to all"
run timeout 300 "$LATENCY" --addr "$ADDR" ws-idle --clients "$WS_CLIENTS" --server-pid "$SERVER_PID" \
  | tee -a "$EV" >&2
DB_SIZE=$(du -sh "$WORK/data$STARTS" | cut -f1)
LOG_LINES=$(wc -l <"$SERVER_LOG")
# Write stalls the server reported (one WARN line a second at most; `stalls` counts the rest).
# One pass over the log: the stalls counted and the longest (num: a field's number, 0 if absent).
read -r STALLS STALL_WORST < <(awk '
  function num(name, v) { if (!match($0, "\"" name "\":[0-9.]+")) return 0
    v = substr($0, RSTART, RLENGTH); sub(/.*:/, "", v); return v + 0 }
  /"message":"slow write commit"/ { s += num("stalls"); w = num("worst_ms") > w ? num("worst_ms") : w }
  END { print s + 0, w + 0 }' "$SERVER_LOG")
[[ $STALL_WORST != 0 ]] || STALL_WORST=""
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "stop"
stop_server
echo "stopped in $STOP_MS ms, exit status $STOP_STATUS" >&2

# ---------------------------------------------------------------------------------------
HZ=${RPS[healthz]}
PASSES=0
MISSES=0
VERDICT=""
# verdict OK WHY: sets VERDICT and counts it.
verdict() {
  if [[ $1 == 1 ]]; then
    PASSES=$((PASSES + 1))
    VERDICT=PASS
  else
    MISSES=$((MISSES + 1))
    VERDICT="MISS ($2)"
  fi
}
throughput_row() { # LABEL NAME MIN_PCT MAX_P99
  local label=$1 name=$2 min=$3 max=$4 pct ok=1 why=()
  pct=$(calc '100 * a / b' a="${RPS[$name]}" b="$HZ")
  le "$min" "$pct" || { ok=0; why+=("$pct % < $min %"); }
  le "${P99[$name]}" "$max" || { ok=0; why+=("p99 ${P99[$name]} ms > $max ms"); }
  [[ ${ERRS[$name]} == 0 ]] || { ok=0; why+=("${ERRS[$name]} errors"); }
  verdict "$ok" "$(IFS=';'; echo "${why[*]}")"
  printf '| %s | %.0f | %s %% | %s | %s | %s | ≥ %s %% of /healthz, p99 ≤ %s ms | %s |\n' \
    "$label" "${RPS[$name]}" "$pct" "${P50[$name]}" "${P99[$name]}" "${ERRS[$name]}" "$min" "$max" "$VERDICT"
}
latency_row() { # LABEL PREFIX STAT LIMIT_MS  (STAT: p99 or max)
  local label=$1 p=$2 stat=$3 limit=$4 n p50 val missed ok=1 why=()
  n=$(kv "${p}_n" "$EV")
  p50=$(kv "${p}_p50_ms" "$EV")
  val=$(kv "${p}_${stat}_ms" "$EV")
  missed=$(kv "${p}_missed" "$EV")
  le "$val" "$limit" || { ok=0; why+=("$stat $val ms > $limit ms"); }
  [[ ${missed:-0} == 0 ]] || { ok=0; why+=("$missed events not received"); }
  verdict "$ok" "$(IFS=';'; echo "${why[*]}")"
  printf '| %s | n=%s, p50 %s ms, %s %s ms | %s ≤ %s ms | %s |\n' "$label" "$n" "$p50" "$stat" "$val" \
    "$stat" "$limit" "$VERDICT"
}
limit_row() { # LABEL VALUE UNIT LIMIT DETAIL
  local ok=1
  le "$2" "$4" || ok=0
  verdict "$ok" "$(calc 'v - l' v="$2" l="$4") $3 over"
  printf '| %s | %s %s%s | ≤ %s %s | %s |\n' "$1" "$2" "$3" "$5" "$4" "$3" "$VERDICT"
}

{
  echo
  echo "## todo serve benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "revision $REVISION (uncommitted changed paths: $DIRTY), binary sha256 $BIN_SHA; $(nproc) CPUs ($CPU_MODEL), $MEM_TOTAL, kernel $(uname -r)"
  echo "load average before $LOAD_BEFORE, after $LOAD_AFTER; RUST_LOG=$SERVER_RUST_LOG; wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; seeded tasks $(kv seed_created "$WORK/seed.txt") (completed $(kv seed_completed "$WORK/seed.txt")), list page $LIST_MATCHES items"
  [[ -z $PERF_PHASE ]] || echo "perf was recording during phase '$PERF_PHASE' (its numbers include that overhead)"
  echo
  echo "| Endpoint (wrk) | req/s | vs /healthz | p50 ms | p99 ms | errors | Target | Result |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"
  printf '| GET /healthz (ceiling) | %.0f | 100 %% | %s | %s | %s | | |\n' "$HZ" "${P50[healthz]}" "${P99[healthz]}" "${ERRS[healthz]}"
  throughput_row "GET task by id" get 50 5
  throughput_row "POST create (durable)" create 20 20
  throughput_row "GET filtered list ($LIST_QUERY)" list 10 20
  mix_ok=1 mix_why=()
  le "${P99[mix]}" 10 || { mix_ok=0; mix_why+=("p99 ${P99[mix]} ms > 10 ms"); }
  [[ ${ERRS[mix]} == 0 ]] || { mix_ok=0; mix_why+=("${ERRS[mix]} errors"); }
  verdict "$mix_ok" "$(IFS=';'; echo "${mix_why[*]}")"
  printf '| Mix 70 %% get / 20 %% PUT / 10 %% complete | %.0f | %s %% | %s | %s | %s | p99 ≤ 10 ms | %s |\n' "${RPS[mix]}" \
    "$(calc '100 * a / b' a="${RPS[mix]}" b="$HZ")" "${P50[mix]}" "${P99[mix]}" "${ERRS[mix]}" "$VERDICT"
  echo
  echo "| wrk phase | load average (1/5/15 min) at start | CPU cores used: server / whole machine (of $(nproc)) | server CPU µs per request | server context switches per request | server's own request durations (histogram) |"
  echo "| --- | --- | --- | ---: | ---: | --- |"
  for name in healthz create get list mix; do
    echo "| $name | ${LOADS[$name]} | ${CPU[$name]} | ${USPR[$name]} | ${CTX[$name]} | ${TAIL[$name]} |"
  done
  echo
  echo "| Measurement | Result | Target | Result |"
  echo "| --- | --- | --- | --- |"
  latency_row "API call → WebSocket event" api_ws p99 20
  latency_row "Completion → next occurrence on WebSocket (list-confirmed $(kv next_occ_confirmed_by_list "$EV"))" next_occ p99 50
  latency_row "Reminder remind_at → reminder.due on WebSocket" reminder max 1000
  latency_row "One event → all $(kv ws_clients "$EV") idle WebSocket clients of its user" ws_fanout p99 2000
  limit_row "Server memory per idle WebSocket client" "$(kv ws_kib_per_client "$EV")" KiB 16 " ($(kv ws_clients "$EV") clients: RSS $(mib "$(kv ws_rss_before_kib "$EV")") → $(mib "$(kv ws_rss_after_kib "$EV")") MiB)"
  limit_row "RSS idle (after ready + 1 s)" "$(mib "$RSS_IDLE")" MiB 40 ""
  limit_row "RSS peak during the mix (100 ms samples)" "$(mib "$RSS_MIX_PEAK")" MiB 200 " (VmHWM at end $(mib "$RSS_HWM") MiB, RSS at end $(mib "$RSS_END") MiB)"
  limit_row "Start → ready (max of $STARTS fresh starts)" "$READY_MAX" ms 500 " (median $READY_MEDIAN ms)"
  echo
  echo "Also: API create response p50 $(kv api_resp_p50_ms "$EV") ms / p99 $(kv api_resp_p99_ms "$EV") ms (sequential); seed $(kv seed_requests_per_sec "$WORK/seed.txt") req/s; SIGTERM → exit $STOP_MS ms (status $STOP_STATUS); data dir $DB_SIZE; $LOG_LINES log lines; writes waiting over the slow-commit threshold (WARN \`slow write commit\`): $STALLS${STALL_WORST:+, the longest $(calc 'w' w="$STALL_WORST") ms}."
  echo "$PASSES PASS, $MISSES MISS"
}

if [[ $SPLIT != 0 ]]; then
  log "the split deployment: bench/split.sh (PostgreSQL, Kafka, five processes; pgbench ceilings)"
  BENCH_SKIP_BUILD=1 "$ROOT/bench/split.sh"
fi
