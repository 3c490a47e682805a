#!/usr/bin/env bash
# Offline checks of the Grafana dashboards and the pre-defined LogQL queries.
#
#   observability/check/dashboards.sh                 run every check (exit 1 on any failure)
#   observability/check/dashboards.sh --list-promql   print every PromQL expression of every panel,
#                                                     one JSON object a line: {"dashboard","panel","ref_id","expr"}
#
# Checks: (a) each dashboard type-checks against Dashboard of @grafana/schema (tsc --strict);
# (b) every LogQL query (queries.json and every Loki target) parses with lezer-logql;
# (c) the structural rules (see observability/README.md); (d) when promtool is installed,
# every PromQL expression, with the variables substituted, parses, and the SLO and error-ratio
# panels give the expected values on the synthetic series of promql.test.yml.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ "${1:-}" == "--list-promql" ]]; then
  exec node "$here/check.mjs" list-promql
fi
if [[ $# -gt 0 ]]; then
  echo "usage: $0 [--list-promql]" >&2
  exit 2
fi

step() { printf '\n==> %s\n' "$*"; }
passed=0
skipped=0
# The closing line counts the three checks (type check, LogQL and structure, PromQL):
# "dashboards: N passed, N failed[, N skipped]".
summary() { printf '\ndashboards: %d passed, %d failed%s\n' "$passed" "$1" "$([[ $skipped -gt 0 ]] && printf ', %d skipped' "$skipped")"; }
fail() {
  echo "FAIL: $*" >&2
  summary 1
  exit 1
}

step "npm ci (pinned: @grafana/schema, typescript, @grafana/lezer-logql)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in $here"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step "(a) type-check each dashboard against Dashboard from @grafana/schema"
ln -s "$here/node_modules" "$tmp/node_modules"
node "$here/check.mjs" ts-wrappers "$tmp"
shopt -s nullglob
wrappers=("$tmp"/*.ts)
if ! (cd "$tmp" && "$here/node_modules/.bin/tsc" --noEmit --strict \
    --target es2022 --module esnext --moduleResolution bundler --pretty false "${wrappers[@]##*/}") >"$tmp/tsc.out" 2>&1; then
  # foo.ts(LINE,COL) -> observability/dashboards/foo.json:LINE:COL (the wrapper keeps the JSON's lines).
  sed -E 's#^([a-z0-9-]+)\.ts\(([0-9]+),([0-9]+)\)#observability/dashboards/\1.json:\2:\3#' "$tmp/tsc.out" >&2
  fail "a dashboard does not type-check as Dashboard"
fi
echo "ok: $(( ${#wrappers[@]} - 1 )) dashboards type-check as Dashboard (tsc --strict)"
passed=$((passed + 1))

step "(b, c) LogQL syntax (lezer-logql) and the structural rules"
node "$here/check.mjs" lint || fail "LogQL syntax or a structural rule"
passed=$((passed + 1))

step "(d) PromQL after substituting the Grafana variables: syntax, and values on test series (promtool)"
if command -v promtool >/dev/null 2>&1; then
  node "$here/check.mjs" promql-rules "$tmp/rules.json"
  if ! promtool check rules "$tmp/rules.json" >"$tmp/promtool.out" 2>&1; then
    cat "$tmp/promtool.out" >&2
    fail "a PromQL expression does not parse (rules are named check:<dashboard>:<panel>:<refId>)"
  fi
  echo "ok: $(grep -c '"record"' "$tmp/rules.json") expressions parse ($(promtool --version 2>&1 | head -n 1))"
  # The SLO and error-ratio panels on synthetic series (promql.test.yml).
  cp "$here/promql.test.yml" "$tmp/promql.test.yml"
  if ! promtool test rules "$tmp/promql.test.yml" >"$tmp/promtool.out" 2>&1; then
    cat "$tmp/promtool.out" >&2
    fail "a PromQL panel gives the wrong value on the series of promql.test.yml"
  fi
  echo "ok: the SLO and error-ratio panels give the expected values on the series of promql.test.yml"
  passed=$((passed + 1))
else
  echo "skipped: promtool not installed (Debian: apt-get install --no-install-recommends prometheus)"
  skipped=1
fi

summary 0
