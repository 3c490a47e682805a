#!/usr/bin/env bash
# The whole platform on a local Minikube: the cluster, its addons, the image, the dev Secrets,
# then scripts/deploy.sh minikube (Gateway API CRDs + Envoy Gateway, kube-prometheus-stack,
# Loki, Alloy, optionally Tempo and Dapr, and the app with its in-cluster PostgreSQL and
# Redpanda from charts/todo/values-minikube.yaml). Prints the port-forwards and a smoke test.
#
#   scripts/setup-minikube.sh [options]
#
#   --dry-run               print every command, run none
#   --no-monitoring         skip kube-prometheus-stack, Loki, Alloy, Tempo
#   --dapr                  install Dapr and run the app on TODO_BUS=dapr
#   --tempo                 install Tempo too
#   --tier dev|prod         the app's overlay (default dev)
#   --cpus N                Minikube CPUs (default 4)
#   --memory SIZE           Minikube memory (default 8g; 6g is enough with --no-monitoring)
#   --driver NAME           Minikube driver (default docker; e.g. podman, kvm2, hyperkit)
#   --k8s-version V         Kubernetes version (default v1.34.0)
#   --container-runtime R   containerd (default) or docker
#   --profile NAME          Minikube profile, also the kubeconfig context (default minikube)
#   --cni NAME              CNI (default calico, which enforces the chart's NetworkPolicies)
#   --image REF             use a published image (e.g. ghcr.io/OWNER/todo:1.2.3) instead of
#                           building one with scripts/build-image.sh and loading it
#
# Idempotent: `minikube start` on a running profile keeps it, addons are enabled again, the
# Secrets are made only when missing (so generated passwords stay), and the releases are
# upgraded in place. Needs minikube, kubectl and helm 4 (scripts/install-k8s-tools.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_PROG=setup-minikube
# shellcheck source=scripts/lib/k8s.sh
source "$root/scripts/lib/k8s.sh"

usage() {
  sed -n '2,25s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}
fail_usage() {
  k8s_say "$*"
  k8s_say "usage: scripts/setup-minikube.sh [--dry-run] [--no-monitoring] [--dapr] [--tempo] [--tier dev|prod] [--cpus N] [--memory SIZE] [--driver D] [--k8s-version V] [--container-runtime R] [--profile P] [--cni C] [--image REF]"
  exit 2
}

cpus=4 memory=8g driver=docker k8s_version=v1.34.0 runtime=containerd profile=minikube cni=calico
tier=dev image="" deploy_flags=()
need_arg() { [[ $# -ge 2 && -n $2 && $2 != --* ]] || fail_usage "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1 deploy_flags+=(--dry-run) ;;
    --no-monitoring) deploy_flags+=(--no-monitoring) ;;
    --dapr) deploy_flags+=(--dapr) ;;
    --tempo) deploy_flags+=(--tempo) ;;
    --tier | --cpus | --memory | --driver | --k8s-version | --container-runtime | --profile | --image | --cni)
      need_arg "$@"
      case "$1" in
        --tier) tier="$2" ;;
        --cpus) cpus="$2" ;;
        --memory) memory="$2" ;;
        --driver) driver="$2" ;;
        --k8s-version) k8s_version="$2" ;;
        --container-runtime) runtime="$2" ;;
        --profile) profile="$2" ;;
        --image) image="$2" ;;
        --cni) cni="$2" ;;
      esac
      shift
      ;;
    -h | --help) usage ;;
    *) fail_usage "unknown option '$1'" ;;
  esac
  shift
done
[[ $cpus =~ ^[0-9]+$ ]] || fail_usage "--cpus must be a number"
case "$runtime" in containerd | docker) ;; *) fail_usage "--container-runtime must be containerd or docker" ;; esac
monitoring=1
[[ " ${deploy_flags[*]} " == *" --no-monitoring "* ]] && monitoring=0

if [[ $DRY_RUN != 1 ]]; then
  for tool in minikube "$KUBECTL" "$HELM"; do
    command -v "$tool" >/dev/null 2>&1 || k8s_die "$tool is not on PATH (minikube: https://minikube.sigs.k8s.io/docs/start/; helm 4 and kubectl: scripts/install-k8s-tools.sh, then PATH=\$PWD/.tools/bin:\$PATH)"
  done
fi

# 1. The cluster. metrics-server feeds the HorizontalPodAutoscalers; storage-provisioner and
# default-storageclass (on by default) give the PostgreSQL and Redpanda volumes a class.
run minikube start --profile "$profile" --driver "$driver" --cpus "$cpus" --memory "$memory" \
  --kubernetes-version "$k8s_version" --container-runtime "$runtime" --cni "$cni" \
  --addons metrics-server,storage-provisioner,default-storageclass
for addon in metrics-server storage-provisioner default-storageclass; do
  run minikube --profile "$profile" addons enable "$addon"
done

# 2. The image: a published one, or one built here and loaded into the node (no registry).
case "$(uname -m)" in
  aarch64 | arm64) arch=arm64 ;;
  *) arch=amd64 ;;
esac
if [[ -z $image ]]; then
  rev="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo local)"
  image="localhost/todo:dev-$rev"
  run "$root/scripts/build-image.sh" --arch "$arch" --tag "$image"
  archive="$root/.tools/image/$arch/todo-$arch.oci.tar"
  if command -v skopeo >/dev/null 2>&1 || [[ $DRY_RUN == 1 ]]; then
    # A Docker archive (docker save's format) loads into either runtime; skopeo rewrites the
    # OCI archive as one, keeping the name.
    docker_archive="$root/.tools/image/$arch/todo-$arch.docker.tar"
    run rm -f "$docker_archive"
    run skopeo copy "oci-archive:$archive" "docker-archive:$docker_archive:$image"
    archive="$docker_archive"
  fi
  run minikube --profile "$profile" image load "$archive"
fi

# 3. Dev Secrets, made once: the generated passwords must stay the same across runs.
secrets_cmd=("$root/scripts/dev-secrets.sh" --context "$profile")
[[ $monitoring == 0 ]] && secrets_cmd+=(--no-monitoring)
[[ $DRY_RUN == 1 ]] && secrets_cmd+=(--dry-run)
k8s_print "${secrets_cmd[@]}"
"${secrets_cmd[@]}"

# 4. Stacks and app (a dry run passes --dry-run on, so its commands are printed too).
deploy_cmd=("$root/scripts/deploy.sh" minikube --context "$profile" --tier "$tier" --image "$image" "${deploy_flags[@]}")
k8s_print "${deploy_cmd[@]}"
"${deploy_cmd[@]}"

# 5. What to do next.
[[ $DRY_RUN == 1 ]] && k8s_say "dry run: nothing was run; after a real run it prints:"
cat <<EOF

The platform is up on Minikube profile '$profile'. In separate terminals:

  # the gateway (Envoy, a NodePort service made for the Gateway 'todo'):
  kubectl --context $profile -n envoy-gateway-system port-forward \\
    "\$(kubectl --context $profile -n envoy-gateway-system get service -o name \\
        -l gateway.envoyproxy.io/owning-gateway-namespace=todo,gateway.envoyproxy.io/owning-gateway-name=todo)" 8080:80
EOF
if [[ $monitoring == 1 ]]; then
  cat <<EOF
  kubectl --context $profile -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80              # http://127.0.0.1:3000
  kubectl --context $profile -n monitoring port-forward svc/kube-prometheus-stack-prometheus 9090:9090         # http://127.0.0.1:9090
  kubectl --context $profile -n monitoring port-forward svc/kube-prometheus-stack-alertmanager 9093:9093       # http://127.0.0.1:9093
  # Grafana login: admin / the password in the Secret:
  kubectl --context $profile -n monitoring get secret grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d; echo
EOF
fi
cat <<EOF

Smoke test (a token minted by the image itself, from the Secret's jwt-secret):

  TOKEN=\$(kubectl --context $profile -n todo run todo-token --rm -i -q --restart=Never --image=$image \\
    --overrides='{"apiVersion":"v1","spec":{"containers":[{"name":"todo-token","image":"$image","args":["token","--user","alice"],"env":[{"name":"TODO_JWT_SECRET","valueFrom":{"secretKeyRef":{"name":"todo-secrets","key":"jwt-secret"}}}]}]}}')
  curl -s -X POST http://127.0.0.1:8080/api/alice/tasks -H "Authorization: Bearer \$TOKEN" \\
    -H 'Content-Type: application/json' -d '{"title":"hello from minikube"}'
  curl -s http://127.0.0.1:8080/api/alice/tasks -H "Authorization: Bearer \$TOKEN"
  curl -s http://127.0.0.1:8080/api/alice/audit -H "Authorization: Bearer \$TOKEN"
  websocat -H "Authorization: Bearer \$TOKEN" ws://127.0.0.1:8080/api/alice/ws

Or all of it in one go: scripts/smoke-k8s.sh --context $profile

See docs/deploy/minikube.md (dashboards, log queries, an alert test, teardown).
EOF
