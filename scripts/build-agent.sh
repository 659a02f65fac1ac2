#!/usr/bin/env bash
# Builds the agent that tandem uploads to hosts without one: static (musl), stripped.
#
#   scripts/build-agent.sh              # -> target/x86_64-unknown-linux-musl/agent/tandem-agent
#   scripts/build-agent.sh --install DIR  # also copies it to DIR/tandem-agent-x86_64-linux
#
# The client looks for an uploadable agent beside itself (tandem-agent-ARCH-linux), in
# ../lib/tandem/, and in this cargo target tree. Needs the musl target and musl-gcc
# (rustup target add x86_64-unknown-linux-musl; Debian: apt-get install musl-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
arch=$(uname -m)
target="$arch-unknown-linux-musl"
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    rustup target add "$target"
fi
if ! command -v musl-gcc >/dev/null; then
    echo "build-agent: musl-gcc is missing (Debian: apt-get install musl-tools)" >&2
    exit 1
fi
cc_var="CC_${target//-/_}"
export "$cc_var"=musl-gcc
cargo build --quiet --profile agent -p tandem-agent --target "$target"
out="target/$target/agent/tandem-agent"
echo "$out"
if [ "${1:-}" = "--install" ]; then
    dir=${2:?usage: build-agent.sh --install DIR}
    install -m 755 "$out" "$dir/tandem-agent-$arch-linux"
    echo "$dir/tandem-agent-$arch-linux"
fi
