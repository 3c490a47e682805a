#!/usr/bin/env bash
# Smoke test of a deployed platform, through its gateway: creates a task, reads it back, and
# waits until the audit service has recorded it (which proves api -> outbox -> broker ->
# audit). The token is minted in the cluster by the app's own image (`todo token`) from the
# Secret's jwt-secret, so the secret never leaves the cluster.
#
#   scripts/smoke-k8s.sh [--context CTX] [--namespace N] [--url URL] [--user ID] [--secret NAME]
#
#   --url URL   the gateway's address (http://LB-ADDRESS); default: a port-forward to the Envoy
#               Service of the Gateway "todo", on a free local port, stopped at exit
set -euo pipefail

K8S_PROG=smoke-k8s
# shellcheck source=scripts/lib/k8s.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/k8s.sh"
# shellcheck source=scripts/lib/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/ports.sh"

context="" namespace=todo url="" user="smoke-$RANDOM" secret=todo-secrets
while [[ $# -gt 0 ]]; do
  case "$1" in
    --context | --namespace | --url | --user | --secret)
      [[ $# -ge 2 ]] || k8s_die "$1 needs a value"
      case "$1" in
        --context) context="$2" ;;
        --namespace) namespace="$2" ;;
        --url) url="$2" ;;
        --user) user="$2" ;;
        --secret) secret="$2" ;;
      esac
      shift
      ;;
    *)
      k8s_say "unknown option '$1'"
      exit 2
      ;;
  esac
  shift
done
kc=("$KUBECTL")
[[ -n $context ]] && kc+=(--context "$context")

pf_pid=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [[ -n $pf_pid ]]; then
    kill "$pf_pid" 2>/dev/null || true
    wait "$pf_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# Envoy Gateway starts the Gateway's proxy after the app's release: wait until it is programmed.
k8s_say "waiting for Gateway $namespace/todo to be programmed"
"${kc[@]}" -n "$namespace" wait --for=condition=Programmed gateway/todo --timeout=300s >/dev/null
if [[ -z $url ]]; then
  "${kc[@]}" -n envoy-gateway-system wait --for=condition=Available deployment --timeout=300s \
    -l "gateway.envoyproxy.io/owning-gateway-namespace=$namespace,gateway.envoyproxy.io/owning-gateway-name=todo" >/dev/null
  svc="$("${kc[@]}" -n envoy-gateway-system get service -o name \
    -l "gateway.envoyproxy.io/owning-gateway-namespace=$namespace,gateway.envoyproxy.io/owning-gateway-name=todo")"
  [[ -n $svc ]] || k8s_die "no Envoy Service for Gateway $namespace/todo in envoy-gateway-system"
  port="$(free_ports 1)"
  k8s_print "${kc[@]}" -n envoy-gateway-system port-forward "$svc" "$port:80"
  "${kc[@]}" -n envoy-gateway-system port-forward "$svc" "$port:80" >/tmp/smoke-k8s-pf.log 2>&1 &
  pf_pid=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
fi

image="$("${kc[@]}" -n "$namespace" get deployment todo-api -o jsonpath='{.spec.template.spec.containers[0].image}')"
overrides="$(printf '{"apiVersion":"v1","spec":{"containers":[{"name":"todo-token","image":"%s","args":["token","--user","%s"],"env":[{"name":"TODO_JWT_SECRET","valueFrom":{"secretKeyRef":{"name":"%s","key":"jwt-secret"}}}]}]}}' "$image" "$user" "$secret")"
k8s_say "minting a token for $user with $image"
"${kc[@]}" -n "$namespace" delete pod todo-token --ignore-not-found --wait=true >/dev/null
token="$("${kc[@]}" -n "$namespace" run todo-token --rm -i -q --restart=Never --image="$image" --overrides="$overrides" | tr -d '\r\n')"
[[ $token == *.*.* ]] || k8s_die "no token from 'todo token' (got: ${token:0:60})"

auth=(-H "Authorization: Bearer $token")
api="$url/api/$user"
k8s_say "POST $api/tasks"
created="$(curl -fsS -X POST "$api/tasks" "${auth[@]}" -H 'Content-Type: application/json' -d '{"title":"smoke test"}')"
id="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$created")"
k8s_say "GET $api/tasks/$id"
curl -fsS "$api/tasks/$id" "${auth[@]}" | grep -q '"smoke test"' || k8s_die "task $id not read back"
k8s_say "GET $api/audit (waiting for task.created of $id)"
for _ in $(seq 1 60); do
  if curl -fsS "$api/audit" "${auth[@]}" | grep -q "$id"; then
    k8s_say "ok: task $id created, read back and audited through $url"
    exit 0
  fi
  sleep 1
done
k8s_die "task $id was not audited within 60 s"
