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
# every PromQL expression, with the variables substituted, parses.
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

step "npm ci (pinned: @grafana/schema, typescript, @grafana/lezer-logql)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

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
  echo "FAIL: a dashboard does not type-check as Dashboard" >&2
  exit 1
fi
echo "ok: $(( ${#wrappers[@]} - 1 )) dashboards type-check as Dashboard (tsc --strict)"

step "(b, c) LogQL syntax (lezer-logql) and the structural rules"
node "$here/check.mjs" lint

step "(d) PromQL syntax after substituting the Grafana variables (promtool)"
if command -v promtool >/dev/null 2>&1; then
  node "$here/check.mjs" promql-rules "$tmp/rules.json"
  if ! promtool check rules "$tmp/rules.json" >"$tmp/promtool.out" 2>&1; then
    cat "$tmp/promtool.out" >&2
    echo "FAIL: a PromQL expression does not parse (dashboard_check:expr_N is line N+1 of --list-promql)" >&2
    exit 1
  fi
  echo "ok: $(grep -c '"record"' "$tmp/rules.json") expressions parse ($(promtool --version 2>&1 | head -n 1))"
else
  echo "skipped: promtool not installed (Debian: apt-get install --no-install-recommends prometheus)"
fi

printf '\nall dashboard checks passed\n'
