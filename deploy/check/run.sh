#!/usr/bin/env bash
# Offline checks of the cluster stacks (deploy/stacks), printing each step as it runs; exits
# non-zero when any check fails (the remaining steps still run):
#   1. yamllint of every values file, the GatewayClass and the budget target
#   2. keys.py: every key of every values file exists in the pinned chart (upstream-keys/),
#      and a misspelt key (fixtures/typo-values.yaml) is refused
#   3. Loki: the values merged per cloud x env checked against the chart's values.schema.json
#      (check-jsonschema), and a wrongly typed value refused
#   4. policy.py: retention (Prometheus 15d, Loki 7d/30d with the compactor's switch on),
#      storage classes, selectors, Grafana admin and datasource uids, Alloy configuration,
#      load balancer annotations; a broken Alloy configuration refused
#   5. the GatewayClass against the Gateway API schema (../shared/schemas/validate.py); the
#      default EnvoyProxy spec against the EnvoyProxy CRD when ENVOYPROXY_CRD names its file
#      (no schema for it in ../shared/schemas)
#   6. budget.py, both ways: the app (charts/todo rendered for OKE + dev when the chart and
#      helm are there, else fixtures/app-small.yaml) plus the stacks fit the OKE Always Free
#      target; an over-budget app, a container without requests, a stack component without
#      requests and half-size nodes (--node-cpu 500m) must fail
#   7. when UPSTREAM_MIRROR names a folder of clones of the charts' sources (<owner>+<name>/repo):
#      upstream-keys/ still what extract-keys.py makes, and render-upstream.py: helm template of
#      each pinned chart assembled from its sources, per cloud x env, validated, its workloads'
#      requests equal to what budget.py models
# helm template from the chart repositories is not possible offline, which is why step 2 checks
# the keys; step 7 renders only where the sources are at hand. Tools: scripts/install-k8s-tools.sh when the repo has
# it, else a lint venv in .tools/lint (check-jsonschema, yamllint, kubernetes-validate).
# ../shared is the repo's sibling (SHARED_DIR overrides).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

CHECK=deploy/check
STACKS=deploy/stacks
SHARED="${SHARED_DIR:-$root/../shared}"
PY=.tools/lint/bin/python
CLOUDS=(minikube oke aks gke)
ENVS=(dev prod)

# shellcheck source=scripts/lib/checks.sh
source "$root/scripts/lib/checks.sh"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step "tools"
if [[ -x scripts/install-k8s-tools.sh ]]; then
  run scripts/install-k8s-tools.sh
elif [[ ! -x .tools/lint/bin/check-jsonschema || ! -x .tools/lint/bin/yamllint ]]; then
  run python3 -m venv .tools/lint
  run .tools/lint/bin/pip install -q kubernetes-validate==1.37.0 check-jsonschema==0.39.0 yamllint==1.38.0
fi
run "$PY" --version
run .tools/lint/bin/check-jsonschema --version

step "1. yamllint"
cat >"$WORK/yamllint.yml" <<'EOF'
extends: default
rules:
  document-start: disable
  line-length: {max: 120}
  truthy: {check-keys: false}
  comments: {min-spaces-from-content: 1}
  braces: {max-spaces-inside: 1}
EOF
shopt -s nullglob
yaml_files=("$STACKS"/*/values*.yaml "$STACKS"/envoy-gateway/gatewayclass.yaml "$CHECK"/budget-oke.yaml "$CHECK"/fixtures/*.yaml)
run .tools/lint/bin/yamllint -s -c "$WORK/yamllint.yml" "${yaml_files[@]}" || failed "yamllint"

step "2. keys of the values files against the pinned charts' keys (deploy/check/upstream-keys)"
run "$PY" "$CHECK"/keys.py || failed "keys.py"
must_fail "$PY" "$CHECK"/keys.py --chart kube-prometheus-stack "$CHECK"/fixtures/typo-values.yaml

step "3. Loki values per cloud x env against the chart's values.schema.json"
schema="$SHARED/schemas/charts/loki-18.11.0.values.schema.json"
if [[ ! -f $schema ]]; then
  failed "no $schema (is ../shared there?)"
else
  for cloud in "${CLOUDS[@]}"; do
    for env in "${ENVS[@]}"; do
      out="$WORK/loki-$cloud-$env.yaml"
      "$PY" "$CHECK"/merged.py --chart loki --cloud "$cloud" --env "$env" >"$out"
      run .tools/lint/bin/check-jsonschema --schemafile "$schema" "$out" || failed "loki $cloud/$env schema"
    done
  done
  printf 'singleBinary:\n  replicas: one\n' >"$WORK/loki-bad.yaml"
  must_fail .tools/lint/bin/check-jsonschema --schemafile "$schema" "$WORK/loki-bad.yaml"
fi

step "4. what the values must say (retention, storage, selectors, datasources, Alloy, load balancers)"
run "$PY" "$CHECK"/policy.py || failed "policy.py"
must_fail "$PY" "$CHECK"/policy.py --alloy "$CHECK"/fixtures/alloy-broken.alloy

step "5. the GatewayClass and the default EnvoyProxy spec"
if [[ -f $SHARED/schemas/validate.py ]]; then
  for k8s in 1.30 1.35; do
    run "$PY" "$SHARED"/schemas/validate.py --k8s "$k8s" --fail-unknown "$STACKS"/envoy-gateway/gatewayclass.yaml ||
      failed "gatewayclass.yaml (Kubernetes $k8s)"
  done
else
  failed "no $SHARED/schemas/validate.py"
fi
if [[ -n ${ENVOYPROXY_CRD:-} ]]; then
  "$PY" - "$WORK/envoyproxy.yaml" <<'EOF'
import sys
import yaml
sys.path.insert(0, "deploy/check")
import stackvalues as sv
docs = [{"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyProxy",
         "metadata": {"name": f"default-{c}-{e}", "namespace": "envoy-gateway-system"},
         "spec": sv.dig(sv.merged("envoy-gateway", c, e), "config.envoyGateway.envoyProxy")}
        for c in sv.CLOUDS for e in sv.ENVS]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    yaml.safe_dump_all(docs, f)
EOF
  run "$PY" "$SHARED"/schemas/validate.py --crd "$ENVOYPROXY_CRD" --fail-unknown "$WORK/envoyproxy.yaml" ||
    failed "default EnvoyProxy spec"
else
  echo "skipped the EnvoyProxy spec: set ENVOYPROXY_CRD to gateway.envoyproxy.io_envoyproxies.yaml of gateway-helm v1.9.0"
  echo "(on a cluster: kubectl apply --dry-run=server of an EnvoyProxy with that spec, docs/deploy/stacks.md)"
fi

step "6. fits the free tier: budget.py (OKE Always Free, stacks oke + dev)"
app="$CHECK/fixtures/app-small.yaml"
if [[ -f charts/todo/Chart.yaml && -x .tools/bin/helm ]]; then
  secrets=()
  [[ -f charts/check/values-secrets.yaml ]] && secrets=(-f charts/check/values-secrets.yaml)
  printf '+ helm template todo charts/todo -n todo -f charts/todo/values-oke.yaml -f charts/todo/values-dev.yaml %s > %s\n' \
    "${secrets[*]}" "$WORK/todo-oke-dev.yaml"
  if .tools/bin/helm template todo charts/todo -n todo -f charts/todo/values-oke.yaml -f charts/todo/values-dev.yaml \
    "${secrets[@]}" >"$WORK/todo-oke-dev.yaml" 2> >(grep -v 'found symbolic link in path' >&2); then
    app="$WORK/todo-oke-dev.yaml"
  else
    failed "helm template of charts/todo for OKE + dev"
  fi
else
  echo "charts/todo or helm not here: budgeting the hand-written stand-in $app"
fi
run "$PY" "$CHECK"/budget.py --app "$app" --cloud oke --env dev || failed "budget.py: does not fit"
must_fail "$PY" "$CHECK"/budget.py --app "$CHECK"/fixtures/app-over-budget.yaml
must_fail "$PY" "$CHECK"/budget.py --app "$CHECK"/fixtures/app-no-request.yaml
# Half-size nodes (500m each): what the stacks and the reservations alone cannot fit in.
must_fail "$PY" "$CHECK"/budget.py --app "$app" --node-cpu 500m
# A stack component whose requests our values do not set must not count as zero.
cp -r "$STACKS" "$WORK/stacks"
"$PY" - "$WORK/stacks/loki/values.yaml" <<'EOF'
import sys
import yaml
path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    values = yaml.safe_load(f)
del values["singleBinary"]["resources"]
with open(path, "w", encoding="utf-8") as f:
    yaml.safe_dump(values, f)
EOF
must_fail "$PY" "$CHECK"/budget.py --app "$app" --stacks "$WORK/stacks"

step "7. the upstream charts' sources: key lists, and a render of each chart with our values"
if [[ -n ${UPSTREAM_MIRROR:-} ]]; then
  run "$PY" "$CHECK"/extract-keys.py --mirror "$UPSTREAM_MIRROR" --check || failed "upstream-keys differ from the charts"
  if [[ -x .tools/bin/helm ]]; then
    run "$PY" "$CHECK"/render-upstream.py --mirror "$UPSTREAM_MIRROR" --shared "$SHARED" || failed "render-upstream.py"
  else
    failed "no .tools/bin/helm for render-upstream.py"
  fi
else
  echo "skipped: set UPSTREAM_MIRROR to a folder of <owner>+<name>/repo clones of the charts' sources"
fi

if ((failures > 0)); then
  printf '\ndeploy/check: %d check(s) FAILED\n' "$failures"
  exit 1
fi
printf '\ndeploy/check: all checks passed\n'
