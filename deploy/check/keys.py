#!/usr/bin/env python3
"""Every key set in deploy/stacks/<chart>/values*.yaml must exist in the pinned chart.

The accepted keys are those of deploy/check/upstream-keys/<chart>-<version>.txt (the version
from deploy/stacks/versions.env), extracted from the chart's upstream values.yaml by
extract-keys.py. A key is accepted when its path is listed; below a path listed as `open`
(an empty map or null upstream, which the chart passes through), or `list`, anything goes.
A mapping set where the chart has a plain value, or a key the chart does not know, fails:
a typo such as `prometheusSpec.retension` would otherwise be ignored by Helm without a word.

    keys.py                      # every chart's values files
    keys.py --chart loki FILE..  # given files against one chart's keys
Exit status 0 when every key is known, 1 otherwise.
"""
import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stackvalues as sv  # noqa: E402


def load_keys(chart):
    version = sv.chart_version(chart)
    path = os.path.join(sv.CHECK, "upstream-keys", f"{chart}-{version}.txt")
    keys = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, kind = line.rstrip("\n").split("\t")
            keys[key] = kind
    return path, keys


def check(values, keys, prefix=""):
    """Yield (path, problem) for each key of `values` the chart does not accept."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        kind = keys.get(path)
        if kind is None:
            yield path, "unknown key"
        elif kind in ("open", "list"):
            continue
        elif kind == "scalar":
            if isinstance(value, dict) and value:
                yield path, "a mapping where the chart has a plain value"
        elif isinstance(value, dict):
            yield from check(value, keys, path + ".")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chart", choices=sv.CHARTS)
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    if args.files and not args.chart:
        ap.error("files need --chart")
    jobs = [(args.chart, f) for f in args.files] if args.files else [
        (chart, f) for chart in sv.CHARTS
        for f in sorted(glob.glob(os.path.join(sv.STACKS, chart, "values*.yaml")))]
    bad = 0
    cache = {}
    for chart, path in jobs:
        if chart not in cache:
            cache[chart] = load_keys(chart)
        keyfile, keys = cache[chart]
        problems = list(check(sv.load_yaml(path), keys))
        rel = os.path.relpath(path, sv.ROOT)
        if problems:
            bad += 1
            for key, problem in problems:
                print(f"FAIL {rel}: {key}: {problem} (not in {os.path.relpath(keyfile, sv.ROOT)})")
        else:
            print(f"ok   {rel}")
    print(f"keys.py: {len(jobs) - bad} files ok, {bad} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
