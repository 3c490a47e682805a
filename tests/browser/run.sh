#!/usr/bin/env bash
# Real-browser test of CORS and the WebSocket origin check: starts the todo server with
# TODO_CORS_ORIGINS naming one loopback page origin, serves page.html from that origin and
# from a second one that is not allowed, and lets cors.mjs drive Chromium through both.
#
#   tests/browser/run.sh path/to/todo      (or TODO_BIN=path/to/todo tests/browser/run.sh)
#
# Builds nothing. Needs python3, node with `npm ci` done in tests/browser, and Chromium
# (CHROMIUM, default /usr/bin/chromium). Prints a PASS/FAIL line per test and last
# "<n> passed, <m> failed"; exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly here
# The tests in cors.mjs, counted as failed when setup stops before they can run.
readonly TESTS=2
chromium=${CHROMIUM:-/usr/bin/chromium}
bin=${1:-${TODO_BIN:-}}

setup_failed() {
  echo "FAIL setup: $*"
  echo "0 passed, $TESTS failed"
  exit 1
}

[[ -n $bin ]] || setup_failed "give the todo binary as the first argument or in TODO_BIN"
[[ -x $bin ]] || setup_failed "$bin is not an executable file"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[[ -x $chromium ]] || setup_failed "no Chromium at $chromium (apt-get install chromium, or set CHROMIUM)"
[[ -d $here/node_modules/playwright-core ]] ||
  setup_failed "playwright-core is not installed: run 'npm ci --no-audit --no-fund' in $here"
command -v python3 >/dev/null || setup_failed "python3 is required to serve the page"

work=$(mktemp -d "${TMPDIR:-/tmp}/todo-browser.XXXXXX")
pids=()
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$work/web" "$work/data" "$work/profile"
cp "$here/page.html" "$work/web/index.html"

# Waits up to 10 s for a line of $1 matching the sed expression $2; prints what it captures.
wait_for() {
  local file=$1 expr=$2 what=$3 found deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)); do
    found=$(sed -n "$expr" "$file" 2>/dev/null | head -n 1)
    if [[ -n $found ]]; then
      echo "$found"
      return 0
    fi
    sleep 0.05
  done
  echo "timed out waiting for $what; its output:" >&2
  cat "$file" >&2
  return 1
}

# Each process binds port 0 and reports the port it got: free ports without a race.
python3 -u -m http.server --bind 127.0.0.1 --directory "$work/web" 0 >"$work/page-allowed.log" 2>&1 &
pids+=("$!")
python3 -u -m http.server --bind 127.0.0.1 --directory "$work/web" 0 >"$work/page-other.log" 2>&1 &
pids+=("$!")
port_line='s/^Serving HTTP on 127\.0\.0\.1 port \([0-9]*\).*/\1/p'
allowed_port=$(wait_for "$work/page-allowed.log" "$port_line" "the page server") ||
  setup_failed "the page server did not start"
other_port=$(wait_for "$work/page-other.log" "$port_line" "the second page server") ||
  setup_failed "the second page server did not start"
allowed_origin="http://127.0.0.1:$allowed_port"
other_origin="http://127.0.0.1:$other_port"

# A clean environment: only what this test sets reaches the server and `todo token`.
todo_env=(env -i "PATH=$PATH" "HOME=$work" "TODO_DATA_DIR=$work/data" "TODO_LOG_FORMAT=json" "RUST_LOG=info")
"${todo_env[@]}" TODO_LISTEN_ADDR=127.0.0.1:0 TODO_CORS_ORIGINS="$allowed_origin" \
  "$bin" serve >"$work/server.log" 2>&1 &
pids+=("$!")
api_addr=$(wait_for "$work/server.log" \
  '/"message":"listening"/s/.*"addr":"\([^"]*\)".*/\1/p' "the todo server") ||
  setup_failed "the todo server did not start"
api="http://$api_addr"
# Started after the server, so the server generated the secret this token is signed with.
token=$("${todo_env[@]}" "$bin" token --user alice) || setup_failed "todo token failed"

echo "api $api (TODO_CORS_ORIGINS=$allowed_origin); allowed page $allowed_origin; other page $other_origin"
# cors.mjs prints a PASS or FAIL line per test, then a summary. It runs in the background so
# the traps can stop it (and its browser); its summary is printed last, after the server log
# when something failed.
summary_re='^[0-9]+ passed, [0-9]+ failed$'
API=$api TOKEN=$token USER_ID=alice \
  ALLOWED_PAGE="$allowed_origin/index.html" OTHER_PAGE="$other_origin/index.html" \
  CHROMIUM=$chromium PROFILE_DIR="$work/profile" \
  timeout 120 node "$here/cors.mjs" >"$work/results" 2>&1 &
driver=$!
pids+=("$driver")
status=0
wait "$driver" || status=$?
grep -Ev "$summary_re" "$work/results" || true
summary=$(grep -E "$summary_re" "$work/results" | tail -n 1 || true)
if [[ -z $summary ]]; then
  passed=$(grep -c '^PASS ' "$work/results" || true)
  echo "FAIL driver: cors.mjs stopped (exit $status) before reporting every test"
  summary="$passed passed, $((TESTS - passed)) failed"
  ((status != 0)) || status=1
fi
if ((status != 0)); then
  echo "--- server log (last 40 lines)"
  tail -n 40 "$work/server.log"
fi
echo "$summary"
exit "$status"
