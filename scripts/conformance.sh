#!/usr/bin/env bash
# Runs the conformance suites against ../shared/conformance (or $RBUILD_CONFORMANCE_DIR), prints
# each table's "N passed, N failed" line, then the total.
set -euo pipefail
cd "$(dirname "$0")/.."
export RBUILD_CONFORMANCE_DIR="${RBUILD_CONFORMANCE_DIR:-$(cd .. && pwd)/shared/conformance}"
# The corpus is not part of this repository (README, "Tests"): CI always has it beside the
# clone; elsewhere its absence is reported as skipped, never as passed.
if [ ! -d "$RBUILD_CONFORMANCE_DIR" ]; then
  if [ -n "${CI:-}" ]; then
    echo "conformance: corpus missing at $RBUILD_CONFORMANCE_DIR (CI must have ../shared/conformance)" >&2
    exit 1
  fi
  echo "conformance: SKIPPED: corpus missing at $RBUILD_CONFORMANCE_DIR (set RBUILD_CONFORMANCE_DIR)"
  echo "conformance: 0 passed, 0 failed, 3 skipped"
  exit 0
fi
out=$(mktemp); trap 'rm -f "$out"' EXIT
status=0 passed=0 failed=0
for t in conformance_parser conformance_shell conformance_dockerignore; do
  [ -f "builder/tests/$t.rs" ] || continue
  cargo test -q --locked -p rbuild-builder --test "$t" -- --nocapture --test-threads 1 >"$out" 2>&1 || { status=1; cat "$out"; }
  while read -r line; do
    echo "  $line"
    p=$(sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
    f=$(sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
    passed=$((passed + p)) failed=$((failed + f))
  done < <(grep -oE '[A-Za-z][A-Za-z. ]*: [0-9]+ passed, [0-9]+ failed' "$out")
done
echo "conformance: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || status=1
exit $status
