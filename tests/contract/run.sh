#!/usr/bin/env bash
# Contract tests against the real server: schemathesis fuzzes the served /openapi.json with
# every check (positive and negative data, stateful links), then a client generated from the
# same document by openapi-python-client drives one task through its life.
#
#   tests/contract/run.sh PATH_TO_TODO_BINARY [MAX_EXAMPLES]
#
# Installs its pinned tools into .tools/contract-venv (git-ignored). MAX_EXAMPLES (default 120)
# is per operation and per phase; see docs/testing.md for a long run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:?usage: run.sh PATH_TO_TODO_BINARY [MAX_EXAMPLES]}"
examples="${2:-120}"
venv="$root/.tools/contract-venv"
schemathesis_version="4.32.5"
generator_version="0.29.1"
validator_version="0.9.0"

if ! "$venv/bin/python" -c "import schemathesis, openapi_python_client, openapi_spec_validator" 2>/dev/null \
  || [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$schemathesis_version" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$schemathesis_version" "openapi-python-client==$generator_version" \
    "openapi-spec-validator==$validator_version"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
"$bin" serve --listen-addr "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
server_pid=$!
deadline=$((SECONDS + 30))
until curl -fsS "$base/readyz" >/dev/null 2>&1; do
  if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$server_pid" 2>/dev/null; then
    echo "server did not become ready; its log:" >&2; tail -50 "$work/server.log" >&2; exit 1
  fi
  sleep 0.1
done
token="$("$bin" token --user alice --data-dir "$work/data")"

echo "== openapi-spec-validator $validator_version: the served document is valid OpenAPI 3.1"
curl -fsS "$base/openapi.json" >"$work/openapi.json"
"$venv/bin/openapi-spec-validator" "$work/openapi.json"

echo "== schemathesis $schemathesis_version: every check, all phases, $examples examples per operation"
status=0
(cd "$here" && "$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$base/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks all --phases examples,coverage,fuzzing,stateful \
  --max-examples "$examples" --seed "${SCHEMATHESIS_SEED:-20261201}" \
  --report ndjson --report-dir "$work/report" --no-color) || status=$?
if grep -q '"status": *500\|"status_code": *500' "$work/report"/*.ndjson 2>/dev/null; then
  echo "a 500 was answered during the run" >&2; status=1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures (exit $status)" >&2
  exit "$status"
fi

echo "== openapi-python-client $generator_version: generate a client from the served document and drive it"
(cd "$work" && "$venv/bin/openapi-python-client" generate --path "$work/openapi.json" \
  --output-path "$work/todo_client" --meta none --overwrite >/dev/null)
PYTHONPATH="$work" "$venv/bin/python" "$here/client_test.py" "$base" "$token"
