#!/usr/bin/env bash
# The agent of each host system on the same workload, in one run: the x86_64 agent run
# natively, the aarch64 and 32-bit ARM agents under qemu-user (about what a slow ARM board
# costs), beside rsync. An initial push of 10,000 small files (120 MB), a no-op run, and a
# 1% edit of a 64 MiB file, each over the pipe transport. Prints each agent's size too.
#
#   scripts/bench.sh --hosts
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/emulation.sh
cargo build --release --quiet --workspace --bins  # with the agents (see build.rs)
tandem="$PWD/target/release/tandem"
work=$(mktemp -d -t tandem-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export FILESYNC="$work/state"
source scripts/bench-lib.sh
python3 scripts/bench-workload.py --one-big "$work/src"
edit() {  # 1% of the big file, in 64 scattered 10 KiB pieces, fixed seed
    python3 - "$1/big" <<'PY'
import random, sys
rng = random.Random(7)
with open(sys.argv[1], "r+b") as f:
    for _ in range(64):
        f.seek(rng.randrange((64 << 20) - 10240)); f.write(rng.randbytes(10240))
PY
}
printf '%-28s %9s %10s %10s %9s\n' agent "size KiB" "initial s" "no-op s" "1% edit s"
for arch in x86_64 aarch64 armv7; do
    bin="target/release/tandem-agent-$arch-linux"
    printf '#!/bin/sh\nexec /usr/bin/time -f %%M -o "%s" "%s" "$@"\n' "$work/agent.rss" "$PWD/$bin" >"$work/agent"
    chmod +x "$work/agent"
    rm -rf "$work/dst" "$work/state" && mkdir "$work/dst"
    cp -a "$work/src" "$work/src-$arch"
    tandem_run "$arch.init" "$work/src-$arch" "$work/dst"
    tandem_run "$arch.noop" "$work/src-$arch" "$work/dst"
    edit "$work/src-$arch"
    tandem_run "$arch.edit" "$work/src-$arch" "$work/dst"
    how=native; [ "$arch" = x86_64 ] || how="qemu-user"
    printf '%-28s %9s %10.2f %10.2f %9.2f\n' "$arch ($how)" "$(($(stat -c %s "$bin") >> 10))" \
        "${T[$arch.init]}" "${T[$arch.noop]}" "${T[$arch.edit]}"
    rm -rf "$work/src-$arch"
done
rm -rf "$work/dst" && mkdir "$work/dst"
cp -a "$work/src" "$work/src-r"
rsync_run r.init "$work/src-r" "$work/dst"
rsync_run r.noop "$work/src-r" "$work/dst"
edit "$work/src-r"
rsync_run r.edit "$work/src-r" "$work/dst"
printf '%-28s %9s %10.2f %10.2f %9.2f\n' "rsync -a (native)" - "${T[r.init]}" "${T[r.noop]}" "${T[r.edit]}"
