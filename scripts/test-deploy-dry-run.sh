#!/usr/bin/env bash
# Tests scripts/deploy.sh, setup-minikube.sh and dev-secrets.sh without a cluster. Fake
# `helm`, `kubectl` and `minikube` on PATH record every call they get:
#   - `deploy.sh ENV --dry-run` for every ENV and tier prints the right commands (values files,
#     namespaces, chart versions from versions.env, helm 4 flags) and calls neither fake;
#   - the options (--namespace, --image, --only, --dapr, --tempo, --no-monitoring, --context)
#     change the printed commands as documented;
#   - a real run against the fakes runs the commands in order (namespaces, Secret checks, CRDs,
#     stacks, app), and a second run issues the very same idempotent commands;
#   - a missing Secret stops the run before any release, naming the `kubectl create secret`;
#   - helm 3 is refused; an unknown ENV, tier or option exits 2 with a message;
#   - setup-minikube.sh --dry-run calls nothing, and its real run against fakes (minikube,
#     skopeo, build-image.sh too) goes cluster, image, Secrets, stacks, app; dev-secrets.sh
#     generates the values, never prints them, and keeps existing Secrets;
#   - smoke-k8s.sh against a fake kubectl and curl: token from the image, create, read, audit.
# It runs on a fixture tree (its own versions.env and values files) so that it does not depend
# on the stacks' or the chart's contents; when the repository has deploy/stacks/versions.env and
# charts/todo, the dry run is also checked against them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failures=0 cases=0
pass() { cases=$((cases + 1)); }
fail() {
  cases=$((cases + 1))
  failures=$((failures + 1))
  printf 'FAIL: %s\n' "$*"
}
# expect_in LABEL NEEDLE HAYSTACK
expect_in() {
  if [[ $3 == *"$2"* ]]; then pass; else fail "$1: expected to find [$2]"; fi
}
expect_not_in() {
  if [[ $3 != *"$2"* ]]; then pass; else fail "$1: did not expect [$2]"; fi
}
expect_eq() {
  if [[ $2 == "$3" ]]; then pass; else fail "$1: expected [$2], got [$3]"; fi
}

# --- the fixture tree ------------------------------------------------------------------------
root="$work/root"
mkdir -p "$root/scripts/lib" "$root/charts/todo" "$root/deploy/stacks"
cp "$repo/scripts/deploy.sh" "$repo/scripts/setup-minikube.sh" "$repo/scripts/dev-secrets.sh" \
  "$repo/scripts/smoke-k8s.sh" "$root/scripts/"
cp "$repo/scripts/lib/ports.sh" "$root/scripts/lib/"
cp "$repo/scripts/lib/k8s.sh" "$root/scripts/lib/"
cat >"$root/deploy/stacks/versions.env" <<'EOF'
# fixture
KUBE_PROMETHEUS_STACK_VERSION=88.1.1
LOKI_VERSION=18.2.2
ALLOY_VERSION=1.3.3
TEMPO_VERSION=1.44.4
ENVOY_GATEWAY_VERSION=v1.5.5
DAPR_VERSION=1.16.6
EOF
for env in minikube oke aks gke; do
  touch "$root/charts/todo/values-$env.yaml"
  for chart in kube-prometheus-stack loki alloy envoy-gateway; do
    mkdir -p "$root/deploy/stacks/$chart"
    touch "$root/deploy/stacks/$chart/values.yaml" "$root/deploy/stacks/$chart/values-$env.yaml"
  done
done
touch "$root/charts/todo/values-dev.yaml" "$root/charts/todo/values-prod.yaml"
touch "$root/deploy/stacks/loki/values-prod.yaml"
printf 'kind: GatewayClass\n' >"$root/deploy/stacks/envoy-gateway/gatewayclass.yaml"
# A value left to fill in (AKS), and a Secret a stack mounts (OKE), as the real files have.
printf 'loki:\n  storage:\n    azure:\n      accountName: <account>   # yours\n' >"$root/deploy/stacks/loki/values-aks.yaml"
printf 'singleBinary:\n  extraEnvFrom:\n    - secretRef:\n        name: loki-object-storage\n' >"$root/deploy/stacks/loki/values-oke.yaml"
# Alertmanager's receiver credentials, a `secrets:` list in the stack's base file (every env).
printf 'alertmanager:\n  alertmanagerSpec:\n    secrets:\n      - alertmanager-receivers   # mounted\n' >"$root/deploy/stacks/kube-prometheus-stack/values.yaml"

# --- the fakes -------------------------------------------------------------------------------
fakes="$work/bin"
mkdir -p "$fakes"
calls="$work/calls"
cat >"$fakes/helm" <<'EOF'
#!/usr/bin/env bash
printf 'helm %s\n' "$*" >>"$FAKE_CALLS"
case "$1" in
  version) echo "${FAKE_HELM_VERSION:-v4.1.4}" ;;
  template) printf 'apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n' ;;
esac
exit 0
EOF
cat >"$fakes/kubectl" <<'EOF'
#!/usr/bin/env bash
printf 'kubectl %s\n' "$*" >>"$FAKE_CALLS"
args=" $* "
if [[ $args == *" create namespace "* ]]; then
  printf 'apiVersion: v1\nkind: Namespace\n'
elif [[ $args == *" apply "* ]]; then
  cat >/dev/null
elif [[ $args == *" create secret generic "* ]]; then
  # Remembered, so that a later `get secret` finds it.
  name="${args#* create secret generic }"
  printf '%s\n' "${name%% *}" >>"$FAKE_CALLS.created"
elif [[ $args == *" get secret "* ]]; then
  for missing in ${FAKE_MISSING_SECRETS:-}; do
    if [[ $args == *" $missing "* ]] && ! grep -qx -- "$missing" "$FAKE_CALLS.created" 2>/dev/null; then
      echo "Error from server (NotFound)" >&2
      exit 1
    fi
  done
  for key in jwt-secret database-url kafka-sasl-password webhook-secret postgres-password admin-user admin-password \
    heartbeat-url pagerduty-routing-key slack-api-url AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
    [[ " ${FAKE_ABSENT_KEYS:-} " == *" $key "* ]] || printf '%s\n' "$key"
  done
fi
exit 0
EOF
cat >"$fakes/minikube" <<'EOF'
#!/usr/bin/env bash
printf 'minikube %s\n' "$*" >>"$FAKE_CALLS"
EOF
chmod +x "$fakes/helm" "$fakes/kubectl" "$fakes/minikube"
export FAKE_CALLS="$calls"
export PATH="$fakes:$PATH"

deploy() {
  : >"$calls"
  set +e
  out="$(TODO_DEPLOY_ROOT="$root" "$root/scripts/deploy.sh" "$@" 2>"$work/err")"
  rc=$?
  set -e
  err="$(cat "$work/err")"
}

# --- dry run: every ENV and tier --------------------------------------------------------------
for env in minikube oke aks gke; do
  for tier in dev prod; do
    label="dry-run $env $tier"
    deploy "$env" --dry-run --tier "$tier"
    expect_eq "$label: exit status" 0 "$rc"
    expect_eq "$label: helm/kubectl calls" "" "$(cat "$calls")"
    expect_in "$label: app values" "upgrade --install todo $root/charts/todo --namespace todo -f $root/charts/todo/values-$env.yaml -f $root/charts/todo/values-$tier.yaml" "$out"
    expect_in "$label: app wait" "--rollback-on-failure --wait=watcher --timeout 10m" "$out"
    expect_not_in "$label: helm 3 flag" "--atomic" "$out"
    for ns in envoy-gateway-system monitoring todo; do
      expect_in "$label: namespace $ns" "+ kubectl create namespace $ns --dry-run=client -o yaml | kubectl apply -f -" "$out"
    done
    expect_not_in "$label: no dapr namespace" "dapr-system" "$out"
    expect_in "$label: CRDs server side" "+ helm template eg-crds oci://docker.io/envoyproxy/gateway-crds-helm --version v1.5.5 --set crds.gatewayAPI.enabled=true --set crds.gatewayAPI.channel=standard --set crds.envoyGateway.enabled=true | kubectl apply --server-side --force-conflicts -f -" "$out"
    expect_in "$label: envoy gateway" "+ helm upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --skip-crds --set crds.enabled=false --version v1.5.5 --namespace envoy-gateway-system -f $root/deploy/stacks/envoy-gateway/values.yaml -f $root/deploy/stacks/envoy-gateway/values-$env.yaml --rollback-on-failure" "$out"
    expect_in "$label: gatewayclass after eg" "--timeout 10m
+ kubectl apply --server-side -f $root/deploy/stacks/envoy-gateway/gatewayclass.yaml
+ helm upgrade --install kube-prometheus-stack" "$out"
    expect_in "$label: kube-prometheus-stack" "upgrade --install kube-prometheus-stack kube-prometheus-stack --repo https://prometheus-community.github.io/helm-charts --version 88.1.1 --namespace monitoring -f $root/deploy/stacks/kube-prometheus-stack/values.yaml -f $root/deploy/stacks/kube-prometheus-stack/values-$env.yaml --rollback" "$out"
    loki_values="-f $root/deploy/stacks/loki/values.yaml -f $root/deploy/stacks/loki/values-$env.yaml"
    [[ $tier == prod ]] && loki_values+=" -f $root/deploy/stacks/loki/values-prod.yaml"
    expect_in "$label: loki" "upgrade --install loki loki --repo https://grafana-community.github.io/helm-charts --version 18.2.2 --namespace monitoring $loki_values --rollback" "$out"
    expect_in "$label: alloy" "upgrade --install alloy alloy --repo https://grafana.github.io/helm-charts --version 1.3.3 --namespace monitoring" "$out"
    expect_not_in "$label: tempo off by default" "upgrade --install tempo" "$out"
    expect_not_in "$label: dapr off by default" "upgrade --install dapr" "$out"
    for other in minikube oke aks gke; do
      [[ $other == "$env" ]] && continue
      expect_not_in "$label: no $other values" "values-$other.yaml" "$out"
    done
    [[ $env == oke ]] && expect_in "$label: loki's Secret on oke" "+ kubectl -n monitoring get secret loki-object-storage" "$out"
    expect_in "$label: app secret check" "+ kubectl -n todo get secret todo-secrets" "$out"
    expect_in "$label: grafana secret check" "+ kubectl -n monitoring get secret grafana-admin" "$out"
    expect_in "$label: alertmanager secret check" "+ kubectl -n monitoring get secret alertmanager-receivers" "$out"
    expect_in "$label: says dry run" "dry run: nothing is run" "$err"
  done
done

# The dry run needs neither tool at all.
deploy gke --dry-run
expect_eq "dry-run without tools: baseline" 0 "$rc"
set +e
TODO_DEPLOY_ROOT="$root" HELM=/nonexistent/helm KUBECTL=/nonexistent/kubectl "$root/scripts/deploy.sh" gke --dry-run >/dev/null 2>&1
expect_eq "dry-run without helm and kubectl" 0 "$?"
set -e

# --- options ---------------------------------------------------------------------------------
deploy aks --dry-run --namespace shop --image ghcr.io/acme/todo:1.4.0 --context aks-dev
expect_eq "options: exit" 0 "$rc"
expect_in "options: namespace" "+ kubectl --context aks-dev create namespace shop --dry-run=client -o yaml | kubectl --context aks-dev apply -f -" "$out"
expect_in "options: release namespace" "upgrade --install todo $root/charts/todo --namespace shop" "$out"
expect_in "options: image" "--set image.repository=ghcr.io/acme/todo --set image.tag=1.4.0" "$out"
expect_in "options: helm context" "+ helm --kube-context aks-dev upgrade --install todo" "$out"
expect_in "options: secret check in namespace" "+ kubectl --context aks-dev -n shop get secret todo-secrets" "$out"
expect_eq "options: no calls" "" "$(cat "$calls")"

printf 'kafka: {}\n' >"$work/mine.yaml"
deploy oke --dry-run --set kafka.brokers=cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9092 --set 'kafka.saslUsername=acme/ci/ocid1.streampool.oc1..x' --values "$work/mine.yaml"
expect_in "--set and --values: passed to the app, after the env files" "-f $root/charts/todo/values-dev.yaml -f $work/mine.yaml --set secrets.create=false --set secrets.existingSecret=todo-secrets --set kafka.brokers=cell-1.streaming.eu-frankfurt-1.oci.oraclecloud.com:9092 --set kafka.saslUsername=acme/ci/ocid1.streampool.oc1..x --rollback" "$out"
expect_eq "--set and --values: only on the app" 1 "$(grep -c 'kafka.brokers' <<<"$out")"
deploy oke --dry-run --image localhost:5000/todo:dev@sha256:0123abcd
expect_in "image with registry port and digest" "--set image.repository=localhost:5000/todo --set image.tag=dev@sha256:0123abcd" "$out"
deploy oke --dry-run --image ghcr.io/acme/todo
expect_eq "image without tag: exit" 1 "$rc"
expect_in "image without tag: message" "needs a tag" "$err"

deploy gke --dry-run --only app
expect_in "only app: app" "upgrade --install todo" "$out"
expect_not_in "only app: no stacks" "upgrade --install kube-prometheus-stack" "$out"
expect_not_in "only app: no CRDs" "gateway-crds-helm" "$out"
expect_not_in "only app: no grafana secret" "grafana-admin" "$out"
expect_not_in "only app: no monitoring namespace" "namespace monitoring" "$out"

deploy gke --dry-run --only stacks
expect_not_in "only stacks: no app" "upgrade --install todo" "$out"
expect_in "only stacks: stacks" "upgrade --install loki" "$out"
expect_not_in "only stacks: no app secret" "todo-secrets" "$out"

deploy minikube --dry-run --dapr --tempo
expect_in "dapr: namespace" "create namespace dapr-system" "$out"
expect_in "dapr: release" "+ helm upgrade --install dapr dapr --repo https://dapr.github.io/helm-charts --version 1.16.6 --namespace dapr-system" "$out"
expect_in "dapr: app bus" "--set bus=dapr --set dapr.enabled=true" "$out"
expect_in "tempo: release" "+ helm upgrade --install tempo tempo --repo https://grafana-community.github.io/helm-charts --version 1.44.4 --namespace monitoring" "$out"
tempo_line="$(grep -n 'upgrade --install tempo' <<<"$out" | cut -d: -f1)"
alloy_line="$(grep -n 'upgrade --install alloy' <<<"$out" | cut -d: -f1)"
if ((tempo_line < alloy_line)); then pass; else fail "tempo is installed before alloy"; fi

deploy minikube --dry-run --no-monitoring
expect_not_in "no-monitoring: no kube-prometheus-stack" "kube-prometheus-stack" "$out"
expect_not_in "no-monitoring: no loki" "upgrade --install loki" "$out"
expect_in "no-monitoring: envoy gateway stays" "upgrade --install eg" "$out"
expect_in "no-monitoring: app monitors off" "--set monitoring.serviceMonitor.enabled=false --set monitoring.podMonitor.enabled=false --set monitoring.prometheusRule.enabled=false --set monitoring.dashboards.enabled=false" "$out"
expect_not_in "no-monitoring: no grafana secret" "grafana-admin" "$out"

# --- usage errors ----------------------------------------------------------------------------
usage_case() {
  local label="$1" want="$2"
  shift 2
  deploy "$@"
  expect_eq "$label: exit" 2 "$rc"
  expect_in "$label: message" "$want" "$err"
  expect_eq "$label: no calls" "" "$(cat "$calls")"
}
usage_case "unknown ENV" "unknown ENV 'eks'" eks --dry-run
usage_case "no ENV" "missing ENV" 
usage_case "unknown option" "unknown option '--force'" oke --dry-run --force
usage_case "unknown tier" "unknown tier 'staging'" oke --dry-run --tier staging
usage_case "tier without value" "--tier needs a value" oke --tier
usage_case "tier followed by a flag" "--tier needs a value" oke --tier --dry-run
usage_case "unknown --only" "unknown --only 'db'" oke --dry-run --only db
usage_case "bad namespace" "not a valid Kubernetes name" oke --dry-run --namespace Bad_NS
usage_case "--set without =" "--set needs KEY=VALUE" oke --dry-run --set kafka.brokers
usage_case "--values missing file" "no such file" oke --dry-run --values /nonexistent.yaml

# Values a cloud's stack file leaves to fill in, and the Secrets a stack mounts.
deploy aks --dry-run
expect_eq "placeholder, dry run: exit" 0 "$rc"
expect_in "placeholder, dry run: named" "deploy/stacks/loki/values-aks.yaml has values to fill in" "$err"
expect_in "placeholder, dry run: the line" "accountName: <account>" "$err"
deploy aks
expect_eq "placeholder, real run: exit" 1 "$rc"
expect_not_in "placeholder, real run: nothing installed" "helm upgrade" "$(cat "$calls")"
deploy aks --stack-set 'loki:loki.storage.azure.accountName=todologs'
expect_eq "placeholder filled with --stack-set: exit" 0 "$rc"
expect_in "--stack-set reaches its stack only" "upgrade --install loki loki --repo https://grafana-community.github.io/helm-charts --version 18.2.2 --namespace monitoring -f $root/deploy/stacks/loki/values.yaml -f $root/deploy/stacks/loki/values-aks.yaml --set loki.storage.azure.accountName=todologs --rollback" "$(cat "$calls")"
expect_eq "--stack-set: one release" 1 "$(grep -c accountName=todologs "$calls")"
deploy oke --dry-run
expect_in "stack Secret: checked" "+ kubectl -n monitoring get secret loki-object-storage" "$out"
deploy gke --dry-run
expect_not_in "stack Secret: only where a file mounts it" "loki-object-storage" "$out"
FAKE_MISSING_SECRETS=loki-object-storage deploy oke
expect_eq "stack Secret missing: exit" 1 "$rc"
expect_in "stack Secret missing: named" "Secret monitoring/loki-object-storage does not exist" "$err"
FAKE_MISSING_SECRETS=alertmanager-receivers deploy gke
expect_eq "alertmanager Secret missing: exit" 1 "$rc"
expect_in "alertmanager Secret missing: named" "Secret monitoring/alertmanager-receivers does not exist" "$err"
expect_in "alertmanager Secret missing: the command" "kubectl -n monitoring create secret generic alertmanager-receivers --from-literal=heartbeat-url=https://HEARTBEAT/ping --from-literal=pagerduty-routing-key=KEY --from-literal=slack-api-url=" "$err"
expect_not_in "alertmanager Secret missing: no release" "helm upgrade" "$(cat "$calls")"
FAKE_MISSING_SECRETS=alertmanager-receivers deploy minikube
expect_in "alertmanager Secret missing on minikube: dev-secrets.sh named" "scripts/dev-secrets.sh makes placeholders" "$err"
FAKE_ABSENT_KEYS=slack-api-url deploy aks --stack-set 'loki:loki.storage.azure.accountName=todologs'
expect_eq "alertmanager Secret without a key: exit" 1 "$rc"
expect_in "alertmanager Secret without a key: named" "Secret monitoring/alertmanager-receivers lacks the keys: slack-api-url" "$err"
FAKE_ABSENT_KEYS=AWS_SECRET_ACCESS_KEY deploy oke
expect_eq "loki Secret without a key: exit" 1 "$rc"
expect_in "loki Secret without a key: named" "Secret monitoring/loki-object-storage lacks the keys: AWS_SECRET_ACCESS_KEY" "$err"
expect_in "loki Secret without a key: the command" "create secret generic loki-object-storage --from-literal=AWS_ACCESS_KEY_ID=KEY_ID --from-literal=AWS_SECRET_ACCESS_KEY=SECRET" "$err"
deploy minikube --dry-run --no-monitoring
expect_not_in "no-monitoring: no alertmanager secret" "alertmanager-receivers" "$out"
usage_case "--stack-set unknown stack" "unknown stack 'grafana'" aks --dry-run --stack-set grafana:a=b
usage_case "--stack-set without =" "--stack-set needs CHART:KEY=VALUE" aks --dry-run --stack-set loki:a

# A missing versions.env entry is named.
cp "$root/deploy/stacks/versions.env" "$work/versions.env.bak"
grep -v '^LOKI_VERSION=' "$work/versions.env.bak" >"$root/deploy/stacks/versions.env"
deploy oke --dry-run
expect_eq "versions.env without LOKI_VERSION: exit" 1 "$rc"
expect_in "versions.env without LOKI_VERSION: message" "does not set: LOKI_VERSION" "$err"
cp "$work/versions.env.bak" "$root/deploy/stacks/versions.env"

# --- a real run against the fakes: order and idempotence --------------------------------------
deploy oke --tier prod
expect_eq "real run: exit" 0 "$rc"
first="$(cat "$calls")"
expected_order=(
  "helm version --template {{.Version}}"
  "kubectl create namespace envoy-gateway-system --dry-run=client -o yaml"
  "kubectl apply -f -"
  "kubectl create namespace monitoring --dry-run=client -o yaml"
  "kubectl apply -f -"
  "kubectl create namespace todo --dry-run=client -o yaml"
  "kubectl apply -f -"
  "kubectl -n todo get secret todo-secrets -o"
  "kubectl -n monitoring get secret grafana-admin -o"
  "kubectl -n monitoring get secret alertmanager-receivers -o"
  "kubectl -n monitoring get secret loki-object-storage -o"
  "helm template eg-crds oci://docker.io/envoyproxy/gateway-crds-helm"
  "kubectl apply --server-side --force-conflicts -f -"
  "helm upgrade --install eg "
  "kubectl apply --server-side -f $root/deploy/stacks/envoy-gateway/gatewayclass.yaml"
  "helm upgrade --install kube-prometheus-stack "
  "helm upgrade --install loki "
  "helm upgrade --install alloy "
  "helm upgrade --install todo "
  "kubectl -n todo rollout status deployment --selector app.kubernetes.io/instance=todo --timeout 10m"
  "kubectl -n todo get deployments,pods,services,gateways,httproutes"
)
mapfile -t got <"$calls"
expect_eq "real run: number of calls" "${#expected_order[@]}" "${#got[@]}"
for i in "${!expected_order[@]}"; do
  # The two sides of a pipe may be recorded in either order.
  want="${expected_order[$i]}"
  line="${got[$i]:-}"
  if [[ $line == "$want"* ]]; then
    pass
  elif [[ $want == "kubectl apply"* && ${got[$((i - 1))]:-} == "$want"* ]] ||
    [[ $want == "kubectl apply"* && ${got[$((i + 1))]:-} == "$want"* ]] ||
    [[ ${got[$((i + 1))]:-} == "$want"* || ${got[$((i - 1))]:-} == "$want"* ]]; then
    pass
  else
    fail "real run: call $((i + 1)) is [$line], expected [$want...]"
  fi
done
expect_in "real run: app values" "helm upgrade --install todo $root/charts/todo --namespace todo -f $root/charts/todo/values-oke.yaml -f $root/charts/todo/values-prod.yaml" "$first"
for line in "${got[@]}"; do
  case "$line" in
    "helm install "* | "helm uninstall "* | "helm delete "* | "kubectl delete "* | "kubectl create secret"* | "kubectl replace "*)
      fail "real run: non-idempotent command [$line]"
      ;;
    "kubectl create "*)
      [[ $line == *"--dry-run=client -o yaml"* ]] || fail "real run: kubectl create without --dry-run=client [$line]"
      ;;
  esac
done
pass
deploy oke --tier prod
expect_eq "second run: exit" 0 "$rc"
expect_eq "second run: the same commands" "$(sort <<<"$first")" "$(sort "$calls")"

# A missing Secret stops before any release and says how to create it.
FAKE_MISSING_SECRETS=todo-secrets deploy oke
expect_eq "missing secret: exit" 1 "$rc"
expect_in "missing secret: names it" "Secret todo/todo-secrets does not exist" "$err"
expect_in "missing secret: the command" "kubectl -n todo create secret generic todo-secrets --from-literal=jwt-secret=" "$err"
expect_in "missing secret: SASL key on oke" "--from-literal=kafka-sasl-password=" "$err"
expect_in "missing secret: in-cluster PostgreSQL on oke" "--from-literal=postgres-password=" "$err"
FAKE_MISSING_SECRETS=todo-secrets deploy aks
expect_in "missing secret on aks: TLS database URL" "sslmode=require" "$err"
expect_not_in "missing secret on aks: no in-cluster PostgreSQL" "postgres-password" "$err"
expect_not_in "missing secret: no release" "helm upgrade" "$(cat "$calls")"
FAKE_MISSING_SECRETS=grafana-admin deploy gke
expect_eq "missing grafana secret: exit" 1 "$rc"
expect_in "missing grafana secret: the command" "kubectl -n monitoring create secret generic grafana-admin --from-literal=admin-user=admin" "$err"

# helm 3 is refused before anything is done.
FAKE_HELM_VERSION=v3.16.2 deploy gke
expect_eq "helm 3: exit" 1 "$rc"
expect_in "helm 3: message" "needs helm 4" "$err"
expect_eq "helm 3: only the version asked" "helm version --template {{.Version}}" "$(cat "$calls")"

# --- setup-minikube.sh --dry-run --------------------------------------------------------------
: >"$calls"
set +e
out="$("$root/scripts/setup-minikube.sh" --dry-run --dapr --cpus 6 2>"$work/err")"
rc=$?
set -e
expect_eq "setup-minikube dry-run: exit ($(cat "$work/err"))" 0 "$rc"
expect_eq "setup-minikube dry-run: no calls" "" "$(cat "$calls")"
expect_in "setup-minikube: start" "+ minikube start --profile minikube --driver docker --cpus 6 --memory 8g --kubernetes-version v1.34.0 --container-runtime containerd --cni calico --addons metrics-server,storage-provisioner,default-storageclass" "$out"
expect_in "setup-minikube: build" "/scripts/build-image.sh --arch " "$out"
expect_in "setup-minikube: docker archive" "+ skopeo copy oci-archive:$root/.tools/image/" "$out"
expect_in "setup-minikube: image load" "+ minikube --profile minikube image load $root/.tools/image/" "$out"
expect_in "setup-minikube: secret values hidden" "--from-literal=jwt-secret=<hidden>" "$out"
expect_in "setup-minikube: deploy" "/scripts/deploy.sh minikube --context minikube --tier dev --image localhost/todo:dev-" "$out"
expect_in "setup-minikube: deploy's own commands" "+ helm --kube-context minikube upgrade --install todo $root/charts/todo --namespace todo -f $root/charts/todo/values-minikube.yaml -f $root/charts/todo/values-dev.yaml" "$out"
expect_in "setup-minikube: dapr passed on" "upgrade --install dapr dapr" "$out"
expect_in "setup-minikube: grafana port-forward" "port-forward svc/kube-prometheus-stack-grafana 3000:80" "$out"
expect_in "setup-minikube: smoke" "/api/alice/audit" "$out"
out="$("$root/scripts/setup-minikube.sh" --dry-run --image ghcr.io/acme/todo:1.0.0 --no-monitoring 2>/dev/null)"
expect_not_in "setup-minikube --image: no build" "build-image.sh" "$out"
expect_not_in "setup-minikube --no-monitoring: no grafana" "grafana" "$out"
expect_in "setup-minikube --image: passed on" "--image ghcr.io/acme/todo:1.0.0" "$out"
set +e
"$root/scripts/setup-minikube.sh" --dry-run --cpus many >/dev/null 2>"$work/err"
rc=$?
set -e
expect_eq "setup-minikube bad --cpus: exit" 2 "$rc"
expect_in "setup-minikube bad --cpus: message" "--cpus must be a number" "$(cat "$work/err")"

# --- setup-minikube.sh for real, against the fakes --------------------------------------------
cat >"$root/scripts/build-image.sh" <<'EOF'
#!/usr/bin/env bash
printf 'build-image.sh %s\n' "$*" >>"$FAKE_CALLS"
EOF
cat >"$fakes/skopeo" <<'EOF'
#!/usr/bin/env bash
printf 'skopeo %s\n' "$*" >>"$FAKE_CALLS"
EOF
chmod +x "$root/scripts/build-image.sh" "$fakes/skopeo"
: >"$calls"
set +e
out="$(FAKE_MISSING_SECRETS="todo-secrets grafana-admin" "$root/scripts/setup-minikube.sh" 2>&1)"
rc=$?
set -e
expect_eq "setup-minikube real run: exit" 0 "$rc"
mapfile -t got <"$calls"
order=("minikube start" "minikube --profile minikube addons enable metrics-server" "build-image.sh --arch"
  "skopeo copy oci-archive:" "minikube --profile minikube image load" "kubectl --context minikube -n todo create secret generic todo-secrets"
  "kubectl --context minikube -n monitoring create secret generic grafana-admin" "helm version"
  "helm --kube-context minikube upgrade --install eg" "helm --kube-context minikube upgrade --install todo")
at=0
for want in "${order[@]}"; do
  found=-1
  for ((i = at; i < ${#got[@]}; i++)); do
    if [[ ${got[$i]} == "$want"* ]]; then
      found=$i
      break
    fi
  done
  if ((found >= 0)); then
    pass
    at=$found
  else
    fail "setup-minikube real run: [$want...] missing or out of order"
  fi
done
secret_line="$(grep -- '-n todo create secret generic todo-secrets' "$calls")"
jwt="$(sed -n 's/.*--from-literal=jwt-secret=\([^ ]*\).*/\1/p' <<<"$secret_line")"
if [[ ${#jwt} -ge 32 ]]; then pass; else fail "dev-secrets: generated jwt-secret is ${#jwt} bytes"; fi
expect_not_in "dev-secrets: the generated value is never printed" "$jwt" "$out"
pg="$(sed -n 's/.*--from-literal=postgres-password=\([^ ]*\).*/\1/p' <<<"$secret_line")"
expect_in "dev-secrets: database-url uses the same password" "--from-literal=database-url=postgres://todo:$pg@todo-postgresql:5432/todo" "$secret_line"
: >"$calls"
FAKE_MISSING_SECRETS="todo-secrets grafana-admin" "$root/scripts/dev-secrets.sh" --context minikube >/dev/null 2>&1
expect_not_in "dev-secrets second run: existing Secrets kept" "create secret" "$(cat "$calls")"
: >"$calls"
rm -f "$calls.created"
out="$(FAKE_MISSING_SECRETS="alertmanager-receivers" "$root/scripts/dev-secrets.sh" --context minikube 2>&1)"
expect_in "dev-secrets: alertmanager placeholders" "kubectl --context minikube -n monitoring create secret generic alertmanager-receivers --from-literal=heartbeat-url=http://localhost:9/heartbeat --from-literal=pagerduty-routing-key=dev-placeholder --from-literal=slack-api-url=http://localhost:9/slack" "$(cat "$calls")"
: >"$calls"
FAKE_MISSING_SECRETS="alertmanager-receivers grafana-admin" "$root/scripts/dev-secrets.sh" --context kind-todo --no-monitoring >/dev/null 2>&1
expect_not_in "dev-secrets --no-monitoring: no monitoring Secrets" "-n monitoring" "$(cat "$calls")"

# --- smoke-k8s.sh against fakes (kubectl run mints the token; curl answers as the API) -------
smoke_bin="$work/smoke-bin"
mkdir -p "$smoke_bin"
cat >"$smoke_bin/kubectl" <<'EOF'
#!/usr/bin/env bash
printf 'kubectl %s\n' "$*" >>"$FAKE_CALLS"
case " $* " in
  *" get deployment todo-api "*) echo ghcr.io/acme/todo:1.0.0 ;;
  *" run todo-token "*) echo "eyJh.eyJz.sig" ;;
esac
exit 0
EOF
cat >"$smoke_bin/curl" <<'EOF'
#!/usr/bin/env bash
printf 'curl %s\n' "$*" >>"$FAKE_CALLS"
url="" method=GET
while (($#)); do
  case "$1" in
    -X) method="$2"; shift ;;
    http*) url="$1" ;;
  esac
  shift
done
case "$method $url" in
  "POST "*/tasks) echo '{"id":"0190-aaaa","title":"smoke test"}' ;;
  "GET "*/tasks/0190-aaaa) echo '{"id":"0190-aaaa","title":"smoke test"}' ;;
  "GET "*/audit) echo '{"items":[{"task_id":"0190-aaaa","type":"task.created"}]}' ;;
  *) exit 22 ;;
esac
EOF
chmod +x "$smoke_bin/kubectl" "$smoke_bin/curl"
: >"$calls"
set +e
out="$(PATH="$smoke_bin:$PATH" "$root/scripts/smoke-k8s.sh" --url http://203.0.113.7 --user u1 2>&1)"
rc=$?
set -e
expect_eq "smoke-k8s: exit ($out)" 0 "$rc"
expect_in "smoke-k8s: says ok" "ok: task 0190-aaaa created, read back and audited through http://203.0.113.7" "$out"
expect_in "smoke-k8s: waits for the Gateway" "kubectl -n todo wait --for=condition=Programmed gateway/todo" "$(cat "$calls")"
expect_in "smoke-k8s: token from the app's image" "run todo-token --rm -i -q --restart=Never --image=ghcr.io/acme/todo:1.0.0" "$(cat "$calls")"
expect_in "smoke-k8s: bearer token" "Authorization: Bearer eyJh.eyJz.sig" "$(cat "$calls")"
expect_in "smoke-k8s: the user's routes" "http://203.0.113.7/api/u1/audit" "$(cat "$calls")"
expect_not_in "smoke-k8s: no port-forward with --url" "port-forward" "$(cat "$calls")"

# --- the repository's own files, when they are there -----------------------------------------
if [[ -f $repo/deploy/stacks/versions.env && -d $repo/charts/todo ]]; then
  # shellcheck disable=SC1091
  versions="$(set -a && source "$repo/deploy/stacks/versions.env" && env)"
  for env in minikube oke aks gke; do
    for tier in dev prod; do
      [[ -f $repo/charts/todo/values-$env.yaml && -f $repo/charts/todo/values-$tier.yaml ]] || continue
      : >"$calls"
      set +e
      out="$("$repo/scripts/deploy.sh" "$env" --dry-run --tier "$tier" 2>"$work/err")"
      rc=$?
      set -e
      label="repository dry-run $env $tier"
      expect_eq "$label: exit ($(cat "$work/err"))" 0 "$rc"
      expect_eq "$label: calls" "" "$(cat "$calls")"
      for var in KUBE_PROMETHEUS_STACK_VERSION LOKI_VERSION ALLOY_VERSION ENVOY_GATEWAY_VERSION; do
        value="$(sed -n "s/^$var=//p" <<<"$versions")"
        [[ -n $value ]] && expect_in "$label: $var" "--version $value " "$out"
      done
    done
  done
  # Every Secret the repository's stack values files reference is checked by deploy.sh for the
  # envs whose files reference it, with the keys the files read.
  if [[ -d $repo/deploy/stacks/kube-prometheus-stack ]]; then
    out="$("$repo/scripts/deploy.sh" minikube --dry-run 2>&1)"
    expect_in "repository: alertmanager-receivers checked" "get secret alertmanager-receivers" "$out"
    mapfile -t am_keys < <(grep -rhoE '/etc/alertmanager/secrets/alertmanager-receivers/[A-Za-z0-9_-]+' "$repo/deploy/stacks/kube-prometheus-stack" | sed 's#.*/##' | sort -u)
    for k in "${am_keys[@]}"; do
      expect_in "repository: alertmanager-receivers key $k in deploy.sh" "--from-literal=$k=" "$(cat "$repo/scripts/deploy.sh")"
      expect_in "repository: alertmanager-receivers key $k made by dev-secrets.sh" "--from-literal=$k=" "$(cat "$repo/scripts/dev-secrets.sh")"
    done
    if ((${#am_keys[@]} >= 3)); then pass; else fail "repository: found only ${#am_keys[@]} alertmanager-receivers keys"; fi
  fi
  for env in minikube oke aks gke; do
    out="$("$repo/scripts/deploy.sh" "$env" --dry-run --tier prod 2>&1)"
    while read -r ref; do
      [[ -n $ref ]] && expect_in "repository $env: stack Secret $ref checked" "get secret $ref " "$out"
    done < <(grep -lE 'secretRef:|^[[:space:]]*secrets:' "$repo"/deploy/stacks/*/values.yaml "$repo"/deploy/stacks/*/values-"$env".yaml "$repo"/deploy/stacks/*/values-prod.yaml 2>/dev/null |
      xargs -r awk '/^[[:space:]]*#/ {next} list && /^[[:space:]]*- / {sub(/^[[:space:]]*- */, ""); sub(/[[:space:]]*(#.*)?$/, ""); print; next} {list=0} /secretRef:/ {w=1; next} w && /name:/ {sub(/.*name:[[:space:]]*/, ""); sub(/[[:space:]]*(#.*)?$/, ""); print; w=0; next} /^[[:space:]]*secrets:[[:space:]]*$/ {list=1}')
  done
  [[ -d $repo/deploy/stacks/loki ]] && expect_in "repository oke: loki-object-storage checked" "get secret loki-object-storage" "$("$repo/scripts/deploy.sh" oke --dry-run 2>&1)"
else
  echo "repository has no deploy/stacks/versions.env or charts/todo yet: fixture cases only"
fi

printf '%d checks, %d failed\n' "$cases" "$failures"
((failures == 0))
