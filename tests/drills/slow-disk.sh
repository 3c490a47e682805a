#!/usr/bin/env bash
# Slow-disk drill: the SQLite store's log still starts over, and stays bounded, when every
# fsync and fdatasync takes 10 ms (a network disk, a busy host). strace delays only those
# calls (seccomp-bpf, so nothing else is slowed) in the checkpoint test that writes about
# 200 MB of pages under four busy readers; the test fails if the log passes 100 MB.
# Usage: tests/drills/slow-disk.sh [delay_us] [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."

delay_us="${1:-10000}"
runs="${2:-3}"
command -v strace >/dev/null || { echo "slow-disk drill: strace is not installed" >&2; exit 1; }

# The test binary nextest built: cargo prints its path with --message-format=json.
binary="$(cargo test --locked -p todo-store --test checkpoint --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "checkpoint":
        print(m["executable"])')"
[[ -x "$binary" ]] || { echo "slow-disk drill: cannot find the checkpoint test binary" >&2; exit 1; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cd crates/todo-store
for run in $(seq 1 "$runs"); do
  printf 'run %s of %s, every fsync/fdatasync %s us: ' "$run" "$runs" "$delay_us"
  strace -f -qq --seccomp-bpf -o /dev/null -e trace=fsync,fdatasync \
    -e inject=fsync,fdatasync:delay_exit="$delay_us" \
    "$binary" the_log_starts_over_while_readers_keep_reading --exact --nocapture 2>&1 |
    tee "$log" | grep -E '^largest log' || true
  grep -q 'test result: ok. 1 passed' "$log" || {
    cat "$log" >&2
    echo "slow-disk drill: failed on run $run" >&2
    exit 1
  }
done
echo "slow-disk drill: the log started over and stayed under 100 MB in $runs runs"
