#!/usr/bin/env python3
"""The app Secret each deployment guide creates holds every key the chart's pods read.

For each guide (docs/deploy/{minikube,oke,aks,gke}.md) it:
  1. collects the keys the guide puts into the Secret todo-secrets: the --from-literal=KEY=
     and --from-file=[KEY=]PATH of every `kubectl ... create secret generic todo-secrets` in its
     code blocks (continued lines joined), plus the keys scripts/dev-secrets.sh makes when the
     guide has it make the Secret;
  2. renders charts/todo as scripts/deploy.sh installs it for that env (values-ENV.yaml,
     values-TIER.yaml for both tiers, --set secrets.create=false --set
     secrets.existingSecret=todo-secrets), once as is and once with every --set the guide's
     `scripts/deploy.sh ENV ...` commands pass, and with bus dapr too when the guide offers
     --dapr;
  3. collects every key of todo-secrets the rendered objects reference that must be there:
     env valueFrom.secretKeyRef (not optional), envFrom secretRef (the whole Secret: reported),
     secret volumes' items (not optional), the Dapr sidecar's app token
     (dapr.io/app-token-secret: key token) and Dapr Components' secretKeyRef;
  4. fails on a key the chart needs that the guide does not create.

  check-guides.py [--helm PATH] [--guide FILE --env ENV]...   (default: the four guides)
"""
import argparse
import pathlib
import re
import shlex
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/todo"
SECRET = "todo-secrets"
GUIDES = {"minikube": "minikube.md", "oke": "oke.md", "aks": "aks.md", "gke": "gke.md"}
# Shell variables of the guides whose value the chart's schema checks: an example value.
EXAMPLES = {"INSTANCE": "my-project:us-central1:todo-pg"}


def code_text(md):
    """Shell text of the guide: fenced blocks (continued lines joined) and inline code spans."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", md, re.S | re.M)
    cmds = []
    for b in blocks:
        cmds += re.sub(r"\\\n\s*", " ", b).splitlines()
    outside = re.sub(r"^```[a-z]*\n.*?^```", "", md, flags=re.S | re.M)
    cmds += [re.sub(r"\s+", " ", s) for s in re.findall(r"`([^`]+)`", outside)]
    return cmds


def created_keys(md, cmds):
    keys = set()
    for c in cmds:
        if not re.search(r"create secret generic %s(\s|$)" % re.escape(SECRET), c):
            continue
        keys |= set(re.findall(r"--from-literal=([A-Za-z0-9._-]+)=", c))
        for key, path in re.findall(r"--from-file=(?:([A-Za-z0-9._-]+)=)?([^\s\"']+)", c):
            keys.add(key or path.rsplit("/", 1)[-1])
    if "scripts/dev-secrets.sh" in md:
        src = (ROOT / "scripts/dev-secrets.sh").read_text()
        m = re.search(r"ensure_secret \"\$namespace\" %s((?:.*\\\n)*.*)" % re.escape(SECRET), src)
        if m:
            keys |= set(re.findall(r"--from-literal=([A-Za-z0-9._-]+)=", m.group(1)))
    return keys


def guide_sets(env, cmds):
    """The --set arguments of each of the guide's deploy.sh commands for ENV (one list per
    command that has any), and whether the guide offers --dapr."""
    variants, dapr = [], False
    for c in cmds:
        if not re.search(r"scripts/deploy\.sh %s\b" % env, c):
            continue
        try:
            words = shlex.split(c, comments=True)
        except ValueError:
            words = c.split()
        sets = []
        for i, w in enumerate(words):
            if w == "--set" and i + 1 < len(words):
                sets.append(re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: EXAMPLES.get(m.group(1), m.group(0)), words[i + 1]))
            elif w == "--dapr":
                dapr = True
        if sets and sets not in variants:
            variants.append(sets)
    dapr = dapr or any("--dapr" in c for c in cmds)
    return variants, dapr


def render(helm, env, tier, extra):
    args = [helm, "template", "todo", str(CHART), "-n", "todo",
            "-f", str(CHART / f"values-{env}.yaml"), "-f", str(CHART / f"values-{tier}.yaml"),
            "--set", "secrets.create=false", "--set", f"secrets.existingSecret={SECRET}"]
    for s in extra:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"helm template {env} {tier} {' '.join(extra)}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def pod_specs(doc):
    spec = doc.get("spec") or {}
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        t = spec.get("template") or {}
        yield t.get("metadata") or {}, t.get("spec") or {}
    elif doc.get("kind") == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        yield t.get("metadata") or {}, t.get("spec") or {}
    elif doc.get("kind") == "Pod":
        yield doc.get("metadata") or {}, spec


def needed_keys(docs):
    """{key: [where]} of the keys of SECRET the objects need."""
    need = {}

    def add(key, where):
        need.setdefault(key, []).append(where)

    for d in docs:
        obj = f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        for meta, spec in pod_specs(d):
            ann = meta.get("annotations") or {}
            if ann.get("dapr.io/enabled") == "true" and ann.get("dapr.io/app-token-secret") == SECRET:
                add("token", f"{obj} dapr.io/app-token-secret")
            for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                for e in c.get("env") or []:
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref and ref.get("name") == SECRET and not ref.get("optional"):
                        add(ref["key"], f"{obj} {c['name']} env {e['name']}")
                for ef in c.get("envFrom") or []:
                    ref = ef.get("secretRef")
                    if ref and ref.get("name") == SECRET and not ref.get("optional"):
                        add("*", f"{obj} {c['name']} envFrom (every key)")
            for v in spec.get("volumes") or []:
                sec = v.get("secret")
                if sec and sec.get("secretName") == SECRET and not sec.get("optional"):
                    for it in sec.get("items") or [{"key": "*"}]:
                        add(it["key"], f"{obj} volume {v['name']}")
                for src in (v.get("projected") or {}).get("sources") or []:
                    sec = src.get("secret")
                    if sec and sec.get("name") == SECRET and not sec.get("optional"):
                        for it in sec.get("items") or [{"key": "*"}]:
                            add(it["key"], f"{obj} projected volume {v['name']}")
        if d.get("kind") == "Component" and str(d.get("apiVersion", "")).startswith("dapr.io/"):
            for m in (d.get("spec") or {}).get("metadata") or []:
                ref = m.get("secretKeyRef")
                if ref and ref.get("name") == SECRET:
                    add(ref["key"], f"{obj} metadata {m.get('name')}")
    return need


def check(helm, env, guide):
    md = guide.read_text()
    cmds = code_text(md)
    have = created_keys(md, cmds)
    sets, dapr = guide_sets(env, cmds)
    variants = [[]] + sets
    if dapr:
        variants += [v + ["bus=dapr", "dapr.enabled=true"] for v in list(variants)]
    need = {}
    for tier in ("dev", "prod"):
        for extra in variants:
            for k, where in needed_keys(render(helm, env, tier, extra)).items():
                need.setdefault(k, set()).update(f"{w} [{tier}{' ' if extra else ''}{' '.join(extra)}]" for w in where)
    missing = sorted(k for k in need if k != "*" and k not in have)
    rel = guide.relative_to(ROOT) if guide.is_relative_to(ROOT) else guide
    if not have:
        print(f"FAIL {rel}: creates no Secret {SECRET} (no `create secret generic {SECRET}` in a code block)")
        return False
    for k in missing:
        print(f"FAIL {rel} ({env}): the chart needs key {k!r} of {SECRET}; the guide does not create it:")
        for w in sorted(need[k])[:3]:
            print(f"       {w}")
    if "*" in need:
        print(f"note {rel} ({env}): {SECRET} is mounted whole (envFrom): {sorted(need['*'])[0]}")
    print(f"{'ok  ' if not missing else 'FAIL'} {rel} ({env}): creates {', '.join(sorted(have))}; "
          f"the chart needs {', '.join(sorted(k for k in need if k != '*'))} "
          f"({2 * len(variants)} renders{', --set from the guide' if sets else ''}{', bus dapr' if dapr else ''})")
    return not missing


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--helm", default=str(ROOT / ".tools/bin/helm"))
    ap.add_argument("--guide", action="append", type=pathlib.Path, default=[])
    ap.add_argument("--env", action="append", default=[])
    a = ap.parse_args()
    if len(a.guide) != len(a.env):
        ap.error("give one --env per --guide")
    pairs = list(zip(a.env, a.guide)) or [(e, ROOT / "docs/deploy" / g) for e, g in GUIDES.items()]
    ok = True
    for env, guide in pairs:
        try:
            ok = check(a.helm, env, guide.resolve()) and ok
        except RuntimeError as e:
            print(f"FAIL {guide}: {e}")
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
