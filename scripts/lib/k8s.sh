# Sourced by scripts/deploy.sh and scripts/setup-minikube.sh: command printing with a dry-run
# mode, the stack table, and the pinned versions from deploy/stacks/versions.env.
# shellcheck shell=bash

# DRY_RUN=1: every command is printed and none is run (no cluster, helm or kubectl needed).
DRY_RUN="${DRY_RUN:-0}"
# helm and kubectl: from PATH, else the ones scripts/install-k8s-tools.sh puts in .tools/bin.
k8s_tools_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.tools/bin"
if [[ -z ${HELM:-} ]]; then
  HELM=helm
  command -v helm >/dev/null 2>&1 || [[ ! -x $k8s_tools_dir/helm ]] || HELM="$k8s_tools_dir/helm"
fi
if [[ -z ${KUBECTL:-} ]]; then
  KUBECTL=kubectl
  command -v kubectl >/dev/null 2>&1 || [[ ! -x $k8s_tools_dir/kubectl ]] || KUBECTL="$k8s_tools_dir/kubectl"
fi

k8s_say() { printf '%s: %s\n' "${K8S_PROG:-deploy}" "$*" >&2; }
k8s_die() {
  k8s_say "$*"
  exit 1
}

# Quotes one word for a shell, readably: bare when safe, else in single quotes.
k8s_quote() {
  if [[ $1 =~ ^[-A-Za-z0-9_./:=@,+%]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# Prints one command, shell-quoted, on stdout, prefixed "+ ". A lone "|" argument is printed
# as a pipe.
k8s_print() {
  local out="+" arg
  for arg in "$@"; do
    if [[ $arg == "|" ]]; then
      out+=" |"
    else
      out+=" $(k8s_quote "$arg")"
    fi
  done
  printf '%s\n' "$out"
}

# run CMD ARGS...: prints it, then runs it unless DRY_RUN=1.
run() {
  k8s_print "$@"
  [[ $DRY_RUN == 1 ]] && return 0
  "$@"
}

# run_pipe A... '|' B...: prints "A | B" and runs the pipeline unless DRY_RUN=1.
run_pipe() {
  local left=() right=() seen=0 arg
  for arg in "$@"; do
    if [[ $seen == 0 && $arg == "|" ]]; then
      seen=1
    elif [[ $seen == 0 ]]; then
      left+=("$arg")
    else
      right+=("$arg")
    fi
  done
  [[ $seen == 1 ]] || k8s_die "run_pipe needs a '|' argument"
  k8s_print "${left[@]}" "|" "${right[@]}"
  [[ $DRY_RUN == 1 ]] && return 0
  "${left[@]}" | "${right[@]}"
}

# Loads the pinned chart versions and repositories. Every *_VERSION the deployment needs must
# be there; repository URLs fall back to the charts' published homes.
k8s_load_versions() {
  local file="$1"
  [[ -f $file ]] || k8s_die "$file is missing: it pins the stack chart versions (NAME_VERSION=... lines)"
  set -a
  # shellcheck disable=SC1090
  source "$file"
  set +a
  : "${KUBE_PROMETHEUS_STACK_REPO:=https://prometheus-community.github.io/helm-charts}"
  : "${LOKI_REPO:=https://grafana-community.github.io/helm-charts}"
  : "${ALLOY_REPO:=https://grafana.github.io/helm-charts}"
  : "${TEMPO_REPO:=https://grafana-community.github.io/helm-charts}"
  : "${DAPR_REPO:=https://dapr.github.io/helm-charts}"
  # Envoy Gateway's "repository" is the OCI chart itself; its CRDs chart sits beside it.
  : "${ENVOY_GATEWAY_REPO:=oci://docker.io/envoyproxy/gateway-helm}"
  : "${ENVOY_GATEWAY_CRDS_CHART:=${ENVOY_GATEWAY_REPO%/*}/gateway-crds-helm}"
  : "${GATEWAY_API_CHANNEL:=standard}"
}

k8s_require_versions() {
  local name missing=()
  for name in "$@"; do
    [[ -n ${!name:-} ]] || missing+=("$name")
  done
  ((${#missing[@]} == 0)) || k8s_die "deploy/stacks/versions.env does not set: ${missing[*]}"
}

# The stacks: name chart namespace release version-variable repo-variable (an oci:// repo is
# the chart itself).
# Installed in this order: Envoy Gateway first (the app's Gateway needs its GatewayClass),
# kube-prometheus-stack next (its CRDs carry the ServiceMonitors the others create), then
# Loki and Tempo before Alloy, which ships to them, then Dapr.
# shellcheck disable=SC2034 # read by the scripts that source this file
K8S_STACKS=(
  "envoy-gateway gateway-helm envoy-gateway-system eg ENVOY_GATEWAY_VERSION ENVOY_GATEWAY_REPO"
  "kube-prometheus-stack kube-prometheus-stack monitoring kube-prometheus-stack KUBE_PROMETHEUS_STACK_VERSION KUBE_PROMETHEUS_STACK_REPO"
  "loki loki monitoring loki LOKI_VERSION LOKI_REPO"
  "tempo tempo monitoring tempo TEMPO_VERSION TEMPO_REPO"
  "alloy alloy monitoring alloy ALLOY_VERSION ALLOY_REPO"
  "dapr dapr dapr-system dapr DAPR_VERSION DAPR_REPO"
)

# Prints "-f FILE" pairs for the files of a stack that exist: values.yaml, values-ENV.yaml,
# values-TIER.yaml, in that order (later files win).
k8s_stack_values() {
  local dir="$1" env="$2" tier="$3" f
  for f in "$dir/values.yaml" "$dir/values-$env.yaml" "$dir/values-$tier.yaml"; do
    [[ -f $f ]] && printf '%s\n' "-f" "$f"
  done
  return 0
}

# Splits an image reference into repository and tag (or digest):
#   ghcr.io/o/todo:1.2.3 -> "ghcr.io/o/todo" "1.2.3" ""
#   ghcr.io/o/todo@sha256:ab.. -> "ghcr.io/o/todo" "" "sha256:ab.."
#   localhost:5000/todo -> "localhost:5000/todo" "" ""
k8s_split_image() {
  local ref="$1" repo tag="" digest=""
  if [[ $ref == *@* ]]; then
    digest="${ref#*@}"
    ref="${ref%%@*}"
  fi
  local last="${ref##*/}"
  if [[ $last == *:* ]]; then
    tag="${last##*:}"
    repo="${ref%:*}"
  else
    repo="$ref"
  fi
  printf '%s\n%s\n%s\n' "$repo" "$tag" "$digest"
}
