#!/usr/bin/env python3
"""Render the pinned upstream charts with our values, from git clones of their sources.

No chart repository is reachable offline, but the charts' sources are: given a folder of
clones (<owner>+<name>/repo, as for extract-keys.py), this assembles each chart at the commit
extract-keys.py names (subcharts copied in from their own sources; dependencies our values
turn off dropped from Chart.yaml), runs `helm template` for every cloud x env with
values.yaml + values-<cloud>.yaml + values-<env>.yaml, validates the output with
../shared/schemas/validate.py --k8s 1.30 (built-in kinds strictly; operator-made kinds such
as Prometheus are skipped), and compares the requests of the rendered workloads with what
budget.py models for the same values (Prometheus and Alertmanager pods are made by the
operator at run time: their requests are taken from the rendered objects' spec.resources and
replicas plus the config reloader's requests from the operator's --config-reloader-* flags).

    render-upstream.py --mirror DIR [--helm .tools/bin/helm] [--shared ../shared]
Exit 0 when everything renders, validates and matches; 1 otherwise.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import budget  # noqa: E402
import stackvalues as sv  # noqa: E402

spec = importlib.util.spec_from_file_location("extract_keys", os.path.join(HERE, "extract-keys.py"))
extract_keys = importlib.util.module_from_spec(spec)
spec.loader.exec_module(extract_keys)

RELEASE = {"kube-prometheus-stack": ("kube-prometheus-stack", "monitoring"), "loki": ("loki", "monitoring"),
           "alloy": ("alloy", "monitoring"), "tempo": ("tempo", "monitoring"),
           "envoy-gateway": ("eg", "envoy-gateway-system"), "dapr": ("dapr", "dapr-system")}
# Subcharts kept in Chart.yaml (copied from their sources); any other dependency is dropped,
# which is right only while our values keep it off (minio, rollout-operator, windows exporter).
KEEP = {"kube-prometheus-stack": {"crds", "grafana", "kube-state-metrics", "prometheus-node-exporter"},
        "alloy": {"crds"}, "envoy-gateway": {"crds"}}


def export(mirror, repo, ref, path, dest):
    repo_dir = os.path.join(mirror, repo.replace("/", "+"), "repo")
    os.makedirs(dest, exist_ok=True)
    depth = path.count("/") + 1
    archive = subprocess.run(["git", "-C", repo_dir, "archive", ref, path], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest, f"--strip-components={depth}"], input=archive, check=True)


def assemble(mirror, name, work):
    src = extract_keys.SOURCES[name]
    dest = os.path.join(work, name)
    export(mirror, src["repo"], src["ref"], src["dir"], dest)
    for prefix, (repo, ref, sub_dir, _) in src.get("subcharts", {}).items():
        if name == "dapr":
            continue  # dapr's subcharts are inside its own folder
        export(mirror, repo, ref, sub_dir, os.path.join(dest, "charts", prefix))
    chart_file = os.path.join(dest, "Chart.yaml")
    with open(chart_file, encoding="utf-8") as f:
        chart = yaml.safe_load(f)
    keep = KEEP.get(name, set())
    chart["dependencies"] = [d for d in chart.get("dependencies") or [] if d["name"] in keep]
    with open(chart_file, "w", encoding="utf-8") as f:
        yaml.safe_dump(chart, f)
    lock = os.path.join(dest, "Chart.lock")
    if os.path.exists(lock):
        os.remove(lock)
    tmpl = os.path.join(dest, "values.tmpl.yaml")
    if os.path.exists(tmpl):  # gateway-helm: what its release build does
        with open(tmpl, encoding="utf-8") as f:
            text = f.read()
        text = text.replace("${GatewayImage}", f"docker.io/envoyproxy/gateway:{src['version']}")
        text = text.replace("${GatewayImagePullPolicy}", "IfNotPresent")
        with open(os.path.join(dest, "values.yaml"), "w", encoding="utf-8") as f:
            f.write(text)
    return dest


def modelled(name, values):
    if name == "kube-prometheus-stack":
        comps = budget.kube_prometheus_stack(values)
    elif name == "envoy-gateway":
        comps = [c for c in budget.envoy_gateway(values, 1) if not c.name.startswith("envoy proxy")]
    else:
        comps = {"loki": budget.loki, "alloy": budget.alloy, "tempo": budget.tempo, "dapr": budget.dapr}[name](values)
    return comps


def operator_pods(path):
    """Prometheus / Alertmanager pods as the operator will make them from the rendered objects:
    spec.replicas x (spec.resources requests + the config reloader's, from the operator's flags)."""
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
    flags = {}
    for d in docs:
        if d.get("kind") == "Deployment" and d["metadata"]["name"].endswith("-operator"):
            for arg in d["spec"]["template"]["spec"]["containers"][0].get("args", []):
                if arg.startswith("--config-reloader-") and "=" in arg:
                    key, value = arg[2:].split("=", 1)
                    flags[key] = value
    out = []
    for d in docs:
        if d.get("kind") in ("Prometheus", "Alertmanager"):
            cpu, mem = budget.requests_of(d["spec"].get("resources"), d["kind"])
            cpu += budget.cpu_m(flags["config-reloader-cpu-request"])
            mem += budget.mem_b(flags["config-reloader-memory-request"])
            out.append(budget.Component("rendered", d["kind"].lower(), cpu, mem, int(d["spec"].get("replicas", 1))))
    return out


def totals(comps, nodes=2):
    steady = [c for c in comps if not c.transient]
    return sum(c.cpu * c.count(nodes) for c in steady), sum(c.mem * c.count(nodes) for c in steady)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", required=True)
    ap.add_argument("--helm", default=os.path.join(sv.ROOT, ".tools", "bin", "helm"))
    ap.add_argument("--shared", default=os.path.join(sv.ROOT, "..", "shared"))
    args = ap.parse_args()
    bad = 0
    with tempfile.TemporaryDirectory() as work:
        for name in sv.CHARTS:
            chart = assemble(args.mirror, name, work)
            release, ns = RELEASE[name]
            for cloud in sv.CLOUDS:
                for env in sv.ENVS:
                    files = sv.values_files(name, cloud, env)
                    cmd = [args.helm, "template", release, chart, "-n", ns, "--kube-version", "1.33.0"]
                    for f in files:
                        cmd += ["-f", f]
                    what = f"{name} {cloud}/{env}"
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode != 0:
                        bad += 1
                        print(f"FAIL {what}: helm template: {r.stderr.strip().splitlines()[-1:]}")
                        continue
                    out = os.path.join(work, f"{name}-{cloud}-{env}.yaml")
                    with open(out, "w", encoding="utf-8") as f:
                        f.write(r.stdout)
                    v = subprocess.run([sys.executable, os.path.join(args.shared, "schemas", "validate.py"),
                                        "--k8s", "1.30", out], capture_output=True, text=True)
                    summary = (v.stdout.strip().splitlines() or ["?"])[-1]
                    if v.returncode != 0:
                        bad += 1
                        print(f"FAIL {what}: validate.py: " + "; ".join(
                            line for line in v.stdout.splitlines() if line.startswith("FAIL"))[:500])
                        continue
                    rendered, _, _ = budget.app_components(out, "off")
                    if name == "kube-prometheus-stack":
                        rendered += operator_pods(out)
                    r_cpu, r_mem = totals(rendered)
                    m_cpu, m_mem = totals(modelled(name, sv.merged(name, cloud, env)))
                    same = abs(r_cpu - m_cpu) < 1 and abs(r_mem - m_mem) < 1024
                    if not same:
                        bad += 1
                    print(f"{'ok  ' if same else 'FAIL'} {what}: rendered, {summary.split(': ', 1)[-1]}; "
                          f"requests rendered {budget.fmt_cpu(r_cpu)}/{budget.fmt_mem(r_mem)}, "
                          f"budget.py {budget.fmt_cpu(m_cpu)}/{budget.fmt_mem(m_mem)}")
    print(f"render-upstream.py: {bad} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
