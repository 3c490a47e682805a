#!/usr/bin/env bash
# Installs the OTLP test receivers into the git-ignored .tools/otel of this repository:
#   .tools/otel/bin/python -m oteltap   oteltap 1.0.0: OTLP/HTTP (protobuf), one JSON line
#                                       per span, log record or metric point
#   .tools/otel/bin/rotel-agent         rotel-agent 0.0.1-alpha10 (PyPI rotel 0.0.1a15, a
#                                       prebuilt binary in the wheel, pinned by hash): OTLP
#                                       gRPC and HTTP; prints the spans it gets (--debug-log)
# The tracing tests (tests/tracing.rs) read the spans from them. Idempotent: what is
# already installed at the pinned version is kept. Safe to run from several processes at
# once (it takes a lock).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/otel"
package=oteltap
version=1.0.0
rotel_version=0.0.1a15
rotel_sha256=2f4117e58410c933e0dc042a268ef738dab2e3a5d63b5831209acdac2a6ddcb7

say() { printf 'install-oteltap: %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }

installed() {
  [[ -x "$venv/bin/python" ]] &&
    [[ "$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$package'))" 2>/dev/null)" == "$version" ]]
}

mkdir -p "$root/.tools"
exec 9>"$root/.tools/otel.lock"
flock 9

rotel_stamp="$venv/bin/.rotel-agent.installed"
rotel_want="rotel==$rotel_version sha256:$rotel_sha256"
rotel_installed() {
  [[ -x "$venv/bin/rotel-agent" && -f "$rotel_stamp" && "$(cat "$rotel_stamp")" == "$rotel_want" ]]
}

install_rotel() {
  if rotel_installed; then
    say "rotel-agent from rotel $rotel_version is already installed at $venv/bin/rotel-agent"
    return
  fi
  if [[ "$(uname -sm)" != "Linux x86_64" ]]; then
    say "error: the pinned rotel wheel is for Linux x86_64, not $(uname -sm)" >&2
    exit 1
  fi
  local dl="$root/.tools/dl" wheel
  mkdir -p "$dl"
  run "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --only-binary :all: -d "$dl" "rotel==$rotel_version"
  wheel="$(ls "$dl"/rotel-"$rotel_version"-*.whl)"
  if [[ "$(sha256sum "$wheel" | cut -d' ' -f1)" != "$rotel_sha256" ]]; then
    say "error: $wheel does not have the pinned sha256 $rotel_sha256" >&2
    exit 1
  fi
  say "extracting rotel/rotel-agent from $(basename "$wheel")"
  "$venv/bin/python" - "$wheel" "$venv/bin/rotel-agent" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open("rotel/rotel-agent") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$venv/bin/rotel-agent"
  echo "$rotel_want" >"$rotel_stamp"
  say "installed rotel-agent: $venv/bin/rotel-agent start --otlp-grpc-endpoint 127.0.0.1:PORT"
}

if installed; then
  say "$package $version is already installed in $venv"
  install_rotel
  exit 0
fi

command -v python3 >/dev/null 2>&1 || {
  say "error: python3 is needed" >&2
  exit 1
}
if [[ -d "$venv" ]]; then
  say "$venv holds no $package $version: making it again"
  run rm -rf "$venv"
fi
run python3 -m venv "$venv"
run "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version"
installed || {
  say "error: $package $version is not importable from $venv after the install" >&2
  exit 1
}
say "installed $package $version: $venv/bin/python -m oteltap --port PORT"
install_rotel
