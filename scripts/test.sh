#!/usr/bin/env bash
# Runs every test: the purity check, unit and property tests, and the integration suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/check-pure.sh
# The agent is a separate package: build it first so the tests run the current one.
cargo build --workspace --bins
cargo test --workspace --all-targets "$@"
