#!/usr/bin/env bash
# Frontend benchmark: parse and plan a generated 2,000-instruction Dockerfile (median of 51 runs
# in-process), next to the dockerfile-parser crate in the same run; then `rbuild plan` end to end
# (process start, read, parse, plan, JSON out) with hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-2000}"
cargo build -q --release -p rbuild -p rbuild-builder --example frontend_bench
target/release/examples/frontend_bench "$n" 51
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
target/release/examples/frontend_bench --write "$dir/Dockerfile" "$n"
command -v hyperfine >/dev/null || { echo "hyperfine missing: apt-get install hyperfine"; exit 0; }
hyperfine -N --warmup 3 --runs 30 "target/release/rbuild plan $dir" 2>&1 | grep -E 'Time|Range'
