#!/usr/bin/env bash
# The differential suite: every testdata/build/diff-* case built by rbuild (rootless and as
# root) and by Docker's BuildKit builder, compared (integration/tests/it/differential.rs).
# Prints the suite's closing line `differential: N passed, N failed`.
# Usage: scripts/differential.sh [case-name-word,...]   (RBUILD_DIFF_CASES filter)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 0 ] || export RBUILD_DIFF_CASES="$1"
out=$(mktemp); trap 'rm -f "$out"' EXIT
status=0
cargo test -q --locked --workspace --test it differential:: -- --nocapture --test-threads 1 >"$out" 2>&1 || status=$?
grep -E '^differential (FAILED|ok)' "$out" | grep -v '^differential ok' || true
line=$(grep -E '^differential: [0-9]+ passed, [0-9]+ failed' "$out" | tail -n1 || true)
if [ -z "$line" ]; then
  cat "$out"
  echo "differential: 0 passed, 1 failed"
  exit 1
fi
[ "$status" -eq 0 ] || grep -vE '^differential ok' "$out" | tail -n 200
echo "$line"
exit "$status"
