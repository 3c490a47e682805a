#!/usr/bin/env bash
# What telemetry costs: the embedded platform's 70/20/10 mix with telemetry off and on, in
# alternating rounds on one seeded data directory, and the time /metrics takes to answer.
# Not a test: it prints numbers against the targets and exits 0 even when they are missed.
#
#   bench/telemetry.sh        (knobs: BENCH_DURATION s per round, BENCH_ROUNDS per mode,
#                              BENCH_CONNECTIONS, BENCH_THREADS, BENCH_SEED, BENCH_SKIP_BUILD)
#
# off: no trace export (OTEL_* unset) and nothing scraping /metrics.
# on:  every span exported over OTLP/HTTP to a real receiver (rotel-agent, which drops
#      them: a Rust collector, so the receiver costs little of the shared CPU; sampler
#      always_on, batch delay 1 s) and Prometheus (scripts/observability.sh) scraping
#      /metrics every second with the rules evaluated. Traces are sampled at 10 %
#      (parentbased_traceidratio 0.1, the production setting of docs/tracing.md);
#      BENCH_SAMPLER_ARG=1 exports every span (always_on).
# Targets: the mix's req/s with telemetry on within 5 % of off; /metrics answered within
# 10 ms with every label combination present (examples/bench_metrics renders that worst
# case; the live server's /metrics is timed too).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/todo-target}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
SEED_COUNT=${BENCH_SEED:-10000}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}

run() { printf '+ %s\n' "$*" >&2; "$@"; }
log() { printf '\n== %s\n' "$*" >&2; }
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }
# shellcheck source=scripts/lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"

WORK=$(mktemp -d /tmp/todo-bench-telemetry.XXXXXX)
SERVER_PID="" RECEIVER_PID="" STACK=0
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() {
  local status=$?
  stop_server
  if ((STACK)); then "$ROOT/scripts/observability.sh" down "$WORK/stack" >/dev/null 2>&1 || true; fi
  if [[ -n $RECEIVER_PID ]]; then kill "$RECEIVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

log "build"
if [[ $SKIP_BUILD != 1 ]]; then
  (cd "$ROOT" && run cargo build --release --bin todo --example bench_latency --example bench_metrics)
fi
run cp "$CARGO_TARGET_DIR/release/todo" "$CARGO_TARGET_DIR/release/examples/bench_latency" \
  "$CARGO_TARGET_DIR/release/examples/bench_metrics" "$WORK/"
command -v wrk >/dev/null || run apt-get install -y -qq wrk
run "$ROOT/scripts/install-oteltap.sh" >&2

read -r PORT RECEIVER_PORT RECEIVER_GRPC_PORT <<<"$(free_ports 3)"
ADDR=127.0.0.1:$PORT
SAMPLER_ARG=${BENCH_SAMPLER_ARG:-0.1}
TODO_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export TODO_JWT_SECRET TODO_LOG_FORMAT=json

# start_server off|on: the same address and data each time.
start_server() {
  local mode=$1
  local -a otel=()
  if [[ $mode == on ]]; then
    otel=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$RECEIVER_PORT"
      OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_BSP_SCHEDULE_DELAY=1000)
    if [[ $SAMPLER_ARG != 1 ]]; then
      otel+=(OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG="$SAMPLER_ARG")
    else
      otel+=(OTEL_TRACES_SAMPLER=always_on)
    fi
  fi
  printf '+ %s TODO_LISTEN_ADDR=%s todo serve &\n' "${otel[*]}" "$ADDR" >&2
  env "${otel[@]}" TODO_LISTEN_ADDR="$ADDR" TODO_DATA_DIR="$WORK/data" "$WORK/todo" serve \
    >>"$WORK/server-$mode.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 500); do
    curl -fs -o /dev/null "http://$ADDR/readyz" && return 0
    sleep 0.02
  done
  tail -n 20 "$WORK/server-$mode.log" >&2
  return 1
}

log "receiver and seed"
echo "+ rotel-agent start --otlp-http-endpoint 127.0.0.1:$RECEIVER_PORT --exporter blackhole &" >&2
"$ROOT/.tools/otel/bin/rotel-agent" start --otlp-http-endpoint "127.0.0.1:$RECEIVER_PORT" \
  --otlp-grpc-endpoint "127.0.0.1:$RECEIVER_GRPC_PORT" --exporter blackhole >"$WORK/receiver.log" 2>&1 &
RECEIVER_PID=$!
start_server off
run "$WORK/bench_latency" --addr "$ADDR" seed --user bench --count "$SEED_COUNT" \
  --concurrency "$CONNECTIONS" --ids-out "$WORK/ids.txt" >&2
TOKEN=$(TODO_DATA_DIR="$WORK/data" "$WORK/todo" token --user bench)
stop_server

SAMPLES_off=() SAMPLES_on=()
mix_round() {
  local mode=$1 out=$WORK/wrk-$1.txt result
  start_server "$mode"
  if [[ $mode == on ]]; then
    run "$ROOT/scripts/observability.sh" up "$WORK/stack" --embedded "$ADDR" --interval 1s >&2
    STACK=1
  fi
  run env BENCH_MODE=mix BENCH_USER=bench BENCH_TOKEN="$TOKEN" BENCH_IDS="$WORK/ids.txt" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency \
    -s "$ROOT/bench/wrk.lua" "http://$ADDR" >"$out"
  result=$(grep '^BENCH_RESULT' "$out")
  local rps
  rps=$(field rps "$result")
  echo "mix, telemetry $mode: $rps req/s, p50 $(field p50_ms "$result") ms, p99 $(field p99_ms "$result") ms" >&2
  if [[ $mode == on ]]; then
    SAMPLES_on+=("$rps")
    # /metrics of the live server, scraped by Prometheus meanwhile: 100 sequential GETs.
    for _ in $(seq 100); do
      curl -s -o /dev/null -w '%{time_total}\n' "http://$ADDR/metrics"
    done | sort -g >"$WORK/metrics-times.txt"
    "$ROOT/scripts/observability.sh" down "$WORK/stack" >&2
    STACK=0
  else
    SAMPLES_off+=("$rps")
  fi
  stop_server
}

log "mix: $ROUNDS rounds per mode, alternating, ${DURATION} s each"
for ((r = 1; r <= ROUNDS; r++)); do
  mix_round off
  mix_round on
done
# The exporter logs a WARN when the receiver refuses or is unreachable: none means every
# batch was taken.
EXPORT_WARNINGS=$(grep -c '"level":"WARN".*export' "$WORK/server-on.log" || true)

log "/metrics with every label combination (examples/bench_metrics)"
WORST=$(run "$WORK/bench_metrics" 500)
echo "$WORST" >&2

mean() { printf '%s\n' "$@" | awk '{s += $1} END {printf "%.0f", s / NR}'; }
OFF=$(mean "${SAMPLES_off[@]}")
ON=$(mean "${SAMPLES_on[@]}")
DIFF=$(awk -v a="$OFF" -v b="$ON" 'BEGIN {printf "%.1f", 100 * (a - b) / a}')
LIVE_P50=$(awk '{a[NR] = $1 * 1000} END {printf "%.2f", a[int(NR / 2)]}' "$WORK/metrics-times.txt")
LIVE_MAX=$(awk '{m = $1 * 1000} END {printf "%.2f", m}' "$WORK/metrics-times.txt")
verdict() { awk -v v="$1" -v t="$2" 'BEGIN {print (v + 0 <= t + 0) ? "met" : "missed"}'; }

cat <<EOF

### Telemetry overhead ($(date -u +%Y-%m-%d), $(nproc) cores, revision $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))

| measure | value | target | verdict |
| --- | --- | --- | --- |
| mix req/s, telemetry off (mean of $ROUNDS × ${DURATION} s: ${SAMPLES_off[*]}) | $OFF | | |
| mix req/s, telemetry on (mean of $ROUNDS × ${DURATION} s: ${SAMPLES_on[*]}) | $ON | | |
| difference | $DIFF % | ≤ 5 % | $(verdict "$DIFF" 5) |
| export warnings (refused or lost batches) | $EXPORT_WARNINGS | 0 | |
| live /metrics while scraped, 100 GETs: median / max | $LIVE_P50 / $LIVE_MAX ms | ≤ 10 ms | $(verdict "$LIVE_MAX" 10) |
| every label combination: series, bytes | $(field series " $WORST") series, $(field bytes " $WORST") bytes | | |
| every label combination: render p50 / p99 / max | $(field p50_ms " $WORST") / $(field p99_ms " $WORST") / $(field max_ms " $WORST") ms | ≤ 10 ms | $(verdict "$(field max_ms " $WORST")" 10) |

wrk -t$THREADS -c$CONNECTIONS, $SEED_COUNT seeded tasks; "on" = traces sampled at ratio $SAMPLER_ARG, exported over OTLP/HTTP to rotel-agent, plus Prometheus scraping every 1 s.
EOF
