#!/usr/bin/env bash
# Offline checks of charts/todo, printing each step as it runs; exits non-zero on any failure:
#   1. values.schema.json is what charts/check/gen-schema.py makes of values.yaml (drift), and
#      docs/deploy/chart.md names every key of values.yaml (charts/check/doc-keys.py), and every
#      --set KEY of scripts/, docs/deploy/ and .github/workflows/ is one (charts/check/set-keys.py)
#   2. helm lint --strict of every env file x overlay (x bus kafka/dapr)
#   3. helm template of every env (minikube, oke, aks, gke) x overlay (dev, prod) x bus
#      (kafka, dapr), an Ingress variant per env and GKE with the Cloud SQL Auth Proxy; each
#      output validated with ../shared/schemas/validate.py --fail-unknown for Kubernetes 1.30 and 1.35
#   4. the rendered PrometheusRule: equal to observability/prometheus/rules.yml, promtool check
#      rules, and promtool test rules with observability/prometheus/rules.test.yml against it;
#      the ServiceMonitor's job names match the rules' job=~"todo|todo-.+"; the dashboard
#      ConfigMaps equal observability/dashboards/*.json; helm package carries the symlinked files
#   5. charts/check/policy.py over every rendered output, and over charts/check/fixtures/
#      (good.yaml must pass; every other fixture must fail the rule its first line names)
#   6. negative cases: values that helm lint / helm template must refuse
#   7. yamllint of the values files
#   8. the guides' Secrets: every key of todo-secrets the chart's pods read, rendered as
#      scripts/deploy.sh installs each env, is created by that env's guide
#      (charts/check/check-guides.py), and its fixtures under charts/check/fixtures/guides fail
# Installs helm, kubectl and the lint venv with scripts/install-k8s-tools.sh, and promtool
# (Debian package prometheus) when missing. ../shared is the repo's sibling (SHARED_DIR overrides).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

CHART=charts/todo
CHECK=charts/check
SHARED="${SHARED_DIR:-$root/../shared}"
HELM=.tools/bin/helm
PY=.tools/lint/bin/python
ENVS=(minikube oke aks gke)
OVERLAYS=(dev prod)

# shellcheck source=scripts/lib/checks.sh
source "$root/scripts/lib/checks.sh"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# helm prints an INFO line per symlink it follows; keep the output readable.
helm_q() { "$HELM" "$@" 2> >(grep -v 'found symbolic link in path' >&2); }

step "tools"
run scripts/install-k8s-tools.sh
if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && ((EUID == 0)); then
    made_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
    run "${apt[@]}" install -y -qq --no-install-recommends prometheus ||
      { run "${apt[@]}" update -qq && run "${apt[@]}" install -y -qq --no-install-recommends prometheus; }
    [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
  else
    echo "promtool missing: install the Debian package prometheus (or run this as root on Debian)" >&2
    exit 1
  fi
fi
run promtool --version 2>&1 | sed -n 1p
[[ -f $SHARED/schemas/validate.py ]] || {
  echo "no $SHARED/schemas/validate.py (set SHARED_DIR)" >&2
  exit 1
}

step "1. values.schema.json matches values.yaml; docs/deploy/chart.md names every key"
run "$PY" "$CHECK/gen-schema.py" --check || failed "schema drift"
run "$PY" "$CHECK/doc-keys.py" || failed "values keys missing from docs/deploy/chart.md"
# Every --set KEY= of scripts/, docs/deploy/ and the workflows is a key of values.yaml.
run "$PY" "$CHECK/set-keys.py" || failed "a --set key unknown to the chart"
printf '+ python %s %s   (must fail)\n' "$CHECK/set-keys.py" "$CHECK/fixtures/set-keys/unknown-key.md"
if "$PY" "$CHECK/set-keys.py" "$CHECK/fixtures/set-keys/unknown-key.md" >"$WORK/setkeys.out" 2>&1; then
  failed "set-keys.py accepted $CHECK/fixtures/set-keys/unknown-key.md"
elif grep -q -- '--set kafka.broker:' "$WORK/setkeys.out" && [[ $(grep -c FAILED "$WORK/setkeys.out") == 1 ]]; then
  sed -n 1p "$WORK/setkeys.out"
else
  cat "$WORK/setkeys.out"
  failed "set-keys.py fixture: expected exactly kafka.broker refused"
fi

# The variants: name and helm arguments, one a line.
variants() {
  local env overlay
  for env in "${ENVS[@]}"; do
    for overlay in "${OVERLAYS[@]}"; do
      local base="-f $CHART/values-$env.yaml -f $CHART/values-$overlay.yaml -f $CHECK/values-secrets.yaml"
      printf '%s\t%s\n' "$env-$overlay-kafka" "$base"
      printf '%s\t%s\n' "$env-$overlay-dapr" "$base --set bus=dapr --set dapr.enabled=true"
    done
    [[ $env == gke ]] && printf '%s\t%s\n' "$env-prod-cloudsqlproxy" "-f $CHART/values-$env.yaml -f $CHART/values-prod.yaml -f $CHECK/values-secrets.yaml --set cloudSqlProxy.enabled=true --set cloudSqlProxy.instanceConnectionName=my-project:europe-west1:todo-pg --set cloudSqlProxy.autoIamAuthn=true --set serviceAccount.annotations.iam\.gke\.io/gcp-service-account=todo-app@my-project.iam.gserviceaccount.com"
    printf '%s\t%s\n' "$env-prod-ingress" "-f $CHART/values-$env.yaml -f $CHART/values-prod.yaml -f $CHECK/values-secrets.yaml --set gateway.enabled=false --set ingress.enabled=true --set ingress.host=todo.example.com --set ingress.tls.secretName=todo-tls"
  done
}

step "2. helm lint --strict, every env file x overlay x bus"
while IFS=$'\t' read -r name args; do
  read -ra a <<<"$args"
  printf '+ helm lint --strict %s %s\n' "$CHART" "$args"
  # helm v4's lint turns the templates' `fail` into an INFO line ("funcMap fail"): count it.
  if ! "$HELM" lint --strict "$CHART" "${a[@]}" >"$WORK/lint.out" 2>&1 || grep -q 'funcMap fail' "$WORK/lint.out"; then
    grep -v 'found symbolic link' "$WORK/lint.out"
    failed "helm lint $name"
  fi
done < <(variants | grep -v -- '-ingress')

step "3. helm template every variant; validate for Kubernetes 1.30 and 1.35 (--fail-unknown)"
mkdir -p "$WORK/rendered"
declare -A per_env=() variants_of=()
while IFS=$'\t' read -r name args; do
  read -ra a <<<"$args"
  out="$WORK/rendered/$name.yaml"
  variants_of[${name%%-*}]=$((${variants_of[${name%%-*}]:-0} + 1))
  printf '+ helm template todo %s -n todo %s > %s\n' "$CHART" "$args" "$name.yaml"
  if ! helm_q template todo "$CHART" -n todo "${a[@]}" >"$out"; then
    failed "helm template $name"
    continue
  fi
  for k8s in 1.30 1.35; do
    printf '+ python %s --k8s %s --fail-unknown %s.yaml\n' "$SHARED/schemas/validate.py" "$k8s" "$name"
    if "$PY" "$SHARED/schemas/validate.py" --k8s "$k8s" --fail-unknown "$out" >"$WORK/validate.out" 2>&1; then
      tail -1 "$WORK/validate.out" | sed 's/^/  /'
      n=$(sed -n 's/^validate.py: \([0-9]*\) passed.*/\1/p' "$WORK/validate.out")
      env=${name%%-*}
      per_env[$env]=$((${per_env[$env]:-0} + n))
    else
      grep -v '^PASS' "$WORK/validate.out"
      failed "validate $name (k8s $k8s)"
    fi
  done
done < <(variants)
for env in "${ENVS[@]}"; do
  echo "  $env: ${per_env[$env]:-0} documents validated (${variants_of[$env]:-0} variants x 2 Kubernetes versions)"
done

step "4. monitoring objects: the rules, job names, dashboards, helm package"
ref="$WORK/rendered/minikube-prod-kafka.yaml"
mkdir -p "$WORK/rules"
run "$PY" - "$ref" "$WORK/rules/rules.yml" observability/prometheus/rules.yml observability/dashboards <<'PY' || failed "monitoring objects"
import json, re, sys, pathlib
import yaml
rendered, out, source, dashboards = sys.argv[1:5]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
problems = []
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
if len(rules) != 1:
    sys.exit(f"expected one PrometheusRule, found {len(rules)}")
spec = rules[0]["spec"]
yaml.safe_dump(spec, open(out, "w"), sort_keys=False)
if spec != yaml.safe_load(open(source)):
    problems.append("the PrometheusRule's spec differs from observability/prometheus/rules.yml")
# Job names: the ServiceMonitor takes job from the Services' jobLabel; rules select job=~"todo|todo-.+".
sm = [d for d in docs if d["kind"] == "ServiceMonitor"][0]["spec"]
if not all(e.get("honorLabels") is True and e.get("port") == "http" and e.get("path") == "/metrics" for e in sm["endpoints"]):
    problems.append("ServiceMonitor endpoints must be port http, path /metrics, honorLabels true")
job_label = sm["jobLabel"]
job_re = re.compile(r"^(?:todo|todo-.+)$")
selected = [d for d in docs if d["kind"] == "Service"
            and all(d["metadata"]["labels"].get(k) == v for k, v in sm["selector"]["matchLabels"].items())
            and all(d["metadata"]["labels"].get(e["key"]) in e["values"] for e in sm["selector"].get("matchExpressions", []))]
jobs = sorted(d["metadata"]["labels"].get(job_label, d["metadata"]["name"]) for d in selected)
if len(selected) != 5 or not all(job_re.match(j) for j in jobs):
    problems.append(f"scrape jobs {jobs} (from {len(selected)} Services) do not all match todo|todo-.+")
for expr_job in sorted(set(re.findall(r'job=~"([^"]+)"', open(source).read()))):
    matched = [j for j in jobs if re.fullmatch(expr_job, j)]
    if not matched:
        problems.append(f"the rules' job=~\"{expr_job}\" matches none of the scrape jobs {jobs}")
print(f"  scrape jobs: {', '.join(jobs)} (jobLabel {job_label}); every job=~ selector of the rules matches them")
# Dashboards: one ConfigMap per file, content unchanged.
cms = {k: v for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
       for k, v in d["data"].items()}
files = sorted(pathlib.Path(dashboards).glob("*.json"))
for f in files:
    if f.name not in cms:
        problems.append(f"no dashboard ConfigMap for {f.name}")
    elif json.loads(cms[f.name]) != json.loads(f.read_text()):
        problems.append(f"dashboard {f.name} differs from its ConfigMap")
print(f"  {len(spec['groups'])} rule groups, {sum(len(g['rules']) for g in spec['groups'])} rules; {len(cms)} dashboard ConfigMaps for {len(files)} files")
for p in problems:
    print("  FAILED:", p)
sys.exit(1 if problems else 0)
PY
run promtool check rules "$WORK/rules/rules.yml" || failed "promtool check rules"
cp observability/prometheus/rules.test.yml "$WORK/rules/rules.test.yml"
run promtool test rules "$WORK/rules/rules.test.yml" || failed "promtool test rules (rendered groups)"
run helm_q package "$CHART" -d "$WORK/pkg" >/dev/null || failed "helm package"
tgz=("$WORK"/pkg/todo-*.tgz)
mkdir -p "$WORK/unpacked"
tar -xzf "${tgz[0]}" -C "$WORK/unpacked"
if cmp -s "$WORK/unpacked/todo/files/prometheus/rules.yml" observability/prometheus/rules.yml &&
  diff -r "$WORK/unpacked/todo/files/dashboards" observability/dashboards >/dev/null; then
  echo "  helm package follows the symlinks: rules.yml and $(find "$WORK/unpacked/todo/files/dashboards" -name '*.json' | wc -l) dashboards packaged as files"
else
  failed "helm package did not carry files/prometheus/rules.yml and files/dashboards as in observability/"
fi

step "5. policy test: every rendered variant, then the fixtures"
for out in "$WORK"/rendered/*.yaml; do
  printf '+ python %s %s\n' "$CHECK/policy.py" "$(basename "$out")"
  "$PY" "$CHECK/policy.py" "$out" | sed 's/^/  /' || failed "policy $(basename "$out")"
done
for fixture in "$CHECK"/fixtures/*.yaml; do
  expect=$(sed -n '1s/^# expect: \([a-z-]*\).*/\1/p' "$fixture")
  if [[ $expect == pass ]]; then
    printf '+ python %s %s   (must pass)\n' "$CHECK/policy.py" "$fixture"
    "$PY" "$CHECK/policy.py" "$fixture" | sed 's/^/  /' || failed "fixture $fixture should pass"
  else
    printf '+ python %s --expect %s %s\n' "$CHECK/policy.py" "$expect" "$fixture"
    "$PY" "$CHECK/policy.py" --expect "$expect" "$fixture" | sed 's/^/  /' || failed "fixture $fixture should fail rule $expect"
  fi
done

step "6. negative cases: helm lint and helm template must refuse these values"
good=(-f "$CHART/values-minikube.yaml" -f "$CHART/values-dev.yaml" -f "$CHECK/values-secrets.yaml")
negatives=(
  "unknown top-level key|--set|replicaCount=3"
  "unknown nested key|--set|services.api.replica=2"
  "wrong enum (bus)|--set|bus=nats"
  "wrong enum (kafka.securityProtocol)|--set|kafka.securityProtocol=SASL_SSL"
  "wrong type (replicas)|--set-string|services.api.replicas=two"
  "image tag latest|--set|image.tag=latest"
  "missing secret: neither create nor existingSecret|--set|secrets.create=false"
  "missing secret value: databaseUrl|--set|secrets.values.databaseUrl="
  "missing secret value: kafkaSaslPassword with sasl_ssl|--set|secrets.values.kafkaSaslPassword=,kafka.brokers=b:9093,kafka.securityProtocol=sasl_ssl,kafka.saslMechanism=PLAIN,kafka.saslUsername=u"
  "short JWT secret|--set|secrets.values.jwtSecret=short"
  "bus dapr without dapr.enabled|--set|bus=dapr"
  "cloudSqlProxy without an instance|--set|cloudSqlProxy.enabled=true,postgresql.enabled=false"
  "cloudSqlProxy.instanceConnectionName not PROJECT:REGION:INSTANCE|--set|cloudSqlProxy.instanceConnectionName=todo-pg"
)
for case in "${negatives[@]}"; do
  IFS='|' read -r what flag setting <<<"$case"
  for cmd in lint template; do
    printf '+ helm %s %s ... %s %s   (must fail: %s)\n' "$cmd" "$CHART" "$flag" "$setting" "$what"
    if [[ $cmd == lint ]]; then
      # A schema error fails lint; a template `fail` is only logged by helm v4's lint ("funcMap fail").
      "$HELM" lint --strict "$CHART" "${good[@]}" "$flag" "$setting" >"$WORK/neg.out" 2>&1 && rc=0 || rc=$?
      if ((rc == 0)) && grep -q 'funcMap fail' "$WORK/neg.out"; then
        rc=1
        sed -n 's/.*funcMap fail" message=/Error (template fail, logged by lint): /p' "$WORK/neg.out" >"$WORK/neg.msg"
        mv "$WORK/neg.msg" "$WORK/neg.out"
      fi
    else
      helm_q template todo "$CHART" "${good[@]}" "$flag" "$setting" >"$WORK/neg.out" 2>&1 && rc=0 || rc=$?
    fi
    if ((rc == 0)); then
      failed "helm $cmd accepted: $what"
    else
      grep -m1 -E 'Error|error|FAIL|fail' "$WORK/neg.out" | cut -c1-160 | sed 's/^/  refused: /' || true
    fi
  done
done

step "7. yamllint of the values files"
cat >"$WORK/yamllint.yml" <<'EOF'
extends: default
rules:
  document-start: disable
  line-length: {max: 120}
  truthy: {check-keys: false}
  comments: {min-spaces-from-content: 1}
  braces: {max-spaces-inside: 1}
EOF
run .tools/lint/bin/yamllint -s -c "$WORK/yamllint.yml" "$CHART"/values*.yaml "$CHECK"/values-secrets.yaml || failed "yamllint"

step "8. the guides' kubectl create secret generic todo-secrets hold every key the chart reads"
run "$PY" "$CHECK/check-guides.py" --helm "$HELM" || failed "a guide's Secret lacks a key the chart needs"
for fixture in "$CHECK"/fixtures/guides/*.md; do
  base="${fixture##*/}"
  want=$(sed -n '1s/.*(must fail: \([a-z-]*\)).*/\1/p' "$fixture")
  printf '+ python %s --env %s --guide %s   (must fail: %s)\n' "$CHECK/check-guides.py" "${base%%-*}" "$fixture" "$want"
  if "$PY" "$CHECK/check-guides.py" --helm "$HELM" --env "${base%%-*}" --guide "$fixture" >"$WORK/guide.out" 2>&1; then
    failed "fixture $fixture passed check-guides.py"
  elif ! grep -q "needs key '$want'" "$WORK/guide.out"; then
    cat "$WORK/guide.out"
    failed "fixture $fixture did not fail on key $want"
  else
    grep -m1 FAIL "$WORK/guide.out" | sed 's/^/  refused: /'
  fi
done

if ((failures > 0)); then
  printf '\ncharts/check: %d check(s) FAILED\n' "$failures"
  exit 1
fi
printf '\ncharts/check: all chart checks passed\n'
