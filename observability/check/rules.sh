#!/usr/bin/env bash
# Checks the alerting setup, printing each step as it runs; exits non-zero on any failure:
#   1. promtool check rules   observability/prometheus/rules.yml
#   2. promtool test rules    observability/prometheus/rules.test.yml
#   3. amtool check-config    observability/alertmanager/alertmanager.yml
#   4. the route tests        observability/alertmanager/routes.test   (amtool, offline)
#   5. the inhibition tests   observability/alertmanager/inhibit.test  (a real Alertmanager
#                             on a free loopback port, stopped afterwards)
#   6. consistency: every alert has severity, summary, description and a runbook_url naming
#      an existing docs/runbooks/ page (and heading); every alert has a firing and a silent
#      unit test, a route test, and a line in docs/alerts.md and docs/runbooks/README.md;
#      every recording rule is named todo:<what>:<window> and its value is tested.
# Installs promtool, amtool and Alertmanager (Debian packages prometheus and
# prometheus-alertmanager), and python3-yaml, jq and curl, only when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

RULES=observability/prometheus/rules.yml
RULE_TESTS=observability/prometheus/rules.test.yml
AM_CONFIG=observability/alertmanager/alertmanager.yml
ROUTE_TESTS=observability/alertmanager/routes.test
INHIBIT_TESTS=observability/alertmanager/inhibit.test

step() { printf '\n==> %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }

WORK=$(mktemp -d)
AM_PID=
cleanup() {
  if [[ -n $AM_PID ]]; then
    kill "$AM_PID" 2>/dev/null || true
    wait "$AM_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Reads a test table: one case a line, its first word then name=value labels; # comments.
# Prints the cases as "first-word<TAB>labels".
cases() {
  sed -e 's/#.*//' -e 's/[[:space:]]\{1,\}/ /g' -e 's/^ //' -e 's/ $//' "$1" \
    | awk 'NF { first = $1; $1 = ""; sub(/^ /, ""); print first "\t" $0 }'
}

install_missing() {
  local packages=()
  command -v promtool >/dev/null || packages+=(prometheus)
  if ! command -v amtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
    packages+=(prometheus-alertmanager)
  fi
  python3 -c 'import yaml' 2>/dev/null || packages+=(python3-yaml)
  command -v jq >/dev/null || packages+=(jq)
  command -v curl >/dev/null || packages+=(curl)
  if ((${#packages[@]} == 0)); then
    return
  fi
  if ! command -v apt-get >/dev/null || ((EUID != 0)); then
    echo "missing: ${packages[*]}; install them (Debian: apt-get install ${packages[*]}) or run this as root on Debian" >&2
    exit 1
  fi
  # Keep the packages' services from being started by the install.
  local made_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
  if ! run "${apt[@]}" install -y -qq --no-install-recommends "${packages[@]}"; then
    run "${apt[@]}" update -qq
    run "${apt[@]}" install -y -qq --no-install-recommends "${packages[@]}"
  fi
  if [[ -n $made_policy ]]; then
    rm -f /usr/sbin/policy-rc.d
  fi
}

route_tests() {
  local receiver labels got failed=0 count=0
  while IFS=$'\t' read -r receiver labels; do
    local args=()
    read -ra args <<<"$labels"
    printf '+ amtool config routes test --config.file=%s --verify.receivers=%s %s\n' "$AM_CONFIG" "$receiver" "$labels"
    count=$((count + 1))
    if got=$(amtool config routes test --config.file="$AM_CONFIG" --verify.receivers="$receiver" "${args[@]}" 2>"$WORK/amtool.err") &&
      [[ $got == "$receiver" ]]; then
      printf '  -> %s\n' "$got"
    else
      printf '  FAILED: expected %s, got %s\n' "$receiver" "${got:-nothing}"
      grep -v 'overrides the --alertmanager.url' "$WORK/amtool.err" >&2 || true
      failed=$((failed + 1))
    fi
  done < <(cases "$ROUTE_TESTS")
  if ((count == 0)); then
    echo "no route tests in $ROUTE_TESTS" >&2
    return 1
  fi
  echo "$count route tests, $failed failed"
  ((failed == 0))
}

# Alert label sets as "state<TAB>name=value name=value ..." (labels sorted), one a line.
normalise_expected() {
  local state labels
  while IFS=$'\t' read -r state labels; do
    printf '%s\t%s\n' "$state" "$(tr ' ' '\n' <<<"$labels" | sort | paste -sd' ' -)"
  done < <(cases "$INHIBIT_TESTS") | sort
}

inhibit_tests() {
  local port url state labels
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  url="http://127.0.0.1:$port"
  printf '+ prometheus-alertmanager --config.file=%s --web.listen-address=127.0.0.1:%s --cluster.listen-address= (log: %s)\n' \
    "$AM_CONFIG" "$port" "$WORK/alertmanager.log"
  prometheus-alertmanager --config.file="$AM_CONFIG" --storage.path="$WORK/alertmanager" \
    --web.listen-address="127.0.0.1:$port" --cluster.listen-address= >"$WORK/alertmanager.log" 2>&1 &
  AM_PID=$!
  local tries=0
  until curl -fsS "$url/-/ready" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if ((tries > 100)) || ! kill -0 "$AM_PID" 2>/dev/null; then
      echo "Alertmanager did not become ready:" >&2
      cat "$WORK/alertmanager.log" >&2
      return 1
    fi
    sleep 0.1
  done

  normalise_expected >"$WORK/expected"
  while IFS=$'\t' read -r state labels; do
    local args=()
    read -ra args <<<"$labels"
    run amtool --alertmanager.url="$url" alert add "${args[@]}"
  done < <(cases "$INHIBIT_TESTS")

  # Inhibitions are worked out as alerts arrive: allow a few seconds.
  tries=0
  while :; do
    curl -fsS "$url/api/v2/alerts" \
      | jq -r '.[] | "\(.status.state)\t\(.labels | to_entries | map("\(.key)=\(.value)") | sort | join(" "))"' \
      | sort >"$WORK/got"
    if cmp -s "$WORK/expected" "$WORK/got"; then
      break
    fi
    tries=$((tries + 1))
    if ((tries > 50)); then
      echo "FAILED: the states Alertmanager reports differ from $INHIBIT_TESTS (- expected, + got):"
      diff "$WORK/expected" "$WORK/got" | grep '^[<>]' | sed -e 's/^</-/' -e 's/^>/+/'
      return 1
    fi
    sleep 0.1
  done
  sed 's/^/  /' "$WORK/got"
  echo "$(wc -l <"$WORK/got") alerts, each in the expected state"
  kill "$AM_PID"
  wait "$AM_PID" 2>/dev/null || true
  AM_PID=
}

consistency() {
  printf '+ python3 (consistency of %s, %s, %s and docs)\n' "$RULES" "$RULE_TESTS" "$ROUTE_TESTS"
  python3 - "$RULES" "$RULE_TESTS" "$ROUTE_TESTS" <<'PY'
import os
import re
import sys

import yaml

rules_path, tests_path, routes_path = sys.argv[1:4]
problems = []
rules = yaml.safe_load(open(rules_path))
tests = yaml.safe_load(open(tests_path))
alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
records = [r for g in rules["groups"] for r in g["rules"] if "record" in r]


def heading_slugs(path):
    # GitHub's anchors: lower case, punctuation other than - and _ dropped, spaces to -.
    slugs = set()
    for line in open(path):
        m = re.match(r"#+\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            slugs.add(text.replace(" ", "-"))
    return slugs


# 1. Labels and annotations; runbook_url names an existing page (and heading), one base for all.
url_re = re.compile(r"^(https://\S+/)docs/runbooks/([a-z0-9-]+\.md)(?:#([a-z0-9_-]+))?$")
bases = set()
for a in alerts:
    name = a["alert"]
    labels = a.get("labels", {})
    notes = a.get("annotations", {})
    if labels.get("severity") not in ("critical", "warning", "none"):
        problems.append(f"{name}: severity must be critical, warning or none")
    if labels.get("severity") != "none" and "service" not in labels and '"service"' not in a["expr"]:
        problems.append(f"{name}: no service label (static, or set by label_replace)")
    for key in ("summary", "description", "runbook_url"):
        if not notes.get(key):
            problems.append(f"{name}: annotation {key} missing")
    m = url_re.match(notes.get("runbook_url", ""))
    if not m:
        problems.append(f"{name}: runbook_url {notes.get('runbook_url')!r} is not <base>docs/runbooks/<page>.md[#heading]")
        continue
    bases.add(m.group(1))
    page = os.path.join("docs/runbooks", m.group(2))
    if not os.path.isfile(page):
        problems.append(f"{name}: runbook {page} does not exist")
    elif m.group(3) and m.group(3) not in heading_slugs(page):
        problems.append(f"{name}: {page} has no heading #{m.group(3)}")
if len(bases) > 1:
    problems.append(f"runbook_url bases differ: {sorted(bases)}")

# 2. Unit tests: every alert fires somewhere (with its runbook_url) and is silent somewhere.
fires, silent = set(), set()
tested = ""
for t in tests["tests"]:
    for case in t.get("alert_rule_test", []):
        exp = case.get("exp_alerts") or []
        (fires if exp else silent).add(case["alertname"])
        for e in exp:
            if "runbook_url" not in (e.get("exp_annotations") or {}):
                problems.append(f"{case['alertname']} at {case['eval_time']}: exp_annotations lack runbook_url")
    for case in t.get("promql_expr_test", []):
        tested += case["expr"] + "\n" + "\n".join(s["labels"] for s in case.get("exp_samples") or []) + "\n"
for a in alerts:
    name = a["alert"]
    if name not in fires:
        problems.append(f"{name}: no test in which it fires")
    if name not in silent and a["expr"].strip() != "vector(1)":
        problems.append(f"{name}: no test in which it stays silent")

# 3. Recording rules: todo:<what>:<window>, each value tested.
for r in records:
    if not re.fullmatch(r"todo:[a-z0-9_]+:[a-z0-9_]+", r["record"]):
        problems.append(f"recording rule {r['record']}: not named todo:<what>:<window>")
    if not re.search(re.escape(r["record"]) + r"(?![a-z0-9_])", tested):
        problems.append(f"recording rule {r['record']}: no promql_expr_test checks it")

# 4. Route tests: every alert with each of its severities.
routed = set()
for line in open(routes_path):
    words = line.split("#")[0].split()
    if words:
        labels = dict(w.split("=", 1) for w in words[1:])
        routed.add((labels.get("alertname"), labels.get("severity")))
for a in alerts:
    if (a["alert"], a["labels"]["severity"]) not in routed:
        problems.append(f"{a['alert']} (severity {a['labels']['severity']}): no case in {routes_path}")

# 5. Docs: every alert listed.
for doc in ("docs/alerts.md", "docs/runbooks/README.md"):
    if not os.path.isfile(doc):
        problems.append(f"{doc} does not exist")
        continue
    text = open(doc).read()
    for name in sorted({a["alert"] for a in alerts}):
        if f"`{name}`" not in text:
            problems.append(f"{doc}: alert {name} not listed")

for p in problems:
    print("  FAILED:", p)
names = sorted({a["alert"] for a in alerts})
print(f"{len(alerts)} alerting rules ({len(names)} alerts), {len(records)} recording rules, runbook base {sorted(bases)}: "
      + ("OK" if not problems else f"{len(problems)} problems"))
sys.exit(1 if problems else 0)
PY
}

step "tools"
install_missing
run promtool --version 2>&1 | sed -n 1p
run amtool --version 2>&1 | sed -n 1p

step "rules: syntax and PromQL"
run promtool check rules "$RULES"

step "rules: unit tests"
run promtool test rules "$RULE_TESTS"

step "Alertmanager: configuration"
run amtool check-config "$AM_CONFIG"

step "Alertmanager: routes ($ROUTE_TESTS)"
route_tests

step "Alertmanager: inhibitions ($INHIBIT_TESTS), on a running Alertmanager"
inhibit_tests

step "rules, tests, routes, runbooks and docs agree"
consistency

printf '\nall alerting checks passed\n'
