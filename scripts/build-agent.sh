#!/usr/bin/env bash
# Builds the static agents that tandem uploads to hosts without one, one per Linux system
# it serves: x86_64 and aarch64 (musl), and 32-bit ARMv7 (glibc, linked statically: no
# musl target for it on the toolchain server). Stripped, so the first upload stays small.
#
#   scripts/build-agent.sh [ARCH...]              # ARCH: x86_64 aarch64 armv7 (default: all)
#   scripts/build-agent.sh --install DIR [ARCH...] # also copies each to DIR/tandem-agent-ARCH-linux
#
# Prints the path of each agent built. The client finds them beside itself
# (tandem-agent-ARCH-linux), in ../lib/tandem/, and in this cargo target tree
# (target/TRIPLE/agent/tandem-agent). A missing toolchain fails naming what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
install_dir=
if [ "${1:-}" = "--install" ]; then
    install_dir=${2:?usage: build-agent.sh --install DIR [ARCH...]}
    shift 2
fi
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(x86_64 aarch64 armv7)
host=$(uname -m)

# target ARCH: sets triple, cc (the C compiler for zstd and mimalloc, which also links)
# and pkg (the Debian packages that provide it).
target() {
    case $1 in
    x86_64) triple=x86_64-unknown-linux-musl cc=musl-gcc pkg=musl-tools ;;
    aarch64) triple=aarch64-unknown-linux-musl cc=aarch64-linux-gnu-gcc pkg="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
    armv7) triple=armv7-unknown-linux-gnueabihf cc=arm-linux-gnueabihf-gcc pkg="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" ;;
    *)
        echo "build-agent: no agent for '$1' (known: x86_64 aarch64 armv7)" >&2
        exit 2
        ;;
    esac
    # On a host of that architecture its own musl-gcc does (an aarch64 builder, say).
    if [ "$1" = "$host" ] && [ "$1" != x86_64 ]; then cc=musl-gcc pkg=musl-tools; fi
}

missing=()
for arch in "${archs[@]}"; do
    target "$arch"
    command -v "$cc" >/dev/null || missing+=("the $arch agent needs $cc (Debian: apt-get install $pkg)")
done
if [ ${#missing[@]} -gt 0 ]; then
    printf 'build-agent: %s\n' "${missing[@]}" >&2
    exit 1
fi

for arch in "${archs[@]}"; do
    target "$arch"
    if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
        rustup target add "$triple" >&2
    fi
    settings=("CC_${triple//-/_}=$cc")
    # A cross target links with its gcc, statically whatever the environment's RUSTFLAGS
    # (they would replace, not extend, these; with --target they reach only the agent).
    # musl-gcc must not link: Rust links musl itself, and static-pie through musl-gcc crashes.
    if [ "$cc" != musl-gcc ]; then
        upper=$(echo "${triple//-/_}" | tr a-z A-Z)
        settings+=("CARGO_TARGET_${upper}_LINKER=$cc" RUSTFLAGS="-C target-feature=+crt-static")
    fi
    env "${settings[@]}" cargo build --quiet --profile agent -p tandem-agent --target "$triple"
    out="${CARGO_TARGET_DIR:-target}/$triple/agent/tandem-agent"
    echo "$out"
    if [ -n "$install_dir" ]; then
        mkdir -p "$install_dir"
        # Temp name and rename: a client uploading from DIR never reads half a file.
        install -m 755 "$out" "$install_dir/.tandem-agent-$arch-linux.tmp"
        mv -f "$install_dir/.tandem-agent-$arch-linux.tmp" "$install_dir/tandem-agent-$arch-linux"
        echo "$install_dir/tandem-agent-$arch-linux"
    fi
done
