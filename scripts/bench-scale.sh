#!/usr/bin/env bash
# The scale benchmark (bench.sh --scale): tandem against rsync -a between local
# directories, in one run, on trees of many tiny files (fixed seed), on a copy of
# /usr/share, and on a 64 MiB file with 1% changed in scattered 4 KiB blocks (bytes on
# the wire, signature included, against rsync --stats). Prints times, peak RSS of
# tandem's client and agent, and the per-entry memory slope between the sizes.
#
#   SCALE_SIZES="100000 1000000" scripts/bench.sh --scale   # the default sizes
#
# Replicas are never deleted and recreated during the run: ext4 slows down creating
# inodes right after many were freed, which would penalize whichever tool runs next.
# For the same reason an initial push is timed twice per tool, in the order tandem,
# rsync, rsync, tandem, each into a fresh directory, and the faster of the two is kept:
# whichever tool runs first on a filesystem that freed many inodes a few minutes before
# pays for it. The 100k push is also timed into tmpfs (/dev/shm), where only the tools'
# own work counts.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${SCALE_SIZES:-100000 1000000}
for tool in rsync /usr/bin/time python3 bc; do
    command -v "$tool" >/dev/null || { echo "bench.sh --scale needs $tool (apt-get install -y rsync time bc)" >&2; exit 1; }
done
cargo build --release --quiet --workspace --bins
tandem="$PWD/target/release/tandem"
agent="$PWD/target/release/tandem-agent"
work=$(mktemp -d -t tandem-scale.XXXXXX)
trap 'rm -rf "$work"' EXIT
export FILESYNC="$work/state"
cat > "$work/agent" <<AGENT
#!/bin/sh
exec /usr/bin/time -f %M -o "$work/agent.rss" "$agent" "\$@"
AGENT
chmod +x "$work/agent"
source scripts/bench-lib.sh

# tiny N DIR: N files of 0-199 random bytes, 100 per directory, 100 directories per group.
tiny() {
    python3 - "$1" "$2" <<'PY'
import os, random, sys
n, root = int(sys.argv[1]), sys.argv[2]
rng = random.Random(42)
for d in range(n // 100):
    path = f"{root}/g{d // 100:04}/d{d % 100:02}"
    os.makedirs(path, exist_ok=True)
    for i in range(100):
        with open(f"{path}/f{i:02}", "wb") as f:
            f.write(rng.randbytes(rng.randint(0, 199)))
PY
}

line() {  # line LABEL TANDEM RSYNC
    printf '%-36s %9.2f %9.2f %6.2fx %9.2f   %s kB / %s kB\n' "$1" "${T[$2]}" "${T[$3]}" \
        "$(echo "${T[$2]} / ${T[$3]}" | bc -l)" "${S[$3]}" "${R[$2]}" "${R[$3]%/-}"
}
# abba NAME SRC TDST RDST [rsync args...]: initial pushes into TDST.1, RDST.1, RDST.2,
# TDST.2 in that order; NAME-t and NAME-r keep the faster run of each tool.
abba() {
    local name=$1 src=$2 t=$3 r=$4; shift 4
    mkdir -p "$t.1" "$t.2" "$r.1" "$r.2"
    tandem_run "$name-t.1" "$src" "$t.1"
    rsync_run "$name-r.1" "$src" "$r.1" "$@"
    rsync_run "$name-r.2" "$src" "$r.2" "$@"
    tandem_run "$name-t.2" "$src" "$t.2"
    median "$name-t" 2
    median "$name-r" 2
    echo "  $name: tandem ${T[$name-t.1]} / ${T[$name-t.2]} s, rsync ${T[$name-r.1]} / ${T[$name-r.2]} s"
}

rows=()
declare -A entries
for n in $sizes; do
    echo "generating $n tiny files (seed 42) ..."
    tiny "$n" "$work/tiny$n"
    entries[$n]=$(find "$work/tiny$n" | wc -l)
    abba "init$n" "$work/tiny$n" "$work/t$n" "$work/r$n"
    # A no-op is timed warm, as a user re-running a sync meets it: the initial pushes just
    # wrote millions of inodes, which pushed the source's out of the cache. The first
    # round of each tool warms it; the second is kept.
    for _ in 1 2; do
        tandem_run "noop$n-t" "$work/tiny$n" "$work/t$n.1"
        rsync_run "noop$n-r" "$work/tiny$n" "$work/r$n.1"
    done
    diff -r "$work/tiny$n" "$work/t$n.1" >/dev/null || { echo "replica of $n files differs!" >&2; exit 1; }
    rows+=("$n tiny files, initial push|init$n-t|init$n-r" "$n tiny files, no-op|noop$n-t|noop$n-r")
done

first=${sizes%% *}
shm=/dev/shm/tandem-scale.$$
if [ -d /dev/shm ] && mkdir "$shm" 2>/dev/null; then
    trap 'rm -rf "$work" "$shm"' EXIT
    cp -a "$work/tiny$first" "$shm/src"
    abba shm "$shm/src" "$shm/t" "$shm/r"
    rows+=("$first tiny, initial push, tmpfs|shm-t|shm-r")
fi

if [ -d /usr/share ]; then
    echo "/usr/share: $(find /usr/share | wc -l) entries, $(du -sh /usr/share | cut -f1)"
    tar cf - /usr/share 2>/dev/null | cat >/dev/null  # warm the page cache for both
    abba share /usr/share "$work/tshare" "$work/rshare" -H
    for _ in 1 2; do  # warm, as above
        tandem_run share-noop-t /usr/share "$work/tshare.1"
        rsync_run share-noop-r /usr/share "$work/rshare.1" -H
    done
    differ=$(rsync -n -i -aH --checksum /usr/share/ "$work/tshare.1/" | wc -l)
    rows+=("/usr/share, initial push (-aH)|share-t|share-r" "/usr/share, no-op (-aH)|share-noop-t|share-noop-r")
fi

echo "64 MiB file, 1% changed in scattered 4 KiB blocks ..."
mkdir -p "$work/dsrc" "$work/dt" "$work/dr"
python3 - "$work/dsrc/blob" <<'PY'
import random, sys
rng = random.Random(42)
with open(sys.argv[1], "wb") as f:
    f.write(rng.randbytes(64 << 20))
PY
cp "$work/dsrc/blob" "$work/dt/blob"
cp "$work/dsrc/blob" "$work/dr/blob"
python3 - "$work/dsrc/blob" <<'PY'
import random, sys
rng = random.Random(7)
size = 64 << 20
with open(sys.argv[1], "r+b") as f:
    for _ in range(size // 100 // 4096):
        f.seek(rng.randrange(0, size // 4096) * 4096)
        f.write(rng.randbytes(4096))
PY
touch -d '2001-01-01' "$work/dt/blob" "$work/dr/blob"
tandem_run delta-t "$work/dsrc" "$work/dt" --compress none
rsync_run delta-r "$work/dsrc" "$work/dr" -I --no-whole-file
cmp "$work/dsrc/blob" "$work/dt/blob"

echo
echo "(an initial push: the faster of two runs per tool, in the order tandem, rsync, rsync, tandem)"
printf '%-36s %9s %9s %7s %9s   %s\n' "local directories" "tandem s" "rsync s" "ratio" "rsync+sync" "peak RSS tandem client/agent, rsync"
for r in "${rows[@]}"; do
    IFS='|' read -r label t rs <<<"$r"
    line "$label" "$t" "$rs"
done
if [ -n "${differ:-}" ]; then
    echo "/usr/share replica: $differ entries differ from the source (rsync -n -i --checksum)"
fi
set -- $sizes
if [ $# -ge 2 ]; then
    a=$1 b=${!#}
    for kind in init noop; do
        ca=${R[$kind$a-t]%/*} cb=${R[$kind$b-t]%/*} aa=${R[$kind$a-t]#*/} ab=${R[$kind$b-t]#*/}
        n=$((entries[$b] - entries[$a]))
        echo "peak RSS per entry, $kind, slope $a -> $b files: client $(((cb - ca) * 1024 / n)) B, agent $(((ab - aa) * 1024 / n)) B"
    done
fi
tw=$(set -- ${B[delta-t]}; echo "$1") rw=$(set -- ${B[delta-r]}; echo "$1")
echo "1% scattered change of 64 MiB: tandem $tw bytes on the wire, rsync -I --no-whole-file $rw (ratio $(echo "$tw / $rw" | bc -l | cut -c1-5))"
