#!/usr/bin/env python3
"""Print one install's values, merged the way Helm merges its -f files
(deploy/stacks/<chart>/values.yaml, values-<cloud>.yaml, values-<env>.yaml), as YAML.

    merged.py --chart loki --cloud oke --env dev > /tmp/loki-oke-dev.yaml
"""
import argparse
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stackvalues as sv  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--chart", required=True, choices=sv.CHARTS)
ap.add_argument("--cloud", required=True, choices=sv.CLOUDS)
ap.add_argument("--env", required=True, choices=sv.ENVS)
args = ap.parse_args()
yaml.safe_dump(sv.merged(args.chart, args.cloud, args.env), sys.stdout, sort_keys=False)
