#!/usr/bin/env bash
# Regenerates docs/postgres-plans.md's plans: loads 1,000,000 tasks into schema todo_explain
# (dropped first and at the end), then EXPLAIN (ANALYZE)s each query of queries.txt twice
# and shows the second (warm cache).
# Usage, from the repository root: bench/postgres-plans/run.sh [postgres://...] > plans.txt
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/test}
dir=$(dirname "$0")
psql "$url" -q -f "$dir/load.sql" >&2
trap 'psql "$url" -q -c "DROP SCHEMA IF EXISTS todo_explain CASCADE" >&2' EXIT
while IFS='|' read -r name sql; do
  printf '## %s\n\n```\n%s\n\n' "$name" "$sql"
  # The first run reads the pages into the cache; the second is the one shown (warm).
  psql "$url" -At -c "SET search_path = todo_explain; SET max_parallel_workers_per_gather = 0;" \
    -c "EXPLAIN (ANALYZE, COSTS OFF) $sql" -c "EXPLAIN (ANALYZE, COSTS OFF) $sql" |
    grep -v '^SET$' | awk '/^Execution Time/ && !seen {seen = 1; next} !seen {next} {print}'
  printf '```\n\n'
done < "$dir/queries.txt"
