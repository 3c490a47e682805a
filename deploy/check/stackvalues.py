"""Shared helpers of the deploy/check scripts: versions.env, values files, Helm-style merging."""
import copy
import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STACKS = os.path.join(ROOT, "deploy", "stacks")
CHECK = os.path.join(ROOT, "deploy", "check")
CHARTS = ("kube-prometheus-stack", "loki", "alloy", "tempo", "envoy-gateway", "dapr")
CLOUDS = ("minikube", "oke", "aks", "gke")
ENVS = ("dev", "prod")


def versions(path=None):
    """NAME_VERSION / NAME_REPO lines of deploy/stacks/versions.env as a dict."""
    out = {}
    with open(path or os.path.join(STACKS, "versions.env"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(\S+)", line)
            if not m:
                raise ValueError(f"versions.env: not NAME=value: {line!r}")
            out[m.group(1)] = m.group(2)
    return out


def chart_version(chart, env=None):
    env = env or versions()
    return env[chart.upper().replace("-", "_") + "_VERSION"]


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a values file must be a mapping")
    return data


def merge(base, over):
    """Helm's coalescing of values files: mappings merge key by key, a null deletes the key,
    anything else (lists included) replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def values_files(chart, cloud, env):
    """The files of one install, in `helm -f` order: values.yaml, values-<cloud>, values-<env>."""
    folder = os.path.join(STACKS, chart)
    names = ["values.yaml", f"values-{cloud}.yaml", f"values-{env}.yaml"]
    return [os.path.join(folder, n) for n in names if os.path.exists(os.path.join(folder, n))]


def merged(chart, cloud, env):
    out = {}
    for path in values_files(chart, cloud, env):
        out = merge(out, load_yaml(path))
    return out


def dig(values, path, default=None):
    node = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
