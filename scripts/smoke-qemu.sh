#!/usr/bin/env bash
# Smoke-runs the binary of an image built for another architecture (the arm64 image on an
# amd64 machine) under qemu's user-mode emulation, which needs no binfmt_misc: the binary is
# taken out of the OCI archive that scripts/build-image.sh wrote, then `--version`, and the
# embedded platform: /healthz, /readyz, a token from the binary itself, a task created and
# read back, and a clean stop on SIGTERM. See docs/deploy/image.md#multi-arch.
#
#   scripts/smoke-qemu.sh [ARCHIVE]   (default .tools/image/arm64/todo-arm64.oci.tar)
#
# Installs qemu-user-static with apt-get when it is missing (root on Debian).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh

archive="${1:-.tools/image/arm64/todo-arm64.oci.tar}"
say() { printf 'smoke-qemu: %s\n' "$*"; }
fail() {
  say "FAIL: $*" >&2
  exit 1
}
[[ -f $archive ]] || fail "no image archive at $archive (scripts/build-image.sh --arch arm64 writes it)"

work="$(mktemp -d)"
pid=""
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The OCI archive: index.json -> manifest -> layers (gzip tars); /todo is in one of them.
python3 - "$archive" "$work/todo" <<'PY'
import io, json, sys, tarfile
archive, out = sys.argv[1], sys.argv[2]
with tarfile.open(archive) as oci:
    blob = lambda digest: oci.extractfile("blobs/" + digest.replace(":", "/")).read()
    index = json.load(oci.extractfile("index.json"))
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    print(f"smoke-qemu: image for {config.get('os')}/{config.get('architecture')}")
    open(out + ".arch", "w").write(config.get("architecture", ""))
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as files:
            for member in files:
                if member.name.lstrip("./") == "todo":
                    open(out, "wb").write(files.extractfile(member).read())
                    sys.exit(0)
sys.exit("no /todo in the image's layers")
PY
chmod +x "$work/todo"
case "$(cat "$work/todo.arch")" in
  arm64) qemu="qemu-aarch64-static" ;;
  amd64) qemu="qemu-x86_64-static" ;; # the amd64 image, to try this script where it is native
  *) fail "no qemu for architecture $(cat "$work/todo.arch")" ;;
esac
if ! command -v "$qemu" >/dev/null 2>&1; then
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    fail "$qemu is missing: install qemu-user-static"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi

file "$work/todo" 2>/dev/null | sed 's/^/smoke-qemu: /' || true

todo() { "$qemu" "$work/todo" "$@"; }
version="$(todo --version)" || fail "--version failed under $qemu"
say "ok: $version runs under $qemu"

port="$(free_ports 1)"
secret="smoke-qemu-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$work/data"
TODO_LISTEN_ADDR="127.0.0.1:$port" TODO_DATA_DIR="$work/data" TODO_JWT_SECRET="$secret" \
  "$qemu" "$work/todo" serve >"$work/serve.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
deadline=$((SECONDS + 120)) # emulated: several times slower than native
until curl -fsS -o /dev/null --max-time 2 "$base/readyz" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; fail "the server exited"; }
  ((SECONDS < deadline)) || { cat "$work/serve.log" >&2; fail "not ready within 120 s"; }
  sleep 0.2
done
curl -fsS -o /dev/null "$base/healthz" || fail "/healthz"
say "ok: /healthz and /readyz answer 200"

token="$(TODO_DATA_DIR="$work/data" TODO_JWT_SECRET="$secret" todo token --user qemu)"
created="$(curl -fsS -X POST "$base/api/qemu/tasks" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"title":"made under emulation"}')" || fail "POST a task"
id="$(printf '%s' "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
got="$(curl -fsS "$base/api/qemu/tasks/$id" -H "Authorization: Bearer $token")" || fail "GET the task"
[[ $got == *'"made under emulation"'* ]] || fail "the task read back differs: $got"
say "ok: task $id created and read back"

kill -TERM "$pid"
deadline=$((SECONDS + 30))
while kill -0 "$pid" 2>/dev/null; do
  ((SECONDS < deadline)) || fail "still running 30 s after SIGTERM"
  sleep 0.2
done
status=0
wait "$pid" || status=$?
pid=""
((status == 0)) || fail "exited with status $status after SIGTERM"
say "ok: SIGTERM stopped it with status 0"
say "all checks passed for $archive"
