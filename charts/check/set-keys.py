#!/usr/bin/env python3
"""Every app value the scripts, guides and workflows pass with --set exists in the chart.

Greps `--set KEY=`, `--set=KEY=`, `--set-string KEY=` (quoted or not) out of scripts/*.sh,
docs/deploy/*.md and .github/workflows/*.yml and resolves KEY against
charts/todo/values.schema.json: dotted path (`\\.` escapes a dot, as helm reads it), `[N]`
list indexes, free-form maps (annotations, env, ...) accept any key below them. The keys of
the stacks' charts that deploy.sh sets itself (Envoy Gateway's CRD chart) and the
placeholders of usage lines (KEY, K) are not the app's and are skipped.

  set-keys.py [FILE...]      (default: the files above)
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "charts/todo/values.schema.json").read_text())
# Not the app chart's: Envoy Gateway's gateway-helm / gateway-crds-helm (deploy.sh, stacks.md),
# and the loki value the deploy test's fake stack file gets through --stack-set.
STACK_KEYS = {"crds.enabled", "crds.gatewayAPI.enabled", "crds.gatewayAPI.channel",
              "crds.envoyGateway.enabled", "loki.storage.azure.accountName"}
PLACEHOLDERS = {"KEY", "K"}
SET_RE = re.compile(r"--set(?:-string|-json)?[ =]+[\"']?((?:[A-Za-z0-9_/-]|\\\.|\.|\[[0-9]+\])+)=")


def split_key(key):
    parts = []
    for seg in re.split(r"(?<!\\)\.", key):
        seg = seg.replace("\\.", ".")
        m = re.fullmatch(r"(.*?)((?:\[[0-9]+\])*)", seg)
        parts.append(m.group(1))
        parts += ["[]"] * m.group(2).count("[")
    return parts


def resolves(schema, parts):
    node = schema
    for p in parts:
        if p == "[]":
            if node.get("type") != "array" and "array" not in (node.get("type") or []):
                return False
            node = node.get("items") or {}
            continue
        props = node.get("properties") or {}
        if p in props:
            node = props[p]
        elif isinstance(node.get("additionalProperties"), dict) or node.get("additionalProperties") is True \
                or (node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node):
            return True  # a free-form map: any key below it
        else:
            return False
    return True


def main():
    files = [pathlib.Path(f) for f in sys.argv[1:]] or sorted(
        list((ROOT / "scripts").glob("*.sh")) + list((ROOT / "docs/deploy").glob("*.md"))
        + list((ROOT / ".github/workflows").glob("*.yml")))
    bad, seen = [], set()
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if "--stack-set" in line and "--set " not in line.replace("--stack-set", ""):
                continue
            for key in SET_RE.findall(line.replace("--stack-set", "--stack-xet")):
                if key in PLACEHOLDERS or key in STACK_KEYS:
                    continue
                seen.add(key)
                if not resolves(SCHEMA, split_key(key)):
                    rel = f.relative_to(ROOT) if f.is_absolute() and f.is_relative_to(ROOT) else f
                    bad.append(f"{rel}:{n}: --set {key}: no such key in charts/todo/values.yaml")
    for b in bad:
        print("  FAILED:", b)
    print(f"set-keys: {len(seen)} distinct --set keys in {len(files)} files, {len(bad)} unknown to the chart")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
