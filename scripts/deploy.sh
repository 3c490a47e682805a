#!/usr/bin/env bash
# Installs or upgrades the platform on a Kubernetes cluster: the stacks (Gateway API CRDs and
# Envoy Gateway, kube-prometheus-stack, Loki, Alloy, optionally Tempo and Dapr), then the app
# chart, each with the values files of the environment and the tier.
#
#   scripts/deploy.sh ENV [options]          ENV: minikube | oke | aks | gke
#
#   --dry-run             print every command, run none (needs no cluster, helm or kubectl)
#   --tier dev|prod       the overlay charts/todo/values-TIER.yaml (default dev)
#   --namespace N         the app's namespace (default todo)
#   --image REF           the image, repo:tag or repo:tag@sha256:... (default: the chart's)
#   --only stacks|app     install only the stacks, or only the app
#   --dapr                also install Dapr and run the app with TODO_BUS=dapr
#   --tempo               also install Tempo
#   --no-monitoring       skip kube-prometheus-stack, Loki, Alloy and Tempo (and the app's
#                         ServiceMonitor, PrometheusRule and dashboards)
#   --context CTX         kubeconfig context (default: the current one)
#   --secret NAME         the app's Secret (default todo-secrets)
#   --timeout DURATION    helm's wait per release (default 10m)
#   --set KEY=VALUE       an app chart value (repeatable), e.g. kafka.brokers=...
#   --values FILE         one more app values file, after the env's and tier's (repeatable)
#   --stack-set CHART:KEY=VALUE   a value of one stack's release (repeatable), e.g.
#                         loki:loki.storage.azure.accountName=todologs
#
# Idempotent: namespaces are applied, CRDs are applied server side, releases are
# `helm upgrade --install` (helm 4: --rollback-on-failure --wait=watcher, so a failed upgrade
# rolls back and a failed first install is removed). Run it again to converge.
set -euo pipefail

root="${TODO_DEPLOY_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
K8S_PROG=deploy
# shellcheck source=scripts/lib/k8s.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/k8s.sh"

usage() {
  sed -n '2,25s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}
fail_usage() {
  k8s_say "$*"
  k8s_say "usage: scripts/deploy.sh minikube|oke|aks|gke [--dry-run] [--tier dev|prod] [--namespace N] [--image REF] [--only stacks|app] [--dapr] [--tempo] [--no-monitoring] [--context CTX] [--secret NAME] [--timeout D] [--set K=V] [--values FILE] [--stack-set CHART:K=V]"
  exit 2
}

[[ $# -ge 1 ]] || fail_usage "missing ENV (minikube, oke, aks or gke)"
case "$1" in
  -h | --help) usage ;;
  minikube | oke | aks | gke) env="$1" ;;
  *) fail_usage "unknown ENV '$1': choose minikube, oke, aks or gke" ;;
esac
shift

tier=dev namespace=todo image="" only="" dapr=0 tempo=0 monitoring=1 context="" secret=todo-secrets timeout=10m
user_sets=() user_values=() stack_sets=()
need_arg() { [[ $# -ge 2 && -n $2 && $2 != --* ]] || fail_usage "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --tier)
      need_arg "$@"
      tier="$2"
      shift
      ;;
    --namespace | -n)
      need_arg "$@"
      namespace="$2"
      shift
      ;;
    --image)
      need_arg "$@"
      image="$2"
      shift
      ;;
    --only)
      need_arg "$@"
      only="$2"
      shift
      ;;
    --context)
      need_arg "$@"
      context="$2"
      shift
      ;;
    --secret)
      need_arg "$@"
      secret="$2"
      shift
      ;;
    --timeout)
      need_arg "$@"
      timeout="$2"
      shift
      ;;
    --set)
      need_arg "$@"
      [[ $2 == *=* ]] || fail_usage "--set needs KEY=VALUE"
      user_sets+=(--set "$2")
      shift
      ;;
    --values | -f)
      need_arg "$@"
      [[ -f $2 ]] || fail_usage "--values $2: no such file"
      user_values+=(-f "$2")
      shift
      ;;
    --stack-set)
      need_arg "$@"
      [[ $2 =~ ^[a-z-]+:[^=]+=.* ]] || fail_usage "--stack-set needs CHART:KEY=VALUE"
      case "${2%%:*}" in
        envoy-gateway | kube-prometheus-stack | loki | tempo | alloy | dapr) ;;
        *) fail_usage "--stack-set: unknown stack '${2%%:*}' (envoy-gateway, kube-prometheus-stack, loki, tempo, alloy, dapr)" ;;
      esac
      stack_sets+=("$2")
      shift
      ;;
    --dapr) dapr=1 ;;
    --tempo) tempo=1 ;;
    --no-monitoring) monitoring=0 ;;
    -h | --help) usage ;;
    *) fail_usage "unknown option '$1'" ;;
  esac
  shift
done
case "$tier" in dev | prod) ;; *) fail_usage "unknown tier '$tier': choose dev or prod" ;; esac
case "$only" in "" | stacks | app) ;; *) fail_usage "unknown --only '$only': choose stacks or app" ;; esac
[[ $namespace =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || fail_usage "namespace '$namespace' is not a valid Kubernetes name"

k8s_load_versions "$root/deploy/stacks/versions.env"

helm_ctx=() kubectl_ctx=()
if [[ -n $context ]]; then
  helm_ctx=(--kube-context "$context")
  kubectl_ctx=(--context "$context")
fi
helm_wait=(--rollback-on-failure --wait=watcher --timeout "$timeout")

# Which stacks this run installs.
wanted_stack() {
  case "$1" in
    envoy-gateway) return 0 ;;
    kube-prometheus-stack | loki | alloy) [[ $monitoring == 1 ]] ;;
    tempo) [[ $monitoring == 1 && $tempo == 1 ]] ;;
    dapr) [[ $dapr == 1 ]] ;;
  esac
}
do_stacks=1 do_app=1
[[ $only == app ]] && do_stacks=0
[[ $only == stacks ]] && do_app=0

# The app's values files must exist; checked before anything touches the cluster.
app_values=("$root/charts/todo/values-$env.yaml" "$root/charts/todo/values-$tier.yaml")
if [[ $do_app == 1 ]]; then
  for f in "${app_values[@]}"; do
    [[ -f $f ]] || k8s_die "$f is missing"
  done
fi
version_vars=()
for entry in "${K8S_STACKS[@]}"; do
  read -r name _ _ _ vvar _ <<<"$entry"
  if [[ $do_stacks == 1 ]] && wanted_stack "$name"; then version_vars+=("$vvar"); fi
done
((${#version_vars[@]} == 0)) || k8s_require_versions "${version_vars[@]}"

k8s_say "environment $env, tier $tier, namespace $namespace$([[ $DRY_RUN == 1 ]] && echo ', dry run: nothing is run')"

# helm 4 only: the wait and rollback flags differ from helm 3's.
if [[ $DRY_RUN != 1 ]]; then
  command -v "$HELM" >/dev/null 2>&1 || k8s_die "helm is not on PATH (scripts/install-k8s-tools.sh puts helm 4 into .tools/bin)"
  command -v "$KUBECTL" >/dev/null 2>&1 || k8s_die "kubectl is not on PATH"
  helm_version="$("$HELM" version --template '{{.Version}}')"
  [[ $helm_version == v4.* ]] || k8s_die "helm $helm_version found; this script needs helm 4 (--rollback-on-failure, --wait=watcher)"
fi

# 1. Namespaces (applied, so a second run changes nothing).
namespaces=()
if [[ $do_stacks == 1 ]]; then
  for entry in "${K8S_STACKS[@]}"; do
    read -r name _ ns _ _ _ <<<"$entry"
    wanted_stack "$name" || continue
    [[ " ${namespaces[*]} " == *" $ns "* ]] || namespaces+=("$ns")
  done
fi
[[ $do_app == 1 && " ${namespaces[*]} " != *" $namespace "* ]] && namespaces+=("$namespace")
for ns in "${namespaces[@]}"; do
  run_pipe "$KUBECTL" "${kubectl_ctx[@]}" create namespace "$ns" --dry-run=client -o yaml \
    "|" "$KUBECTL" "${kubectl_ctx[@]}" apply -f -
done

# 2. Secrets the releases read and nobody but the operator should create.
missing_secrets=0
# The key names of a Secret, one a line (never the values).
# shellcheck disable=SC2016 # a go-template, not a shell expansion
keys_tpl='go-template={{range $k, $v := .data}}{{$k}}{{"\n"}}{{end}}'
check_secret() {
  local ns="$1" name="$2" hint="$3" keys have k absent=()
  shift 3
  keys=("$@")
  k8s_print "$KUBECTL" "${kubectl_ctx[@]}" -n "$ns" get secret "$name" -o "$keys_tpl"
  [[ $DRY_RUN == 1 ]] && return 0
  if ! have="$("$KUBECTL" "${kubectl_ctx[@]}" -n "$ns" get secret "$name" -o "$keys_tpl" 2>/dev/null)"; then
    k8s_say "Secret $ns/$name does not exist. Create it with:"
    printf '  %s\n' "$hint" >&2
    missing_secrets=1
    return 0
  fi
  for k in "${keys[@]}"; do
    grep -qx -- "$k" <<<"$have" || absent+=("$k")
  done
  if ((${#absent[@]})); then
    k8s_say "Secret $ns/$name lacks the keys: ${absent[*]}. Recreate it with:"
    printf '  %s\n' "$hint" >&2
    missing_secrets=1
  fi
}
kctl="kubectl${context:+ --context $context}"
if [[ $do_app == 1 ]]; then
  app_keys=(jwt-secret database-url)
  hint="$kctl -n $namespace create secret generic $secret --from-literal=jwt-secret=\"\$(openssl rand -hex 32)\""
  case "$env" in
    minikube | oke)
      # The in-cluster PostgreSQL (postgresql.enabled in values-$env.yaml) takes its password
      # from the same Secret; database-url points at it.
      app_keys+=(postgres-password)
      hint+=" --from-literal=postgres-password=PASSWORD --from-literal=database-url='postgres://todo:PASSWORD@todo-postgresql:5432/todo'"
      ;;
    *)
      hint+=" --from-literal=database-url='postgres://USER:PASSWORD@HOST:5432/todo?sslmode=require'"
      ;;
  esac
  case "$env" in
    oke | aks | gke)
      # SASL over TLS: an OCI auth token, the Event Hubs connection string, a Redpanda Cloud
      # SCRAM password.
      app_keys+=(kafka-sasl-password)
      hint+=" --from-literal=kafka-sasl-password='...'"
      ;;
  esac
  [[ $env == minikube ]] && hint+="   (scripts/dev-secrets.sh makes it)"
  check_secret "$namespace" "$secret" "$hint" "${app_keys[@]}"
fi
if [[ $do_stacks == 1 && $monitoring == 1 ]]; then
  check_secret monitoring grafana-admin \
    "$kctl -n monitoring create secret generic grafana-admin --from-literal=admin-user=admin --from-literal=admin-password=\"\$(openssl rand -base64 24)\"" \
    admin-user admin-password
fi
# The stacks' own Secrets: a values file that mounts one (envFrom secretRef, e.g. Loki's
# object-storage keys on OKE; or a `secrets:` list, e.g. Alertmanager's receiver credentials)
# needs it in the stack's namespace.
stack_secret_refs() {
  awk '/^[[:space:]]*#/ {next}
    list && /^[[:space:]]*- / {item=$0; sub(/^[[:space:]]*- [[:space:]]*/, "", item); sub(/[[:space:]]*(#.*)?$/, "", item); print item; next}
    {list=0}
    /secretRef:/ {want=1; next}
    want && /name:/ {sub(/.*name:[[:space:]]*/, ""); sub(/[[:space:]]*(#.*)?$/, ""); print; want=0; next}
    /^[[:space:]]*secrets:[[:space:]]*$/ {list=1}' "$@" | sort -u
}
# The keys a stack Secret must hold, and the command that makes it (values to replace).
stack_secret_keys() {
  case "$1" in
    alertmanager-receivers) echo heartbeat-url pagerduty-routing-key slack-api-url ;;
    loki-object-storage) echo AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY ;;
  esac
}
stack_secret_hint() {
  local ns="$1" name="$2" file="$3"
  case "$name" in
    alertmanager-receivers)
      echo "$kctl -n $ns create secret generic $name --from-literal=heartbeat-url=https://HEARTBEAT/ping --from-literal=pagerduty-routing-key=KEY --from-literal=slack-api-url=https://hooks.slack.com/services/...$([[ $env == minikube ]] && echo '   (scripts/dev-secrets.sh makes placeholders)')"
      ;;
    loki-object-storage)
      echo "$kctl -n $ns create secret generic $name --from-literal=AWS_ACCESS_KEY_ID=KEY_ID --from-literal=AWS_SECRET_ACCESS_KEY=SECRET   (an OCI Customer Secret Key: docs/deploy/oke.md)"
      ;;
    *) echo "$kctl -n $ns create secret generic $name --from-literal=... (the keys $file names)" ;;
  esac
}
placeholders=0
if [[ $do_stacks == 1 ]]; then
  for entry in "${K8S_STACKS[@]}"; do
    read -r name _ ns _ _ _ <<<"$entry"
    wanted_stack "$name" || continue
    mapfile -t files < <(k8s_stack_values "$root/deploy/stacks/$name" "$env" "$tier" | grep -v '^-f$')
    ((${#files[@]})) || continue
    while read -r ref; do
      [[ -n $ref ]] || continue
      read -ra ref_keys <<<"$(stack_secret_keys "$ref")"
      check_secret "$ns" "$ref" "$(stack_secret_hint "$ns" "$ref" "deploy/stacks/$name/values*.yaml")" "${ref_keys[@]}"
    done < <(stack_secret_refs "${files[@]}")
    # Values the cloud's file leaves for you to fill in (<account>, <project>, ...): each
    # needs a --stack-set for this chart.
    env_file="$root/deploy/stacks/$name/values-$env.yaml"
    [[ -f $env_file ]] || continue
    if grep -qE '^[^#]*<[a-z][a-z-]*>' "$env_file"; then
      sets_for=0
      for kv in "${stack_sets[@]}"; do [[ ${kv%%:*} == "$name" ]] && sets_for=1; done
      if [[ $sets_for == 0 ]]; then
        k8s_say "deploy/stacks/$name/values-$env.yaml has values to fill in; pass them with --stack-set $name:KEY=VALUE:"
        grep -nE '^[^#]*<[a-z][a-z-]*>' "$env_file" | sed 's/^/  /' >&2
        placeholders=1
      fi
    fi
  done
fi
[[ $missing_secrets == 0 ]] || k8s_die "create the Secrets above, then run this again"
if [[ $placeholders == 1 && $DRY_RUN == 1 ]]; then
  k8s_say "(dry run: carrying on)"
elif [[ $placeholders == 1 ]]; then
  k8s_die "fill in the values above, then run this again"
fi

# 3. Stacks.
if [[ $do_stacks == 1 ]]; then
  # Gateway API and Envoy Gateway CRDs, applied server side (they are too large for the
  # last-applied annotation of a client-side apply) and kept current on every run, which helm
  # does not do for a chart's crds/ directory.
  run_pipe "$HELM" template eg-crds "$ENVOY_GATEWAY_CRDS_CHART" --version "$ENVOY_GATEWAY_VERSION" \
    --set crds.gatewayAPI.enabled=true --set "crds.gatewayAPI.channel=$GATEWAY_API_CHANNEL" \
    --set crds.envoyGateway.enabled=true \
    "|" "$KUBECTL" "${kubectl_ctx[@]}" apply --server-side --force-conflicts -f -

  for entry in "${K8S_STACKS[@]}"; do
    read -r name chart ns release vvar rvar <<<"$entry"
    wanted_stack "$name" || continue
    source_args=()
    if [[ ${!rvar} == oci://* ]]; then
      chart_ref="${!rvar}"
    else
      chart_ref="$chart"
      source_args=(--repo "${!rvar}")
    fi
    # Envoy Gateway's CRDs were applied above: its chart must not own them (crds.enabled
    # turns off the subchart that carries them in recent versions, --skip-crds the crds/ dir).
    [[ $name == envoy-gateway ]] && source_args+=(--skip-crds --set crds.enabled=false)
    mapfile -t values < <(k8s_stack_values "$root/deploy/stacks/$name" "$env" "$tier")
    for kv in "${stack_sets[@]}"; do
      [[ ${kv%%:*} == "$name" ]] && values+=(--set "${kv#*:}")
    done
    run "$HELM" "${helm_ctx[@]}" upgrade --install "$release" "$chart_ref" "${source_args[@]}" \
      --version "${!vvar}" --namespace "$ns" "${values[@]}" "${helm_wait[@]}"
    # Manifests beside the values files (e.g. envoy-gateway/gatewayclass.yaml, the GatewayClass
    # `eg` the app's Gateway names) need the release's CRDs: applied right after it.
    for manifest in "$root/deploy/stacks/$name"/*.yaml; do
      [[ -f $manifest && ${manifest##*/} != values*.yaml ]] || continue
      run "$KUBECTL" "${kubectl_ctx[@]}" apply --server-side -f "$manifest"
    done
  done
fi

# 4. The app.
if [[ $do_app == 1 ]]; then
  sets=(--set secrets.create=false --set "secrets.existingSecret=$secret")
  if [[ -n $image ]]; then
    { read -r img_repo; read -r img_tag; read -r img_digest; } < <(k8s_split_image "$image")
    [[ -n $img_tag ]] || k8s_die "--image $image needs a tag (repo:tag or repo:tag@sha256:...)"
    [[ -n $img_digest ]] && img_tag="$img_tag@$img_digest"
    sets+=(--set "image.repository=$img_repo" --set "image.tag=$img_tag")
  fi
  if [[ $dapr == 1 ]]; then
    sets+=(--set bus=dapr --set dapr.enabled=true)
  fi
  if [[ $monitoring == 0 ]]; then
    sets+=(--set monitoring.serviceMonitor.enabled=false --set monitoring.podMonitor.enabled=false
      --set monitoring.prometheusRule.enabled=false --set monitoring.dashboards.enabled=false)
  fi
  run "$HELM" "${helm_ctx[@]}" upgrade --install todo "$root/charts/todo" --namespace "$namespace" \
    -f "${app_values[0]}" -f "${app_values[1]}" "${user_values[@]}" "${sets[@]}" "${user_sets[@]}" "${helm_wait[@]}"
  # helm waited for readiness; this also says which Deployment is late when one is.
  run "$KUBECTL" "${kubectl_ctx[@]}" -n "$namespace" rollout status deployment \
    --selector app.kubernetes.io/instance=todo --timeout "$timeout"
  run "$KUBECTL" "${kubectl_ctx[@]}" -n "$namespace" get deployments,pods,services,gateways,httproutes
fi

k8s_say "done ($env, $tier)"
