#!/usr/bin/env python3
"""The dashboards and rules against a real Prometheus scraping the real platform.

Run by tests/observability/run.sh, next to a platform started with TODO_FAULTS_ENABLED=true
and a stack from scripts/observability.sh (scrape and evaluation every second). Environment:
BASE_URL (the platform), ADMIN_URLS (space-separated base URLs serving /admin/faults: the
process itself in embedded mode, the api and audit processes when split), TODO_JWT_SECRET,
PROMETHEUS_URL, ALERTMANAGER_URL, MODE (embedded or split), DASHBOARD_PROMQL (the file
`observability/check/dashboards.sh --list-promql` wrote).

It drives a workload, then checks, and exits 1 listing every failure:
  1. a new metric value is visible through Prometheus' API within 30 s of the event;
  2. every dashboard panel's PromQL and every recording rule parses and returns data;
  3. every series an alert reads exists (a renamed metric fails here);
  4. the consumer-lag alert goes from inactive to firing when a consumer is slowed, and
     reaches Alertmanager; the same for the availability burn-rate page on an error burst.
Only the standard library: it runs from a fresh clone.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ["BASE_URL"].rstrip("/")
ADMIN = os.environ["ADMIN_URLS"].split()
SECRET = os.environ["TODO_JWT_SECRET"].encode()
PROM = os.environ["PROMETHEUS_URL"].rstrip("/")
AM = os.environ["ALERTMANAGER_URL"].rstrip("/")
MODE = os.environ["MODE"]
PROMQL = os.environ["DASHBOARD_PROMQL"]
USER = f"obs-{MODE}-{int(time.time())}"

failures = []


def say(msg):
    print(f"prometheus-check[{MODE}]: {msg}", flush=True)


def fail(msg):
    failures.append(msg)
    say(f"FAIL {msg}")


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(user):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = b64(json.dumps({"sub": user, "iat": now, "exp": now + 3600}).encode())
    signed = f"{header}.{claims}".encode()
    sig = b64(hmac.new(SECRET, signed, hashlib.sha256).digest())
    return f"{header}.{claims}.{sig}"


TOKEN = token(USER)


def http(method, url, body=None, headers=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def api(method, path, body=None):
    return http(method, f"{BASE}/api/{USER}{path}", body,
                {"Authorization": f"Bearer {TOKEN}"})


def prom_query(expr):
    url = f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, text = http("GET", url)
    reply = json.loads(text)
    if reply.get("status") != "success":
        return None, reply.get("error", text)
    return reply["data"]["result"], None


def prom_value(expr):
    result, error = prom_query(expr)
    if error or not result:
        return None
    return float(result[0]["value"][1])


def eventually(what, check, wait):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    fail(f"{what} within {wait} s")
    return None


def set_faults(faults):
    for base in ADMIN:
        status, text = http("PUT", f"{base}/admin/faults", faults)
        if status != 200:
            fail(f"PUT {base}/admin/faults {faults}: {status} {text}")


def ws_open_and_close():
    """A WebSocket handshake on a raw socket, then a client close: one `client` close."""
    url = urllib.parse.urlparse(BASE)
    sock = socket.create_connection((url.hostname, url.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/{USER}/ws?access_token={TOKEN} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = sock.recv(4096)
    if b" 101 " not in head.split(b"\r\n")[0]:
        fail(f"WebSocket handshake: {head[:80]!r}")
    mask = os.urandom(4)
    sock.sendall(bytes([0x88, 0x80]) + mask)  # masked close frame, no payload
    try:
        sock.recv(4096)
    except OSError:
        pass
    sock.close()


class Load:
    """Background creates and completions until stopped: the workload the alerts see."""

    def __init__(self, rate):
        self.rate = rate
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def run(self):
        i = 0
        while not self.stop.is_set():
            api("POST", "/tasks", {"title": f"load {i}"})
            i += 1
            self.stop.wait(1 / self.rate)


def workload():
    """Touches every kind of series: tasks, reminders, recurrence, audit, WebSocket."""
    remind = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 62))
    for i in range(20):
        status, text = api("POST", "/tasks", {"title": f"task {i}", "due_at": remind,
                                              "remind_before_minutes": 1})
        if status != 201:
            fail(f"create: {status} {text}")
            return
    status, text = api("POST", "/tasks", {"title": "recurring", "due_at": remind,
                                          "recurrence": {"frequency": "daily", "interval": 1}})
    task = json.loads(text)
    api("PATCH", f"/tasks/{task['id']}/complete", {"completed": True})
    for path in ["/tasks?limit=50", "/tasks?q=task", "/audit?limit=20", "/reminders",
                 "/notifications", "/tasks?limit=0"]:
        api("GET", path)
    ws_open_and_close()


def check_freshness():
    before = prom_value("sum(todo_events_published_total)") or 0.0
    made = time.monotonic()
    status, _ = api("POST", "/tasks", {"title": "freshness"})
    if status != 201:
        fail(f"create for the freshness check: {status}")
        return
    seen = eventually("a creation visible in todo_events_published_total",
                      lambda: (prom_value("sum(todo_events_published_total)") or 0) > before,
                      30)
    if seen:
        say(f"a new metric value was visible through the API after {time.monotonic() - made:.1f} s")


def substitute(expr):
    for var, value in [("$namespace", ".*"), ("$service", ".*"), ("$__rate_interval", "1m"),
                       ("$__interval", "15s"), ("$__range", "1h")]:
        expr = expr.replace(var, value)
    return expr


# Series only one way of running has: a panel reading nothing else may be empty in the
# other (the relay exists only with a broker bus).
ONLY_IN = {"todo_events_relayed_total": "split"}


def metric_names(expr):
    stripped = re.sub(r'\{[^}]*\}|"[^"]*"', " ", expr)
    return set(METRIC.findall(stripped)) - KEYWORDS


def check_panels():
    panels = [json.loads(line) for line in open(PROMQL) if line.strip()]
    empty = []
    for p in panels:
        expr = substitute(p["expr"])
        result, error = prom_query(expr)
        if error:
            fail(f"panel {p['dashboard']} / {p['panel']}: does not parse: {error}: {expr}")
        elif not result:
            names = metric_names(expr)
            if names and all(ONLY_IN.get(n, MODE) != MODE for n in names):
                say(f"panel {p['dashboard']} / {p['panel']} empty, as expected in {MODE} mode")
            else:
                empty.append(p)
    for p in empty:
        fail(f"panel {p['dashboard']} / {p['panel']} ({p['ref_id']}) returns no data: "
             f"{substitute(p['expr'])}")
    say(f"{len(panels)} panel queries evaluated, {len(empty)} empty")


def rule_groups():
    status, text = http("GET", f"{PROM}/api/v1/rules")
    return json.loads(text)["data"]["groups"]


METRIC = re.compile(r"\b((?:todo|process)_[a-z0-9_]+|up)\b(?!\s*[:(])")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def check_rules():
    recorded = alerting = 0
    for group in rule_groups():
        for rule in group["rules"]:
            if rule["type"] == "recording":
                recorded += 1
                if rule.get("health") != "ok":
                    fail(f"recording rule {rule['name']}: {rule.get('health')} {rule.get('lastError')}")
                elif not prom_query(rule["name"])[0]:
                    fail(f"recording rule {rule['name']} returns no data")
            else:
                alerting += 1
                if rule.get("health") != "ok":
                    fail(f"alert {rule['name']}: {rule.get('health')} {rule.get('lastError')}")
                for name in metric_names(rule["query"]):
                    if not prom_query(f"count({name})")[0]:
                        fail(f"alert {rule['name']} reads {name}, which has no series")
    say(f"{recorded} recording rules and {alerting} alerts checked")


def alert_state(name, labels=None):
    for group in rule_groups():
        for rule in group["rules"]:
            if rule["type"] == "alerting" and rule["name"] == name:
                for alert in rule.get("alerts", []):
                    if all(alert["labels"].get(k) == v for k, v in (labels or {}).items()):
                        if alert["state"] == "firing":
                            return "firing"
                return "inactive" if not rule.get("alerts") else "pending"
    return None


def in_alertmanager(name, labels):
    status, text = http("GET", f"{AM}/api/v2/alerts?" + urllib.parse.urlencode(
        {"filter": f'alertname="{name}"'}))
    if status != 200:
        return False
    return any(all(a["labels"].get(k) == v for k, v in labels.items())
               for a in json.loads(text))


def drill(name, labels, faults, rate):
    state = alert_state(name, labels)
    if state != "inactive":
        fail(f"{name}{labels} is {state} before the fault, not inactive")
        return
    say(f"{name}{labels} inactive; injecting {faults}")
    started = time.monotonic()
    set_faults(faults)
    with Load(rate):
        fired = eventually(f"{name}{labels} firing in Prometheus",
                           lambda: alert_state(name, labels) == "firing", 240)
        if fired:
            say(f"{name} firing after {time.monotonic() - started:.0f} s")
            if eventually(f"{name} in Alertmanager", lambda: in_alertmanager(name, labels), 30):
                say(f"{name} reached Alertmanager after {time.monotonic() - started:.0f} s")
    set_faults({})


def main():
    say(f"workload as {USER}")
    workload()
    check_freshness()
    # Two scrapes after the workload, so rates over it exist everywhere.
    time.sleep(3)
    with Load(5):
        time.sleep(5)
    check_panels()
    check_rules()
    if os.environ.get("SKIP_DRILLS"):
        say("SKIP_DRILLS set: the alert drills are skipped")
        return finish()
    # Consumer lag: audit made slow while tasks keep coming.
    drill("ConsumerLagGrowing", {"consumer": "audit"},
          {"consumer_delay_ms": {"audit": 200}}, 20)
    # An error burst: half the API requests answered 500 (the fast availability page).
    drill("ApiAvailabilityBudgetBurn", {"severity": "critical", "window": "1h/5m"},
          {"http_error_percent": 50}, 20)
    finish()


def finish():
    if failures:
        say(f"{len(failures)} failure(s):")
        for f in failures:
            print(f"  - {f}")
        sys.exit(1)
    say("all checks passed")


if __name__ == "__main__":
    main()
