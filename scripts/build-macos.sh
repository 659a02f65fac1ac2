#!/usr/bin/env bash
# Builds tandem and tandem-agent for macOS (Apple silicon and Intel) on a Linux machine,
# without an Apple SDK: zig links against libSystem (its own stubs) and CoreFoundation
# (scripts/macos-link, a stub of the few calls chrono makes). Nothing here can run the
# results; they are compiled and linked only.
#
#   scripts/build-macos.sh                        # both targets
#   scripts/build-macos.sh aarch64-apple-darwin   # one
#   scripts/build-macos.sh --agents DIR [TARGET...] # only the agents, copied to
#                                                 # DIR/tandem-agent-ARCH-macos (an install)
#
# The client is built with the release profile, the agent with the agent profile
# (stripped). A Linux client uploads these agents to macOS hosts. rustc warns that `xcrun` is missing: expected, there is no SDK. Installs
# nothing: it needs, already installed,
#   zig:            pip install ziglang        (puts `python3 -m ziglang` in place)
#   cargo-zigbuild: cargo install --locked cargo-zigbuild
#   the targets:    rustup target add aarch64-apple-darwin x86_64-apple-darwin
set -euo pipefail
cd "$(dirname "$0")/.."
agents_dir=
if [ "${1:-}" = "--agents" ]; then
    agents_dir=${2:?usage: build-macos.sh --agents DIR [TARGET...]}
    shift 2
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-apple-darwin x86_64-apple-darwin)

missing=0
# cargo-zigbuild finds zig as a `zig` command or as the PyPI package's module.
if ! command -v zig >/dev/null && ! python3 -c 'import ziglang' 2>/dev/null; then
    echo "build-macos: zig is missing: pip install ziglang (or a zig on PATH)" >&2
    missing=1
fi
if ! cargo zigbuild --help >/dev/null 2>&1; then
    echo "build-macos: cargo-zigbuild is missing: cargo install --locked cargo-zigbuild" >&2
    missing=1
fi
installed=$(rustup target list --installed 2>/dev/null || true)
for t in "${targets[@]}"; do
    if ! grep -qx "$t" <<<"$installed"; then
        echo "build-macos: the Rust target $t is missing: rustup target add $t" >&2
        missing=1
    fi
done
[ "$missing" = 0 ] || exit 1

out_root=${CARGO_TARGET_DIR:-target}
built=()
for t in "${targets[@]}"; do
    start=$SECONDS
    # The Linux agents a release client carries are built by scripts/build-agent.sh.
    if [ -z "$agents_dir" ]; then
        TANDEM_AGENTS=none cargo zigbuild --quiet --release --bin tandem --target "$t"
        built+=("$out_root/$t/release/tandem")
    fi
    cargo zigbuild --quiet --profile agent -p tandem-agent --target "$t"
    echo "build-macos: $t built in $((SECONDS - start)) s" >&2
    built+=("$out_root/$t/agent/tandem-agent")
    if [ -n "$agents_dir" ]; then
        mkdir -p "$agents_dir"
        dest="$agents_dir/tandem-agent-${t%%-*}-macos"
        install -m 755 "$out_root/$t/agent/tandem-agent" "$dest.tmp"
        mv -f "$dest.tmp" "$dest"
    fi
done
for f in "${built[@]}"; do
    printf '%s\t%s bytes\n' "$f" "$(stat -c %s "$f")"
done
