#!/usr/bin/env python3
"""Policy test over rendered manifests (helm template output), one or more files.

  policy.py rendered.yaml...                  exit 1 when any rule fails
  policy.py --expect RULE fixture.yaml        exit 0 only when RULE fails on the fixture
  policy.py --list                            the rules

Rules (each failure is printed as "FAIL <rule>: <object>: <why>"):
  resources         every container (init too) has cpu and memory requests and limits
  probes            every app container of a Deployment/StatefulSet has readiness and liveness probes
                    (and the todo services a startup probe too)
  non-root          runAsNonRoot true (container, or pod)
  read-only-root    readOnlyRootFilesystem true on every container
  no-escalation     allowPrivilegeEscalation false on every container
  drop-all          capabilities.drop holds ALL on every container
  pdb               every Deployment/StatefulSet has a PodDisruptionBudget selecting its pods
  hpa               the api and sync Deployments have an HPA (sync excepted under TODO_BUS=dapr,
                    where it keeps one replica), and a Deployment under an HPA sets no replicas
  network-policy    a deny-all NetworkPolicy (ingress and egress) exists, and every pod template is
                    selected by a NetworkPolicy of its namespace
  secret-leak       no Secret value (decoded) appears in a ConfigMap, in an env value, or in an
                    annotation; secret-named variables come from secretKeyRef only
  sa-token          every ServiceAccount and pod spec sets automountServiceAccountToken: false
  image-tag         every image names a tag other than latest
"""
import base64
import sys

import yaml

RULES = ["resources", "probes", "non-root", "read-only-root", "no-escalation", "drop-all", "pdb",
         "hpa", "network-policy", "secret-leak", "sa-token", "image-tag"]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}
SECRET_ENV = {"TODO_JWT_SECRET", "DATABASE_URL", "KAFKA_SASL_PASSWORD", "TODO_NOTIFY_WEBHOOK_SECRET",
              "APP_API_TOKEN", "DAPR_API_TOKEN", "POSTGRES_PASSWORD", "OTEL_EXPORTER_OTLP_HEADERS"}


def load(paths):
    docs = []
    for p in paths:
        with open(p) as f:
            docs += [d for d in yaml.safe_load_all(f) if isinstance(d, dict) and d.get("kind")]
    return docs


def ident(d):
    m = d.get("metadata", {})
    return f"{d['kind']}/{m.get('namespace', '')}{'/' if m.get('namespace') else ''}{m.get('name')}"


def pod_template(d):
    k = d["kind"]
    if k == "Pod":
        return d
    if k == "CronJob":
        return d["spec"]["jobTemplate"]["spec"]["template"]
    return d["spec"]["template"]


def selects(selector, labels):
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        op, key, vals = e["operator"], e["key"], e.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def check(docs):
    fails = []

    def fail(rule, d, why):
        fails.append((rule, ident(d), why))

    ns = lambda d: d.get("metadata", {}).get("namespace", "")
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    configmaps = [d for d in docs if d["kind"] == "ConfigMap"]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    secret_values = set()
    for s in secrets:
        for v in (s.get("data") or {}).values():
            try:
                secret_values.add(base64.b64decode(v).decode())
            except Exception:
                pass
        secret_values |= {str(v) for v in (s.get("stringData") or {}).values()}
    secret_values = {v for v in secret_values if len(v) >= 6}
    bus = next((c.get("data", {}).get("TODO_BUS") for c in configmaps if "TODO_BUS" in (c.get("data") or {})), None)

    # container rules
    for d in workloads:
        spec = pod_template(d)["spec"]
        psc = spec.get("securityContext") or {}
        conts = [(c, False) for c in spec.get("containers") or []] + \
                [(c, True) for c in spec.get("initContainers") or []]
        for c, init in conts:
            name = f"container {c.get('name')}"
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if not (res.get(part) or {}).get(r):
                        fail("resources", d, f"{name}: no {part}.{r}")
            if not init and d["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        fail("probes", d, f"{name}: no {probe}")
                if d.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/part-of") == "todo" \
                        and c.get("ports") and c["ports"][0].get("containerPort") == 8080 and "startupProbe" not in c:
                    fail("probes", d, f"{name}: no startupProbe")
            sc = c.get("securityContext") or {}
            if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
                fail("non-root", d, f"{name}: runAsNonRoot is not true")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail("read-only-root", d, f"{name}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged"):
                fail("no-escalation", d, f"{name}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                fail("drop-all", d, f"{name}: capabilities.drop lacks ALL")
            image = c.get("image", "")
            last = image.rsplit("/", 1)[-1]
            if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
                fail("image-tag", d, f"{name}: image {image!r} has no pinned tag")
            for e in c.get("env") or []:
                if "value" in e:
                    if e["name"] in SECRET_ENV:
                        fail("secret-leak", d, f"{name}: env {e['name']} is a plain value, not a secretKeyRef")
                    if any(s in str(e["value"]) for s in secret_values):
                        fail("secret-leak", d, f"{name}: env {e['name']} holds a Secret's value")
        if spec.get("automountServiceAccountToken") is not False:
            fail("sa-token", d, "pod spec does not set automountServiceAccountToken: false")
        for k, v in (pod_template(d).get("metadata", {}).get("annotations") or {}).items():
            if any(s in str(v) for s in secret_values):
                fail("secret-leak", d, f"annotation {k} holds a Secret's value")

    for sa in (d for d in docs if d["kind"] == "ServiceAccount"):
        if sa.get("automountServiceAccountToken") is not False:
            fail("sa-token", sa, "automountServiceAccountToken is not false")

    for c in configmaps:
        for k, v in (c.get("data") or {}).items():
            if k in SECRET_ENV:
                fail("secret-leak", c, f"key {k} is a secret setting")
            if any(s in str(v) for s in secret_values):
                fail("secret-leak", c, f"key {k} holds a Secret's value")

    # PDBs
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for d in workloads:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        labels = pod_template(d).get("metadata", {}).get("labels") or {}
        if not any(ns(p) == ns(d) and selects(p["spec"].get("selector"), labels) for p in pdbs):
            fail("pdb", d, "no PodDisruptionBudget selects its pods")

    # HPAs
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    targets = {(ns(h), h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"]) for h in hpas}
    for d in workloads:
        if d["kind"] != "Deployment":
            continue
        comp = (d.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/component")
        has = (ns(d), "Deployment", d["metadata"]["name"]) in targets
        if has and "replicas" in d["spec"]:
            fail("hpa", d, "sets replicas while an HPA scales it")
        if comp in ("api", "sync") and not has and not (comp == "sync" and bus == "dapr"):
            fail("hpa", d, f"{comp} has no HorizontalPodAutoscaler")
    for h in hpas:
        ref = h["spec"]["scaleTargetRef"]
        if not any(ns(d) == ns(h) and d["kind"] == ref["kind"] and d["metadata"]["name"] == ref["name"] for d in workloads):
            fail("hpa", h, f"scales {ref['kind']}/{ref['name']}, which is not rendered")

    # NetworkPolicies
    nps = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [n for n in nps if set(n["spec"].get("policyTypes") or []) >= {"Ingress", "Egress"}
            and not n["spec"].get("ingress") and not n["spec"].get("egress")]
    if workloads and not deny:
        fails.append(("network-policy", "(all)", "no deny-all NetworkPolicy (Ingress and Egress, no rules)"))
    for d in workloads:
        labels = pod_template(d).get("metadata", {}).get("labels") or {}
        if not any(ns(n) == ns(d) and selects(n["spec"].get("podSelector"), labels) for n in nps):
            fail("network-policy", d, "no NetworkPolicy selects its pods")
        if deny and not any(ns(n) == ns(d) and selects(n["spec"].get("podSelector"), labels) for n in deny):
            fail("network-policy", d, "no deny-all NetworkPolicy selects its pods")
    return fails


def main(argv):
    if argv[:1] == ["--list"]:
        print("\n".join(RULES))
        return 0
    expect = None
    if argv[:1] == ["--expect"]:
        expect, argv = argv[1], argv[2:]
        if expect not in RULES:
            print(f"unknown rule {expect}", file=sys.stderr)
            return 2
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    docs = load(argv)
    fails = check(docs)
    for rule, obj, why in fails:
        print(f"  FAIL {rule}: {obj}: {why}")
    failed_rules = sorted({r for r, _, _ in fails})
    if expect:
        ok = expect in failed_rules
        print(f"policy: {' '.join(argv)}: expected {expect} to fail: {'it did' if ok else 'it did NOT'}")
        return 0 if ok else 1
    print(f"policy: {len(docs)} documents, {len(RULES)} rules: "
          + ("all passed" if not fails else f"{len(fails)} failures ({', '.join(failed_rules)})"))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
