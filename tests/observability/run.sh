#!/usr/bin/env bash
# The dashboards and alert rules against a real Prometheus and Alertmanager scraping the
# real platform, embedded and split (tests/observability/prometheus_check.py says what is
# checked). Each mode: start the platform with TODO_FAULTS_ENABLED=true, start the stack
# with scripts/observability.sh (scrape and evaluation every second), run the check, stop.
#
#   tests/observability/run.sh BINARY [embedded|split ...]   (default: both)
#
# The split mode uses scripts/split-deployment.sh (PostgreSQL at 127.0.0.1:5432 and the
# broker of TODO_BUS/TODO_SPLIT_BROKER, noida-db by default, from scripts/install-broker.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=$(realpath "${1:?usage: $0 BINARY [embedded|split ...]}")
shift
modes=("$@")
((${#modes[@]})) || modes=(embedded split)

say() { printf 'observability-e2e: %s\n' "$*"; }
run() { printf '+ %s\n' "$*" >&2; "$@"; }

WORK=$(mktemp -d)
PLATFORM_PID=
SPLIT_UP=0
STACK_UP=0
cleanup() {
  local rc=$?
  if ((STACK_UP)); then
    scripts/observability.sh down "$WORK/stack" >/dev/null 2>&1 || true
  fi
  STACK_UP=0
  if [[ -n $PLATFORM_PID ]]; then
    kill "$PLATFORM_PID" 2>/dev/null || true
    wait "$PLATFORM_PID" 2>/dev/null || true
    PLATFORM_PID=
  fi
  if ((SPLIT_UP)); then
    scripts/split-deployment.sh down "$WORK/split" >/dev/null 2>&1 || true
  fi
  SPLIT_UP=0
  if ((rc != 0)) && [[ -d $WORK ]]; then
    say "failed; the last lines of each log:"
    for log in "$WORK"/*.log "$WORK"/stack/logs/*.log "$WORK"/split/logs/*.log; do
      [[ -f $log ]] && { echo "--- $log"; tail -n 15 "$log"; }
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh

wait_ready() {
  local url=$1 deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; do
    ((SECONDS < deadline)) || { say "$url not ready within 60 s"; return 1; }
    sleep 0.2
  done
}

check() {
  local mode=$1 base=$2 admin=$3 secret=$4
  run observability/check/dashboards.sh --list-promql >"$WORK/promql.ndjson"
  # shellcheck source=/dev/null
  source "$WORK/stack/env"
  run env MODE="$mode" BASE_URL="$base" ADMIN_URLS="$admin" TODO_JWT_SECRET="$secret" \
    PROMETHEUS_URL="$PROMETHEUS_URL" ALERTMANAGER_URL="$ALERTMANAGER_URL" \
    DASHBOARD_PROMQL="$WORK/promql.ndjson" python3 tests/observability/prometheus_check.py
}

embedded() {
  local port secret
  port=$(free_ports 1)
  secret=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  say "embedded: todo serve on 127.0.0.1:$port"
  TODO_LISTEN_ADDR="127.0.0.1:$port" TODO_DATA_DIR="$WORK/data" TODO_JWT_SECRET="$secret" \
    TODO_FAULTS_ENABLED=true "$BIN" serve >"$WORK/embedded.log" 2>&1 &
  PLATFORM_PID=$!
  wait_ready "http://127.0.0.1:$port"
  run scripts/observability.sh up "$WORK/stack" --embedded "127.0.0.1:$port" --interval 1s
  STACK_UP=1
  check embedded "http://127.0.0.1:$port" "http://127.0.0.1:$port" "$secret"
  cleanup_mode
}

split() {
  say "split: five services, PostgreSQL and a broker (scripts/split-deployment.sh)"
  SPLIT_UP=1
  run env TODO_BIN="$BIN" TODO_FAULTS_ENABLED=true scripts/split-deployment.sh up "$WORK/split"
  # shellcheck source=/dev/null
  source "$WORK/split/env"
  local admin
  admin=$(python3 -c 'import json, sys
print(" ".join("http://" + t["targets"][0] for t in json.load(open(sys.argv[1]))))' \
    "$WORK/split/prometheus-targets.json")
  run scripts/observability.sh up "$WORK/stack" --split "$WORK/split" --interval 1s
  STACK_UP=1
  check split "$BASE_URL" "$admin" "$TODO_JWT_SECRET"
  cleanup_mode
}

cleanup_mode() {
  if ((STACK_UP)); then
    scripts/observability.sh down "$WORK/stack"
  fi
  STACK_UP=0
  rm -rf "$WORK/stack"
  if [[ -n $PLATFORM_PID ]]; then
    kill "$PLATFORM_PID"
    wait "$PLATFORM_PID" || true
    PLATFORM_PID=
  fi
  if ((SPLIT_UP)); then
    scripts/split-deployment.sh down "$WORK/split"
  fi
  SPLIT_UP=0
}

for mode in "${modes[@]}"; do
  case $mode in
    embedded) embedded ;;
    split) split ;;
    *) say "unknown mode $mode (embedded or split)" && exit 2 ;;
  esac
done
say "passed: ${modes[*]}"
