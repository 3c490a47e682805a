#!/usr/bin/env python3
"""Checks that docs/deploy/chart.md names every key of charts/todo/values.yaml (as `key`).

Service names in paths are written <name> (services.<name>.replicas); maps of free-form or
grouped settings (resources, env, selectors, image, storage, ...) are named as a whole.
"""
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GROUPS = {"resources", "env", "extra", "podLabels", "podAnnotations", "nodeSelector", "affinity", "annotations",
          "labels", "namespaceSelector", "podSelector", "parametersRef", "sidecar", "startup", "readiness",
          "liveness", "image", "storage", "topics"}


def paths(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and key not in GROUPS:
            yield from paths(value, path)
        else:
            path = re.sub(r"^services\.(api|recurring|notification|sync|audit)\.", "services.<name>.", path)
            yield re.sub(r"^autoscaling\.(api|sync)\.", "autoscaling.<name>.", path)


values = yaml.safe_load((ROOT / "charts/todo/values.yaml").read_text())
doc = (ROOT / "docs/deploy/chart.md").read_text()
keys = sorted(set(paths(values)))
missing = [k for k in keys if f"`{k}`" not in doc]
for k in missing:
    print(f"  FAILED: docs/deploy/chart.md does not describe `{k}`")
print(f"doc-keys: {len(keys)} keys of values.yaml, {len(missing)} missing from docs/deploy/chart.md")
sys.exit(1 if missing else 0)
