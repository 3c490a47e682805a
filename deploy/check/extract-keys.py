#!/usr/bin/env python3
"""Regenerate deploy/check/upstream-keys/<chart>-<version>.txt from the upstream charts.

Reads each pinned chart's values.yaml (and its subcharts' values.yaml) straight out of a git
clone of the chart's upstream repository, at the commit given below, checks that the chart's
Chart.yaml there has the pinned version, and writes every key path the values file declares,
one per line:

    <dotted.path>\t<kind>

kind is `map` (a non-empty mapping: its children are listed too), `open` (an empty mapping
or null upstream, or a `resources` block, a Kubernetes ResourceRequirements the chart copies
into the pod: anything below it is accepted), `list` or `scalar`. Subchart keys are listed under the subchart's name (`grafana.`, `dapr_operator.`).
A few keys that the chart's templates read but its values.yaml does not declare are added
from EXTRA below, each with the template that reads it.

Usage (only needed after a version bump; CI reads the committed files):

    python3 deploy/check/extract-keys.py --mirror /path/to/clones [--check]

where /path/to/clones/<owner>+<name>/repo is a clone (bare or not) of github.com/<owner>/<name>.
--check compares with the committed files instead of writing them (exit 1 on a difference).
"""
import argparse
import os
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "upstream-keys")

# chart -> where its values come from. `ref` is a tag or commit; the output records the commit.
SOURCES = {
    "kube-prometheus-stack": {
        "version": "88.5.3",
        "repo": "prometheus-community/helm-charts",
        "ref": "cf408a290aec489277a94450bb3511432477a53a",
        "dir": "charts/kube-prometheus-stack",
        "subcharts": {
            # prefix -> (repo, ref, dir, version)
            "grafana": ("grafana-community/helm-charts", "3386a1156177c6bcd7fdb1ad4c6b1dda094296e0",
                        "charts/grafana", "12.11.1"),
            "kube-state-metrics": ("prometheus-community/helm-charts", "cf408a290aec489277a94450bb3511432477a53a",
                                   "charts/kube-state-metrics", "8.4.0"),
            "prometheus-node-exporter": ("prometheus-community/helm-charts", "cf408a290aec489277a94450bb3511432477a53a",
                                         "charts/prometheus-node-exporter", "4.56.1"),
        },
    },
    "loki": {
        "version": "18.11.0",
        "repo": "grafana-community/helm-charts",
        "ref": "3386a1156177c6bcd7fdb1ad4c6b1dda094296e0",
        "dir": "charts/loki",
    },
    "alloy": {
        "version": "1.11.1",
        "repo": "grafana/alloy",
        "ref": "66ebea856dffb242f921775e9552a133f60dc5c1",
        "dir": "operations/helm/charts/alloy",
    },
    "tempo": {
        "version": "2.2.4",
        "repo": "grafana-community/helm-charts",
        "ref": "3386a1156177c6bcd7fdb1ad4c6b1dda094296e0",
        "dir": "charts/tempo",
    },
    "envoy-gateway": {
        "version": "v1.9.0",
        "repo": "envoyproxy/gateway",
        "ref": "v1.9.0",
        "dir": "charts/gateway-helm",
        # the chart's version is stamped at release; in the tree it is v0.0.0-latest
        "chart_version_in_tree": "v0.0.0-latest",
        # the release build renders values.tmpl.yaml (image placeholders) into values.yaml
        "values_file": "values.tmpl.yaml",
    },
    "dapr": {
        "version": "1.18.3",
        "repo": "dapr/dapr",
        "ref": "v1.18.3",
        "dir": "charts/dapr",
        "chart_version_in_tree": "0.0.0",
        "subcharts": {
            name: ("dapr/dapr", "v1.18.3", "charts/dapr/charts/" + name, "0.0.0")
            for name in ("dapr_config", "dapr_operator", "dapr_placement", "dapr_rbac",
                         "dapr_scheduler", "dapr_sentry", "dapr_sidecar_injector")
        },
    },
}

# Keys read by the templates but not declared in values.yaml (path, kind, where it is read).
EXTRA = {
    "kube-prometheus-stack": [
        ("alertmanager.config", "open",
         "templates/alertmanager/secret.yaml renders it whole as alertmanager.yaml (free-form Alertmanager configuration)"),
    ],
    "loki": [
        ("loki.storage.bucketNames", "open",
         "templates/_helpers.tpl: dig \"storage\" \"bucketNames\" \"chunks\"/\"ruler\"/\"admin\""),
        ("loki.limits_config", "open",
         "templates/config (loki.config): limits_config is rendered whole with tpl/toYaml (any Loki limits key)"),
    ],
    "tempo": [
        ("persistence.storageClassName", "scalar",
         "templates/statefulset.yaml: storageClassName: {{ .Values.persistence.storageClassName }}"),
    ],
    "envoy-gateway": [
        ("config.envoyGateway.envoyProxy", "open",
         "templates/envoy-gateway-config.yaml merges config.envoyGateway into the EnvoyGateway config; "
         "api/v1alpha1/envoygateway_types.go: EnvoyGatewaySpec.EnvoyProxy *EnvoyProxySpec `json:\"envoyProxy\"`"),
    ],
}


def git(repo_dir, *args):
    return subprocess.run(["git", "-C", repo_dir, *args], check=True, capture_output=True, text=True).stdout


# Keys holding a Kubernetes object the chart copies whole into a manifest (toYaml): their
# fields are the object's, not the chart's, so they are listed as open even when the chart
# gives a default (`resources: {requests: ...}` with no `limits` would otherwise refuse limits).
PASS_THROUGH = {"resources"}


def walk(node, prefix, out):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if key in PASS_THROUGH:
            out[path] = "open"
        elif isinstance(value, dict):
            if value:
                out[path] = "map"
                walk(value, path + ".", out)
            else:
                out[path] = "open"
        elif value is None:
            out[path] = "open"
        elif isinstance(value, list):
            out[path] = "list"
        else:
            out[path] = "scalar"


def load(mirror, repo, ref, chart_dir, version, values_file="values.yaml", in_tree=None):
    repo_dir = os.path.join(mirror, repo.replace("/", "+"), "repo")
    commit = git(repo_dir, "rev-parse", ref + "^{commit}").strip()
    chart = yaml.safe_load(git(repo_dir, "show", f"{commit}:{chart_dir}/Chart.yaml"))
    want = in_tree or version
    if str(chart.get("version")) != want:
        sys.exit(f"{repo}@{commit} {chart_dir}: Chart.yaml version {chart.get('version')}, expected {want}")
    values = yaml.safe_load(git(repo_dir, "show", f"{commit}:{chart_dir}/{values_file}")) or {}
    return commit, values


def generate(mirror):
    files = {}
    for name, src in SOURCES.items():
        commit, values = load(mirror, src["repo"], src["ref"], src["dir"], src["version"],
                              src.get("values_file", "values.yaml"), src.get("chart_version_in_tree"))
        keys = {}
        walk(values, "", keys)
        header = [
            f"# chart: {name} {src['version']}",
            f"# source: github.com/{src['repo']}@{commit} {src['dir']}/{src.get('values_file', 'values.yaml')}",
        ]
        for prefix, (repo, ref, sub_dir, sub_version) in sorted(src.get("subcharts", {}).items()):
            sub_commit, sub_values = load(mirror, repo, ref, sub_dir, sub_version)
            header.append(f"# subchart {prefix} {sub_version}: github.com/{repo}@{sub_commit} {sub_dir}/values.yaml")
            sub_keys = {}
            walk(sub_values, prefix + ".", sub_keys)
            for path, kind in sub_keys.items():
                # the parent's own defaults for a subchart key win only if they are more specific
                if path not in keys or keys[path] == "open":
                    keys[path] = kind
            keys.setdefault(prefix, "map")
            if keys[prefix] != "map":
                keys[prefix] = "map"
        for path, kind, where in EXTRA.get(name, []):
            header.append(f"# extra {path} ({kind}): {where}")
            keys[path] = kind
        header.append("# generated by deploy/check/extract-keys.py; do not edit by hand")
        body = [f"{path}\t{kind}" for path, kind in sorted(keys.items())]
        files[f"{name}-{src['version']}.txt"] = "\n".join(header + body) + "\n"
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", required=True, help="folder holding <owner>+<name>/repo clones")
    ap.add_argument("--check", action="store_true", help="compare with the committed files")
    args = ap.parse_args()
    files = generate(args.mirror)
    bad = 0
    for fname, text in files.items():
        path = os.path.join(OUT, fname)
        if args.check:
            try:
                with open(path, encoding="utf-8") as f:
                    same = f.read() == text
            except FileNotFoundError:
                same = False
            print(("same " if same else "DIFFERS ") + path)
            bad += not same
        else:
            os.makedirs(OUT, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {path} ({text.count(chr(10))} lines)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
