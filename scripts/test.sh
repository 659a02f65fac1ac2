#!/usr/bin/env bash
# Runs every test: the layout rules (scripts/check-layout.sh), unit and property tests, and the integration suite
# (which starts real OpenSSH sshd servers on 127.0.0.1). Ends with the count of tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/check-layout.sh
# The agent is a separate package: build it first so the tests run the current one; the
# static agent is what the SSH tests upload to a host without one.
cargo build --workspace --bins
scripts/build-agent.sh >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log" || status=$?
# The core suite (push, pull, bidi, conflicts, deltas, metadata, safety) again with the
# aarch64 agent under qemu-user over the pipe transport, roots that fold names too:
# nothing may be missing on ARM.
if [ $# -eq 0 ]; then
    scripts/emulation.sh
    TANDEM_TEST_AGENT="$PWD/${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-musl/agent/tandem-agent" \
        cargo test --test it -- local:: engine:: safety:: transports:: metadata:: fidelity:: casefold:: foldfs:: 2>&1 |
        sed 's/^test result:/test result (aarch64 agent):/' | tee -a "$log" || status=$?
fi
awk '/^test result/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) g += $i } }
     END { printf "tests: %d passed, %d failed, %d ignored (%d run)\n", p, f, g, p + f }' "$log"
exit "$status"
