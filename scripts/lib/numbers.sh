# shellcheck shell=bash
# Checks of numeric settings that the benchmark scripts share.

# Stops the script (exit 2) unless every argument is a positive whole number.
positive_integers() {
  local n
  for n in "$@"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $n" >&2; exit 2; }
  done
}
