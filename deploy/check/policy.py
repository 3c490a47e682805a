#!/usr/bin/env python3
"""What the stacks' values must say, per cloud and env (merged the Helm way), beyond valid keys:

- kube-prometheus-stack: retention 15d with a retentionSize, the volume on the cloud's storage
  class, selectors on `release: kube-prometheus-stack`, Grafana admin from the Secret
  grafana-admin, the dashboard sidecar on grafana_dashboard=1 in all namespaces, datasource
  uids prometheus / loki / tempo (those of observability/grafana/provisioning and of the
  dashboards), control-plane scrapes off on the managed clouds;
- loki: monolithic, one replica, retention really on (compactor.retention_enabled and a
  delete_request_store matching the storage type), 7 days in dev and 30 in prod;
- alloy: a DaemonSet whose configuration parses as far as we can check without Alloy
  (balanced blocks, known components, the labels stage holds only level and service, the
  JSON stage reads the fields the app writes);
- envoy-gateway: the OCI flexible 10 Mbps load balancer on OKE, NodePort on Minikube.
Exit 1 when any cloud/env has a problem (all problems are printed).
`policy.py --alloy FILE` checks one Alloy configuration file the same way.
"""
import json
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stackvalues as sv  # noqa: E402

STORAGE_CLASS = {"minikube": "standard", "oke": "oci-bv", "aks": "managed-csi", "gke": "standard-rwo"}
LOKI_STORE = {"minikube": "filesystem", "oke": "s3", "aks": "azure", "gke": "gcs"}
RETENTION = {"dev": "168h", "prod": "720h"}
RELEASE = {"matchLabels": {"release": "kube-prometheus-stack"}}

# Alloy components this configuration may use (docs/sources/reference/components of
# grafana/alloy at the pinned chart's commit).
ALLOY_COMPONENTS = {"discovery.kubernetes", "discovery.relabel", "local.file_match", "loki.source.file",
                    "loki.source.kubernetes", "loki.process", "loki.write", "loki.relabel"}
ALLOY_BLOCKS = {"selectors", "rule", "endpoint", "stage.cri", "stage.json", "stage.labels",
                "stage.structured_metadata", "stage.timestamp", "stage.label_drop", "stage.drop",
                "stage.match", "stage.static_labels", "file_match", "basic_auth"}
# The app's JSON log keys (docs/metrics.md, "Logs").
APP_LOG_KEYS = {"timestamp", "level", "service", "message", "target", "trace_id", "span_id"}


def dashboards_uids():
    """Datasource uids named by the provisioning example and by the dashboards."""
    prov = sv.load_yaml(os.path.join(sv.ROOT, "observability", "grafana", "provisioning", "datasources",
                                     "datasources.yaml"))
    uids = {d["type"]: d["uid"] for d in prov["datasources"]}
    used = set()
    folder = os.path.join(sv.ROOT, "observability", "dashboards")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read()
            used |= set(re.findall(r'"type":\s*"(loki|tempo|prometheus)",\s*"uid":\s*"([^"$]+)"', text))
            json.loads(text)
    return uids, used


def alloy_syntax(text):
    """Problems found in an Alloy configuration by a small tokenizer (no Alloy binary here)."""
    problems = []
    # strip comments and strings, keeping line structure
    stack, i, line = [], 0, 1
    clean = []
    while i < len(text):
        c = text[i]
        if c == "\n":
            line += 1
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
            continue
        if c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                if text[j] == "\\":
                    j += 1
                if text[j] == "\n":
                    problems.append(f"line {line}: string not closed")
                    break
                j += 1
            clean.append('""')
            i = j + 1
            continue
        if c in "{[(":
            stack.append((c, line))
        elif c in "}])":
            if not stack or "{[(".index(stack[-1][0]) != "}])".index(c):
                problems.append(f"line {line}: unbalanced {c!r}")
            else:
                stack.pop()
        clean.append(c)
        i += 1
    for c, ln in stack:
        problems.append(f"line {ln}: {c!r} never closed")
    body = "".join(clean)
    # top-level components: `name.name "label" {` ; inner blocks: `name {`
    for m in re.finditer(r'(?m)^([ \t]*)([a-z_][a-z0-9_.]*)[ \t]*(""[ \t]*)?\{', body):
        indent, name, label = m.group(1), m.group(2), m.group(3)
        if not indent:
            if not label:
                problems.append(f"component {name} has no label")
            if name not in ALLOY_COMPONENTS:
                problems.append(f"unknown component {name}")
        elif name not in ALLOY_BLOCKS:
            problems.append(f"unknown block {name}")
    # references to components must name defined ones
    defined = set(re.findall(r'(?m)^([a-z_][a-z0-9_.]*)\s+"([^"]+)"\s*\{', text))
    for comp, label, _ in re.findall(r'\b((?:discovery|local|loki)\.[a-z_.]+?)\.([a-z_]+)\.(targets|output|receiver)\b', text):
        if (comp, label) not in defined:
            problems.append(f"reference to undefined {comp} \"{label}\"")
    return problems


def alloy_stages(text):
    problems = []
    labels = re.search(r"stage\.labels\s*\{\s*values\s*=\s*\{([^}]*)\}", text)
    if not labels:
        problems.append("no stage.labels")
    else:
        keys = set(re.findall(r"(\w+)\s*=", labels.group(1)))
        if keys != {"level", "service"}:
            problems.append(f"stage.labels sets {sorted(keys)}, want exactly level and service")
    meta = re.search(r"stage\.structured_metadata\s*\{\s*values\s*=\s*\{([^}]*)\}", text)
    if not meta or "trace_id" not in meta.group(1):
        problems.append("trace_id is not structured metadata")
    js = re.search(r"stage\.json\s*\{\s*expressions\s*=\s*\{([^}]*)\}", text)
    if not js:
        problems.append("no stage.json")
    else:
        unknown = set(re.findall(r"(\w+)\s*=", js.group(1))) - APP_LOG_KEYS
        if unknown:
            problems.append(f"stage.json reads keys the app does not write: {sorted(unknown)}")
    ts = re.search(r'stage\.timestamp\s*\{[^}]*source\s*=\s*"timestamp"', text)
    if not ts:
        problems.append("stage.timestamp does not read the line's timestamp")
    return problems


def check(cloud, env, uids, used):
    p = []
    kps = sv.merged("kube-prometheus-stack", cloud, env)
    spec = sv.dig(kps, "prometheus.prometheusSpec", {})
    if spec.get("retention") != "15d":
        p.append(f"prometheus retention {spec.get('retention')}, want 15d")
    if not spec.get("retentionSize"):
        p.append("prometheus retentionSize not set")
    sc = sv.dig(spec, "storageSpec.volumeClaimTemplate.spec.storageClassName")
    if sc != STORAGE_CLASS[cloud]:
        p.append(f"prometheus storage class {sc}, want {STORAGE_CLASS[cloud]}")
    for sel in ("serviceMonitorSelector", "podMonitorSelector", "ruleSelector"):
        if spec.get(sel) != RELEASE:
            p.append(f"prometheus {sel} is {spec.get(sel)}, want {RELEASE}")
    g = kps.get("grafana", {})
    if sv.dig(g, "admin.existingSecret") != "grafana-admin":
        p.append("grafana admin not from the Secret grafana-admin")
    if (sv.dig(g, "admin.userKey"), sv.dig(g, "admin.passwordKey")) != ("admin-user", "admin-password"):
        p.append("grafana admin keys are not admin-user / admin-password")
    dash = sv.dig(g, "sidecar.dashboards", {})
    if (dash.get("label"), str(dash.get("labelValue")), dash.get("searchNamespace")) != ("grafana_dashboard", "1", "ALL"):
        p.append("grafana dashboard sidecar is not grafana_dashboard=1 in ALL namespaces")
    ours = {d["type"]: d["uid"] for d in g.get("additionalDataSources", [])}
    ours["prometheus"] = sv.dig(g, "sidecar.datasources.uid", "prometheus")
    for typ, uid in uids.items():
        if ours.get(typ) != uid:
            p.append(f"grafana {typ} datasource uid {ours.get(typ)}, the dashboards use {uid}")
    for typ, uid in used:
        if ours.get(typ) != uid:
            p.append(f"a dashboard names {typ} uid {uid}, which no datasource has")
    loki_ds = next((d for d in g.get("additionalDataSources", []) if d["type"] == "loki"), {})
    if not any(f.get("matcherRegex") == "trace_id" and f.get("datasourceUid") == "tempo"
               for f in sv.dig(loki_ds, "jsonData.derivedFields", [])):
        p.append("the Loki datasource has no trace_id derived field to Tempo")
    for comp in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        enabled = sv.dig(kps, f"{comp}.enabled", True)
        if cloud != "minikube" and enabled:
            p.append(f"{comp} scraping is on, but {cloud} does not expose it")

    lk = sv.merged("loki", cloud, env)
    if lk.get("deploymentMode") not in ("Monolithic", "SingleBinary"):
        p.append(f"loki deploymentMode {lk.get('deploymentMode')}")
    if sv.dig(lk, "singleBinary.replicas") != 1:
        p.append("loki singleBinary.replicas is not 1")
    comp = sv.dig(lk, "loki.compactor", {})
    if comp.get("retention_enabled") is not True:
        p.append("loki compactor.retention_enabled is not true: retention_period would delete nothing")
    store = LOKI_STORE[cloud]
    if comp.get("delete_request_store") != store:
        p.append(f"loki delete_request_store {comp.get('delete_request_store')}, want {store}")
    if sv.dig(lk, "loki.storage.type") != store:
        p.append(f"loki storage.type {sv.dig(lk, 'loki.storage.type')}, want {store}")
    objs = {c.get("object_store") for c in sv.dig(lk, "loki.schemaConfig.configs", [])}
    if objs != {store}:
        p.append(f"loki schemaConfig object_store {sorted(objs)}, want {store}")
    period = sv.dig(lk, "loki.limits_config.retention_period")
    if period != RETENTION[env]:
        p.append(f"loki retention_period {period}, want {RETENTION[env]} in {env}")
    if cloud == "oke":
        s3 = sv.dig(lk, "loki.storage.s3", {})
        if not re.fullmatch(r"https://[^.]+\.compat\.objectstorage\.[^.]+\.oraclecloud\.com", str(s3.get("endpoint"))):
            p.append("loki on OKE: endpoint is not OCI's S3 compatibility endpoint")
        if s3.get("s3ForcePathStyle") is not True:
            p.append("loki on OKE: s3ForcePathStyle must be true")

    al = sv.merged("alloy", cloud, env)
    if sv.dig(al, "controller.type") != "daemonset":
        p.append("alloy is not a DaemonSet")
    text = sv.dig(al, "alloy.configMap.content", "")
    p += [f"alloy config: {x}" for x in alloy_syntax(text) + alloy_stages(text)]

    eg = sv.merged("envoy-gateway", cloud, env)
    svc = sv.dig(eg, "config.envoyGateway.envoyProxy.provider.kubernetes.envoyService", {})
    ann = svc.get("annotations") or {}
    if cloud == "oke":
        want = {"service.beta.kubernetes.io/oci-load-balancer-shape": "flexible",
                "service.beta.kubernetes.io/oci-load-balancer-shape-flex-min": "10",
                "service.beta.kubernetes.io/oci-load-balancer-shape-flex-max": "10"}
        for k, v in want.items():
            if str(ann.get(k)) != v:
                p.append(f"envoy service on OKE: {k} is {ann.get(k)}, want {v}")
    if cloud == "minikube" and svc.get("type") != "NodePort":
        p.append("envoy service on Minikube is not a NodePort")
    if cloud != "minikube" and svc.get("type") != "LoadBalancer":
        p.append(f"envoy service on {cloud} is not a LoadBalancer")
    return p


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--alloy":
        # check one Alloy configuration file (used on a broken fixture to show the check bites)
        with open(sys.argv[2], encoding="utf-8") as f:
            text = f.read()
        problems = alloy_syntax(text) + alloy_stages(text)
        for x in problems:
            print(f"FAIL {sys.argv[2]}: {x}")
        print(f"policy.py --alloy: {len(problems)} problems")
        sys.exit(1 if problems else 0)
    uids, used = dashboards_uids()
    bad = 0
    for cloud in sv.CLOUDS:
        for env in sv.ENVS:
            problems = check(cloud, env, uids, used)
            if problems:
                bad += 1
                for x in problems:
                    print(f"FAIL {cloud}/{env}: {x}")
            else:
                print(f"ok   {cloud}/{env}")
    print(f"policy.py: {len(sv.CLOUDS) * len(sv.ENVS) - bad} installs ok, {bad} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
