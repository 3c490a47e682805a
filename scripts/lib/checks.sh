# shellcheck shell=bash
# What the offline check scripts share: printed steps and commands, and failures counted
# rather than fatal, so one run reports every check that failed.

failures=0

step() { printf '\n==> %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }
failed() {
  printf '  FAILED: %s\n' "$*"
  failures=$((failures + 1))
}
# A command that must fail; its output is shown, its failure is the success.
must_fail() {
  printf '+ (must fail) %s\n' "$*"
  if "$@"; then
    failed "expected a failure: $*"
  else
    printf '  failed as it should\n'
  fi
}
