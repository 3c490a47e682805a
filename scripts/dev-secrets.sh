#!/usr/bin/env bash
# Makes the Secrets of a development cluster (Minikube, kind) with generated values, once:
#   todo/todo-secrets         jwt-secret, postgres-password, database-url (the chart's in-cluster
#                             PostgreSQL, todo-postgresql:5432, user and database todo)
#   monitoring/grafana-admin  admin-user, admin-password (skipped with --no-monitoring)
#   monitoring/alertmanager-receivers  heartbeat-url, pagerduty-routing-key, slack-api-url:
#                             placeholders (URLs on localhost:9, where nothing listens, and a
#                             dummy routing key), so Alertmanager starts; notifications fail
#                             and are logged. Recreate it with real values to receive alerts.
# A Secret that exists is kept, so a second run changes nothing (and the database password
# stays the one PostgreSQL was initialised with). The values are never printed.
#
#   scripts/dev-secrets.sh [--context CTX] [--namespace N] [--no-monitoring] [--dry-run]
set -euo pipefail

K8S_PROG=dev-secrets
# shellcheck source=scripts/lib/k8s.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/k8s.sh"

context="" namespace=todo monitoring=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --context)
      [[ $# -ge 2 ]] || k8s_die "--context needs a value"
      context="$2"
      shift
      ;;
    --namespace)
      [[ $# -ge 2 ]] || k8s_die "--namespace needs a value"
      namespace="$2"
      shift
      ;;
    --no-monitoring) monitoring=0 ;;
    --dry-run) DRY_RUN=1 ;;
    *)
      k8s_say "unknown option '$1'"
      k8s_say "usage: scripts/dev-secrets.sh [--context CTX] [--namespace N] [--no-monitoring] [--dry-run]"
      exit 2
      ;;
  esac
  shift
done
kc=("$KUBECTL")
[[ -n $context ]] && kc+=(--context "$context")

# A random value; a placeholder in a dry run.
gen() {
  if [[ $DRY_RUN == 1 ]]; then
    echo x
  else
    python3 -c 'import secrets; print(secrets.token_hex(24))'
  fi
}
ensure_secret() {
  local ns="$1" name="$2"
  shift 2
  local printed=() arg key
  for arg in "$@"; do
    key="${arg#--from-literal=}"
    printed+=("--from-literal=${key%%=*}=<hidden>")
  done
  k8s_print "${kc[@]}" -n "$ns" get secret "$name"
  k8s_say "when $ns/$name is missing:"
  k8s_print "${kc[@]}" -n "$ns" create secret generic "$name" "${printed[@]}"
  [[ $DRY_RUN == 1 ]] && return 0
  if "${kc[@]}" -n "$ns" get secret "$name" >/dev/null 2>&1; then
    k8s_say "Secret $ns/$name exists; kept"
    return 0
  fi
  "${kc[@]}" -n "$ns" create secret generic "$name" "$@" >/dev/null
  k8s_say "Secret $ns/$name created"
}

namespaces=("$namespace")
[[ $monitoring == 1 ]] && namespaces+=(monitoring)
for ns in "${namespaces[@]}"; do
  run_pipe "${kc[@]}" create namespace "$ns" --dry-run=client -o yaml "|" "${kc[@]}" apply -f -
done
pg_password="$(gen)"
ensure_secret "$namespace" todo-secrets \
  "--from-literal=jwt-secret=$(gen)" \
  "--from-literal=postgres-password=$pg_password" \
  "--from-literal=database-url=postgres://todo:$pg_password@todo-postgresql:5432/todo"
if [[ $monitoring == 1 ]]; then
  ensure_secret monitoring grafana-admin "--from-literal=admin-user=admin" "--from-literal=admin-password=$(gen)"
  ensure_secret monitoring alertmanager-receivers \
    "--from-literal=heartbeat-url=http://localhost:9/heartbeat" \
    "--from-literal=pagerduty-routing-key=dev-placeholder" \
    "--from-literal=slack-api-url=http://localhost:9/slack"
fi
