#!/usr/bin/env bash
# Runs every test: the purity check, unit and property tests, and the integration suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/check-pure.sh
cargo test --workspace --all-targets "$@"
