#!/usr/bin/env bash
# Smoke test of a built image (scripts/build-image.sh), run with podman as production runs it:
# read-only root filesystem, no capabilities, user 65532, no-new-privileges.
#
#   scripts/smoke-image.sh IMAGE          e.g. scripts/smoke-image.sh localhost/todo:dev
#
# Checks: the OCI labels and the image config (user, entrypoint, cmd, env, port); the files
# in the image (no shell, the CA bundle); `/bin/sh` cannot be run; `todo token`; the
# embedded SQLite mode on a volume at /data (healthz, readyz, todo_build_info naming the
# labels' version and revision, a task created and read back)
# and its refusal to start without a writable /data; PostgreSQL (the machine's, at
# 127.0.0.1:5432, database `test`, trust auth; a schema of its own, dropped at the end)
# reached through a name from /etc/hosts (`--add-host`), with the same round trip and the
# process's uid checked; and, when port 53 on 127.0.0.1 is free and dnsmasq is installed, a
# name served by a real DNS server (dnsmasq, through the container's resolv.conf) for
# `todo migrate`; and that librdkafka's OpenSSL verifies a TLS broker against the image's CA
# bundle (a private CA rejected, then accepted once mounted as the bundle). Everything
# started is removed on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${1:?usage: $0 IMAGE}"
pg_host_port="${TODO_SMOKE_PG:-127.0.0.1:5432}"
pg_db="${TODO_SMOKE_PG_DB:-test}"
ready_timeout="${TODO_SMOKE_READY_TIMEOUT:-30}"

say() { printf 'smoke-image: %s\n' "$*"; }
fail() {
  say "FAIL: $*" >&2
  exit 1
}
ok() { say "ok: $*"; }

# shellcheck source=scripts/lib/ports.sh
source "$root/scripts/lib/ports.sh"

export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/.tools/containers.conf}"
[[ -f $CONTAINERS_CONF ]] || fail "$CONTAINERS_CONF is missing: run scripts/build-image.sh first"
podman_=(podman --storage-driver vfs)
pm() { "${podman_[@]}" "$@"; }
pm image exists "$image" || fail "no image $image in podman's (vfs) storage"

# psql for the schema, dnsmasq for the DNS check: installed when missing (Debian/Ubuntu, root).
need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})) && [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  say "installing ${need[*]}"
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    say "could not install ${need[*]}"
fi

work="$(mktemp -d)"
id="$$"
schema="img_smoke_$id"
volume="todo-smoke-$id"
containers=()
dnsmasq_pid=""
tls_pid=""
schema_made=false
cleanup() {
  local c
  for c in "${containers[@]}"; do
    pm rm -f -t 5 "$c" >/dev/null 2>&1 || true
  done
  pm volume rm -f "$volume" >/dev/null 2>&1 || true
  if [[ -n $tls_pid ]]; then
    kill "$tls_pid" 2>/dev/null || true
    wait "$tls_pid" 2>/dev/null || true
  fi
  if [[ -n $dnsmasq_pid ]]; then
    kill "$dnsmasq_pid" 2>/dev/null || true
    wait "$dnsmasq_pid" 2>/dev/null || true
  fi
  if $schema_made; then
    psql_ -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

psql_() { psql -X -q -v ON_ERROR_STOP=1 -h "${pg_host_port%:*}" -p "${pg_host_port##*:}" -U postgres -d "$pg_db" "$@"; }

# How production runs it.
hardening=(--read-only --cap-drop ALL --user 65532 --network host --security-opt no-new-privileges)
secret="smoke-test-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

# Waits until URL answers 200, or the container stops, or the deadline passes.
wait_ready() {
  local name="$1" url="$2" deadline=$((SECONDS + ready_timeout))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if [[ "$(pm inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" != true ]]; then
      pm logs "$name" >&2 || true
      fail "$name stopped before $url answered"
    fi
    if ((SECONDS >= deadline)); then
      pm logs "$name" >&2 || true
      fail "$url did not answer 200 within ${ready_timeout}s"
    fi
    # Polling interval while waiting on the condition above.
    sleep 0.2
  done
}

# Runs the image detached under NAME with the hardening flags and the given extra flags;
# the server listens on 127.0.0.1:PORT.
start() {
  local name="$1" port="$2"
  shift 2
  containers+=("$name")
  pm run -d --name "$name" "${hardening[@]}" \
    -e "TODO_LISTEN_ADDR=127.0.0.1:$port" -e "TODO_JWT_SECRET=$secret" "$@" "$image" >/dev/null
}

# healthz, readyz, then a task created and read back through the API.
round_trip() {
  local name="$1" port="$2" base token body task_id
  base="http://127.0.0.1:$port"
  wait_ready "$name" "$base/readyz"
  curl -fsS -o /dev/null "$base/healthz" || fail "$name: /healthz"
  ok "$name: /healthz and /readyz answer 200"
  # The binary names the commit it was built from, as the image's label does.
  body="$(curl -fsS "$base/metrics")" || fail "$name: /metrics"
  grep -Fq "todo_build_info{version=\"$label_version\",revision=\"$label_revision\"} 1" <<<"$body" ||
    fail "$name: todo_build_info is not version $label_version, revision $label_revision: $(grep '^todo_build_info' <<<"$body")"
  ok "$name: todo_build_info carries the image's version and revision"
  token="$(timeout 60 "${podman_[@]}" run --rm "${hardening[@]}" -e "TODO_JWT_SECRET=$secret" "$image" token --user u1)"
  [[ $token == *.*.* ]] || fail "todo token printed no JWT: $token"
  body="$(curl -fsS -X POST "$base/api/u1/tasks" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d "{\"title\":\"image smoke $name\"}")" ||
    fail "$name: POST /api/u1/tasks"
  task_id="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$body")"
  body="$(curl -fsS "$base/api/u1/tasks/$task_id" -H "Authorization: Bearer $token")" ||
    fail "$name: GET /api/u1/tasks/$task_id"
  python3 -c 'import json,sys; t=json.load(sys.stdin); sys.exit(t["title"] != sys.argv[1])' \
    "image smoke $name" <<<"$body" || fail "$name: the task read back differs: $body"
  ok "$name: task $task_id created and read back (token from \`todo token\` in the image)"
  last_task_id="$task_id"
}

# The uid and gid the container's main process runs as, seen from the host.
check_uid() {
  local name="$1" pid uid gid
  pid="$(pm inspect -f '{{.State.Pid}}' "$name")"
  uid="$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")"
  gid="$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")"
  [[ $uid == "65532 65532 65532 65532" && $gid == "65532 65532 65532 65532" ]] ||
    fail "$name runs as uid [$uid] gid [$gid], not 65532"
  grep -q '^CapEff:[[:space:]]*0*$' "/proc/$pid/status" || fail "$name has capabilities: $(grep ^CapEff "/proc/$pid/status")"
  grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$pid/status" || fail "$name lacks no_new_privs"
  [[ "$(pm inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$name")" == true ]] || fail "$name: root fs not read-only"
  ok "$name: pid $pid runs as 65532:65532, no capabilities, no_new_privs, read-only root fs"
}

# SIGTERM to the container's PID 1 (the binary itself: no init in the image) stops it
# cleanly, well before podman's (and Kubernetes') SIGKILL.
check_stop() {
  local name="$1" t0 code
  t0=$SECONDS
  pm stop -t 20 "$name" >/dev/null
  code="$(pm inspect -f '{{.State.ExitCode}}' "$name")"
  [[ $code == 0 ]] || { pm logs "$name" >&2 || true; fail "$name exited $code on SIGTERM"; }
  ok "$name: SIGTERM stopped it with status 0 in $((SECONDS - t0))s"
}

# --- the image's metadata and files ----------------------------------------------------

pm image inspect "$image" >"$work/inspect.json"
python3 - "$work/inspect.json" <<'PY' || fail "image metadata (above)"
import json, sys
img = json.load(open(sys.argv[1]))[0]
cfg = img["Config"]
labels = cfg.get("Labels") or {}
errors = []
for key in ("source", "revision", "version", "title", "description", "licenses"):
    value = labels.get("org.opencontainers.image." + key, "")
    if not value or value == "unknown":
        errors.append(f"label org.opencontainers.image.{key} is {value!r}")
    else:
        print(f"  org.opencontainers.image.{key}={value}")
want = {"User": "65532:65532", "Entrypoint": ["/todo"], "Cmd": ["serve"]}
for key, value in want.items():
    if cfg.get(key) != value:
        errors.append(f"{key} is {cfg.get(key)!r}, want {value!r}")
env = dict(e.split("=", 1) for e in cfg.get("Env", []))
for key, value in {"TODO_LISTEN_ADDR": "0.0.0.0:8080", "TODO_DATA_DIR": "/data",
                   "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}.items():
    if env.get(key) != value:
        errors.append(f"env {key} is {env.get(key)!r}, want {value!r}")
if "8080/tcp" not in (cfg.get("ExposedPorts") or {}):
    errors.append(f"8080/tcp not exposed: {cfg.get('ExposedPorts')}")
print(f"  platform {img.get('Os')}/{img.get('Architecture')}, size {img.get('Size')} bytes")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
ok "labels, user, entrypoint, cmd, env and port"
# The labels todo_build_info must match, from the metadata read above.
label() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["Config"]["Labels"]["org.opencontainers.image." + sys.argv[2]])' "$work/inspect.json" "$1"; }
label_version="$(label version)"
label_revision="$(label revision)"

# Every file in the image, from an exported (never started) container.
containers+=("todo-smoke-files-$id")
pm create --name "todo-smoke-files-$id" "$image" >/dev/null
pm export "todo-smoke-files-$id" | tar --numeric-owner -tvf - >"$work/files"
python3 - "$work/files" <<'PY' || fail "the image's files (above)"
import sys
entries = {}
for line in open(sys.argv[1]):
    parts = line.split()
    path = parts[5].rstrip("/")
    entries[path] = (parts[0], parts[1])
print("  " + " ".join(sorted(entries)))
errors = []
for shell in ("bin/sh", "bin/bash", "bin/busybox", "usr/bin/env"):
    if shell in entries:
        errors.append(f"{shell} is in the image")
for need in ("todo", "etc/ssl/certs/ca-certificates.crt", "etc/nsswitch.conf", "etc/passwd", "data"):
    if need not in entries:
        errors.append(f"{need} is missing")
if entries.get("data", ("", ""))[1] not in ("65532/65532",):
    errors.append(f"/data is owned by {entries.get('data')}")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
ok "files: /todo, the CA bundle, passwd/group/nsswitch.conf, /data (65532), /tmp; no shell"

if timeout 60 "${podman_[@]}" run --rm "${hardening[@]}" --entrypoint /bin/sh "$image" -c true >"$work/sh.log" 2>&1; then
  fail "/bin/sh ran in the image"
fi
ok "--entrypoint /bin/sh fails: $(tail -n1 "$work/sh.log")"

read -r port_emb port_pg <<<"$(free_ports 2)"

# --- embedded mode: SQLite on a volume at /data ----------------------------------------

containers+=("todo-smoke-nodata-$id")
rc=0
timeout 30 "${podman_[@]}" run --name "todo-smoke-nodata-$id" "${hardening[@]}" \
  -e "TODO_LISTEN_ADDR=127.0.0.1:$port_emb" "$image" >"$work/nodata.log" 2>&1 || rc=$?
((rc != 0 && rc != 124)) || fail "the embedded mode started without a writable /data (rc $rc)"
ok "without a volume at /data the embedded mode refuses to start: $(tail -n1 "$work/nodata.log")"

pm volume create "$volume" >/dev/null
start "todo-smoke-embedded-$id" "$port_emb" -v "$volume:/data"
round_trip "todo-smoke-embedded-$id" "$port_emb"
check_uid "todo-smoke-embedded-$id"
check_stop "todo-smoke-embedded-$id"

# --- PostgreSQL through a name from /etc/hosts -----------------------------------------

psql_ -c "CREATE SCHEMA $schema" >/dev/null
schema_made=true
pg_url_for() { printf 'postgres://postgres@%s:%s/%s?options=-c%%20search_path%%3D%s' "$1" "${pg_host_port##*:}" "$pg_db" "$schema"; }
start "todo-smoke-pg-$id" "$port_pg" --add-host "pg.test:${pg_host_port%:*}" \
  -e "DATABASE_URL=$(pg_url_for pg.test)"
round_trip "todo-smoke-pg-$id" "$port_pg"
check_uid "todo-smoke-pg-$id"
rows="$(psql_ -Atc "SELECT count(*) FROM $schema.tasks WHERE id::text = '$last_task_id'")"
[[ $rows == 1 ]] || fail "task $last_task_id is not in $schema.tasks"
ok "PostgreSQL via pg.test (/etc/hosts): the task is in $schema.tasks; no /data mounted"
check_stop "todo-smoke-pg-$id"

# --- PostgreSQL over TLS (rustls in the static binary) ---------------------------------
# The server's own certificate (Debian's is self-signed): sslmode=require encrypts without
# checking it, verify-full must refuse it as signed by no trusted root.

if [[ "$(psql_ -Atc 'SHOW ssl')" != on ]]; then
  say "SKIPPED: PostgreSQL over TLS (ssl is off on ${pg_host_port})"
else
  for mode in require verify-full; do
    containers+=("todo-smoke-pgtls-$mode-$id")
    rc=0
    timeout 60 "${podman_[@]}" run --name "todo-smoke-pgtls-$mode-$id" "${hardening[@]}" \
      --add-host "pg.test:${pg_host_port%:*}" -e "DATABASE_URL=$(pg_url_for pg.test)&sslmode=$mode" \
      "$image" migrate >"$work/pgtls-$mode.log" 2>&1 || rc=$?
    if [[ $mode == require && $rc != 0 ]]; then
      cat "$work/pgtls-require.log" >&2
      fail "todo migrate with sslmode=require failed"
    fi
    if [[ $mode == verify-full ]]; then
      [[ $rc != 0 ]] || fail "sslmode=verify-full accepted a self-signed certificate"
      grep -q 'invalid peer certificate' "$work/pgtls-verify-full.log" ||
        { cat "$work/pgtls-verify-full.log" >&2; fail "verify-full failed for another reason"; }
    fi
  done
  ok "PostgreSQL TLS: sslmode=require migrates over TLS; verify-full refuses the self-signed certificate"
fi

# --- a name from a DNS server (resolv.conf) --------------------------------------------

if ! command -v dnsmasq >/dev/null 2>&1; then
  say "SKIPPED: DNS through resolv.conf (dnsmasq is not installed: apt-get install dnsmasq-base)"
elif ss -Hlun 'sport = :53' | awk '{print $4}' | grep -Eq '^(127\.0\.0\.1|0\.0\.0\.0|\*|\[::\]):53$'; then
  say "SKIPPED: DNS through resolv.conf (UDP port 53 on 127.0.0.1 is taken here)"
else
  dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address=127.0.0.1 \
    --port=53 --address="/pg.dns.test/${pg_host_port%:*}" --log-queries --log-facility="$work/dnsmasq.log" \
    --pid-file="$work/dnsmasq.pid" &
  dnsmasq_pid=$!
  deadline=$((SECONDS + 10))
  until ss -Hlun 'sport = :53' | awk '{print $4}' | grep -qx '127.0.0.1:53'; do
    kill -0 "$dnsmasq_pid" 2>/dev/null || fail "dnsmasq did not start"
    ((SECONDS < deadline)) || fail "dnsmasq did not listen on 127.0.0.1:53 within 10s"
    sleep 0.1
  done
  printf 'nameserver 127.0.0.1\noptions attempts:2 timeout:2\n' >"$work/resolv.conf"
  containers+=("todo-smoke-dns-$id")
  timeout 60 "${podman_[@]}" run --name "todo-smoke-dns-$id" "${hardening[@]}" \
    -v "$work/resolv.conf:/etc/resolv.conf:ro" \
    -e "DATABASE_URL=$(pg_url_for pg.dns.test)" "$image" migrate >"$work/dns.log" 2>&1 ||
    { cat "$work/dns.log" >&2; fail "todo migrate via pg.dns.test (DNS) failed"; }
  grep -q 'pg.dns.test' "$work/dnsmasq.log" || fail "dnsmasq saw no query for pg.dns.test"
  ok "DNS: \`todo migrate\` reached PostgreSQL as pg.dns.test, answered by dnsmasq on 127.0.0.1:53"
fi

# --- librdkafka's OpenSSL verifies brokers against the image's CA bundle ----------------
# A TLS "broker" (a Python TLS listener: the handshake is all that is checked) with a
# certificate from a private CA: the image's bundle must reject it (verification is on), and
# the same CA mounted over /etc/ssl/certs/ca-certificates.crt (SSL_CERT_FILE) must pass.

# Waits until FILE has a line matching REGEX, or the deadline passes.
wait_line() {
  local file="$1" regex="$2" what="$3" deadline=$((SECONDS + ready_timeout))
  until grep -Eq "$regex" "$file" 2>/dev/null; do
    ((SECONDS < deadline)) || { cat "$file" >&2 || true; fail "$what: no line /$regex/ within ${ready_timeout}s"; }
    sleep 0.2
  done
}

if ! command -v openssl >/dev/null 2>&1; then
  say "SKIPPED: Kafka TLS and the CA bundle (no openssl command)"
else
  tls="$work/tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 1 \
    -subj /CN=todo-smoke-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$tls/srv.key" -out "$tls/srv.csr" -subj /CN=kafka.test 2>/dev/null
  printf 'subjectAltName=DNS:kafka.test\n' >"$tls/ext"
  openssl x509 -req -in "$tls/srv.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -out "$tls/srv.pem" -days 1 -extfile "$tls/ext" 2>/dev/null
  chmod 0644 "$tls/ca.pem"
  read -r port_tls <<<"$(free_ports 1)"
  python3 -u - "$tls" "$port_tls" >"$tls/server.log" 2>&1 <<'PY' &
import os, socket, ssl, sys, threading
d, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(d, "srv.pem"), os.path.join(d, "srv.key"))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
print("listening", flush=True)
def handle(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        print("handshake ok", t.version(), flush=True)
        t.close()
    except Exception as e:
        print("handshake failed:", e, flush=True)
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
PY
  tls_pid=$!
  wait_line "$tls/server.log" '^listening' "the TLS listener"
  kafka_tls=(--add-host kafka.test:127.0.0.1 --mount "type=tmpfs,destination=/data,chown=true"
    -e TODO_BUS=kafka -e "KAFKA_BROKERS=kafka.test:$port_tls" -e KAFKA_SECURITY_PROTOCOL=ssl
    -e TODO_KAFKA_CREATE_TOPICS=false)
  start "todo-smoke-tls-bundle-$id" "$port_emb" "${kafka_tls[@]}"
  wait_line "$tls/server.log" 'handshake failed:.*UNKNOWN_CA' "the image's bundle against a private CA"
  grep -q 'handshake ok' "$tls/server.log" && fail "librdkafka accepted a broker certificate from an unknown CA"
  pm rm -f -t 0 "todo-smoke-tls-bundle-$id" >/dev/null 2>&1
  ok "Kafka TLS: librdkafka (static OpenSSL) rejects a broker certificate from a CA not in the image's bundle"
  start "todo-smoke-tls-ca-$id" "$port_emb" "${kafka_tls[@]}" \
    -v "$tls/ca.pem:/etc/ssl/certs/ca-certificates.crt:ro"
  wait_line "$tls/server.log" '^handshake ok' "the private CA as /etc/ssl/certs/ca-certificates.crt"
  pm rm -f -t 0 "todo-smoke-tls-ca-$id" >/dev/null 2>&1
  ok "Kafka TLS: with that CA at /etc/ssl/certs/ca-certificates.crt (SSL_CERT_FILE) the handshake passes ($(grep -m1 '^handshake ok' "$tls/server.log" | cut -d' ' -f3))"
fi

say "all checks passed for $image"
