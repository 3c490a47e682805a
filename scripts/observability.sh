#!/usr/bin/env bash
# Prometheus and Alertmanager on loopback, next to a running platform, loaded with this
# repository's alert and recording rules and scraping the platform's /metrics.
#
#   scripts/observability.sh up DIR --embedded HOST:PORT   scrape one `todo serve` (job todo)
#   scripts/observability.sh up DIR --split SPLIT_DIR      scrape a split deployment's five
#                                                          services (scripts/split-deployment.sh)
#   scripts/observability.sh down DIR                      stop what `up` started, by PID
#
# Options of `up`: --interval D (scrape and rule evaluation interval, default 15s; tests use
# 1s). DIR keeps the configuration, the TSDB, logs and PIDs, and gets DIR/env
# (PROMETHEUS_URL, ALERTMANAGER_URL) and DIR/dashboards.html: every dashboard's panels as
# links into Prometheus' graph view. See docs/observability-local.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf 'observability: %s\n' "$*"; }
die() {
  say "error: $*" >&2
  exit 1
}

usage() {
  cat >&2 <<EOF
usage: $0 up DIR (--embedded HOST:PORT | --split SPLIT_DIR) [--interval DURATION]
       $0 down DIR
EOF
  exit 2
}

# shellcheck source=scripts/lib/ports.sh
source "$root/scripts/lib/ports.sh"

# Debian's prometheus and prometheus-alertmanager, installed when missing (CI is root on
# Debian). The image may refuse to start services on install; nothing here needs them to.
install_missing() {
  local packages=()
  command -v prometheus >/dev/null || packages+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || packages+=(prometheus-alertmanager)
  ((${#packages[@]} == 0)) && return
  if ((EUID != 0)) || ! command -v apt-get >/dev/null; then
    die "missing ${packages[*]}: install them (Debian: apt-get install ${packages[*]})"
  fi
  say "installing ${packages[*]} (Debian packages)"
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # Keep the packages' post-install from starting system services.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${packages[@]}"; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${packages[@]}"
  fi
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  return 0
}

wait_http() {
  local what=$1 url=$2 deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$what not ready within 30 s (see $DIR/logs)"
    sleep 0.1
  done
}

up() {
  local mode="" source="" interval=15s
  while (($#)); do
    case $1 in
      --embedded) mode=embedded source=${2:?} && shift 2 ;;
      --split) mode=split source=${2:?} && shift 2 ;;
      --interval) interval=${2:?} && shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n $mode ]] || usage
  [[ -e "$DIR/pids" ]] && die "$DIR already holds a running stack; run: $0 down $DIR"
  install_missing
  mkdir -p "$DIR/logs" "$DIR/prometheus-data" "$DIR/alertmanager-data"

  if [[ $mode == embedded ]]; then
    printf '[{"targets": ["%s"], "labels": {"job": "todo", "namespace": "local"}}]\n' "$source" \
      >"$DIR/targets.json"
  else
    [[ -f "$source/prometheus-targets.json" ]] ||
      die "$source has no prometheus-targets.json: is it a running split deployment?"
    cp "$source/prometheus-targets.json" "$DIR/targets.json"
  fi

  local ports prom_port am_port
  read -r prom_port am_port <<<"$(free_ports 2)"
  ports="$prom_port $am_port"
  cp "$root/observability/prometheus/rules.yml" "$DIR/rules.yml"
  cp "$root/observability/alertmanager/alertmanager.yml" "$DIR/alertmanager.yml"
  cat >"$DIR/prometheus.yml" <<EOF
# Written by scripts/observability.sh.
global:
  scrape_interval: $interval
  evaluation_interval: $interval
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs: [{targets: ["127.0.0.1:$am_port"]}]
scrape_configs:
  - job_name: todo
    # The targets file sets job and namespace, as a ServiceMonitor would.
    honor_labels: true
    file_sd_configs: [{files: [targets.json], refresh_interval: 5s}]
EOF

  trap 'say "up failed; stopping what started"; down' EXIT
  say "start alertmanager on 127.0.0.1:$am_port (config $DIR/alertmanager.yml) >> logs/alertmanager.log"
  (cd "$DIR" && exec prometheus-alertmanager --config.file=alertmanager.yml \
    --storage.path=alertmanager-data --web.listen-address="127.0.0.1:$am_port" \
    --cluster.listen-address= </dev/null >>logs/alertmanager.log 2>&1) &
  echo "alertmanager $!" >"$DIR/pids"
  say "start prometheus on 127.0.0.1:$prom_port (scrape and evaluate every $interval) >> logs/prometheus.log"
  (cd "$DIR" && exec prometheus --config.file=prometheus.yml --storage.tsdb.path=prometheus-data \
    --web.listen-address="127.0.0.1:$prom_port" --enable-feature=exemplar-storage \
    --web.enable-lifecycle </dev/null >>logs/prometheus.log 2>&1) &
  echo "prometheus $!" >>"$DIR/pids"
  wait_http alertmanager "http://127.0.0.1:$am_port/-/ready"
  wait_http prometheus "http://127.0.0.1:$prom_port/-/ready"
  {
    echo "PROMETHEUS_URL=http://127.0.0.1:$prom_port"
    echo "ALERTMANAGER_URL=http://127.0.0.1:$am_port"
  } >"$DIR/env"
  write_dashboards "http://127.0.0.1:$prom_port"
  trap - EXIT
  say "up (ports $ports): Prometheus http://127.0.0.1:$prom_port (graphs, /alerts, /rules, /targets),"
  say "  Alertmanager http://127.0.0.1:$am_port, dashboards as graph links: $DIR/dashboards.html"
}

# Every dashboard panel's PromQL (observability/check/dashboards.sh --list-promql), with
# the Grafana variables replaced, as links that open the panels in Prometheus' graph view.
write_dashboards() {
  local prom=$1
  # shellcheck disable=SC2016 # the $names are Grafana's variables, replaced in Python
  "$root/observability/check/dashboards.sh" --list-promql | python3 -c '
import html, json, sys, urllib.parse
prom = sys.argv[1]
subst = {"$namespace": ".*", "$service": ".*", "$__rate_interval": "1m",
         "$__interval": "15s", "$__range": "1h"}
boards = {}
for line in sys.stdin:
    row = json.loads(line)
    expr = row["expr"]
    for k, v in subst.items():
        expr = expr.replace(k, v)
    boards.setdefault(row["dashboard"], []).append((row["panel"], expr))
out = ["<!doctype html><meta charset=utf-8><title>todo dashboards</title>",
       "<h1>todo dashboards in the Prometheus graph view</h1>"]
for uid, panels in boards.items():
    query = "&".join(
        f"g{i}.expr={urllib.parse.quote(e)}&g{i}.tab=0&g{i}.range_input=1h"
        for i, (_, e) in enumerate(panels))
    out.append(f"<h2><a href=\"{prom}/graph?{query}\">{html.escape(uid)}</a> (all panels)</h2><ul>")
    for title, e in panels:
        link = f"{prom}/graph?g0.expr={urllib.parse.quote(e)}&g0.tab=0&g0.range_input=1h"
        out.append(f"<li><a href=\"{link}\">{html.escape(title)}</a>: <code>{html.escape(e)}</code></li>")
    out.append("</ul>")
print("\n".join(out))
' "$prom" >"$DIR/dashboards.html"
}

down() {
  [[ -f "$DIR/pids" ]] || die "$DIR holds no stack (no $DIR/pids)"
  local name pid
  while read -r name pid; do
    if kill "$pid" 2>/dev/null; then
      say "stop $name (pid $pid)"
      for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done <"$DIR/pids"
  rm -f "$DIR/pids"
  say "down"
}

(($# >= 2)) || usage
command=$1 DIR=$2
shift 2
case $command in
  up) up "$@" ;;
  down) down ;;
  *) usage ;;
esac
