#!/usr/bin/env bash
# Installs tandem with every agent it uploads: the client and a local agent in PREFIX/bin,
# the static Linux agents (x86_64, aarch64, 32-bit ARMv7) in PREFIX/lib/tandem, where the
# client finds them, the macOS agents there too where zig is at hand, and the man page.
#
#   scripts/install.sh [PREFIX]      # default: ~/.local
#
# Needs the cross toolchains scripts/build-agent.sh names (Debian: musl-tools
# gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross);
# the macOS agents need what scripts/build-macos.sh names, and are left out, saying so,
# without it.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-$HOME/.local}
# The agents first: a missing toolchain stops the install before anything is placed.
scripts/build-agent.sh --install "$prefix/lib/tandem" >/dev/null
if ! scripts/build-macos.sh --agents "$prefix/lib/tandem" >/dev/null; then
    echo "install: no macOS agents: this tandem cannot upload one to a Mac (install what is named above, or install tandem on the Mac)" >&2
fi
TANDEM_AGENTS=none cargo build --release --quiet --workspace --bins
install -d "$prefix/bin" "$prefix/share/man/man1"
for b in tandem tandem-agent; do
    install -m 755 "target/release/$b" "$prefix/bin/.$b.tmp"
    mv -f "$prefix/bin/.$b.tmp" "$prefix/bin/$b"
done
install -m 644 man/tandem.1 man/tandem-agent.1 "$prefix/share/man/man1/"
echo "installed tandem in $prefix/bin, its agents in $prefix/lib/tandem:"
ls "$prefix/lib/tandem"
