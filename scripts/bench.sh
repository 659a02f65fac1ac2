#!/usr/bin/env bash
# Benchmarks tandem (pipe transport: the agent as a child process) against rsync -a on
# the same fixed-seed workload, in one run, and prints a table.
#
#   scripts/bench.sh            # the standard workload (about 1.1 GB of disk)
#   scripts/bench.sh --huge     # also push and re-push one 4 GiB file, measuring peak RSS
#
# Needs rsync and GNU time (apt-get install rsync time). Page cache stays warm for both
# tools alike; runs alternate tandem / rsync.
set -euo pipefail
cd "$(dirname "$0")/.."
huge=0
[ "${1:-}" = "--huge" ] && huge=1
for tool in rsync /usr/bin/time python3; do
    command -v "$tool" >/dev/null || { echo "bench.sh needs $tool (apt-get install -y rsync time)" >&2; exit 1; }
done
cargo build --release --quiet --workspace --bins
tandem="$PWD/target/release/tandem"
agent="$PWD/target/release/tandem-agent"
work=$(mktemp -d -t tandem-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export FILESYNC="$work/state"

# An agent wrapper that records the agent's own peak RSS.
cat > "$work/agent" <<EOF
#!/bin/sh
exec /usr/bin/time -f %M -o "$work/agent.rss" "$agent" "\$@"
EOF
chmod +x "$work/agent"

echo "generating the workload (seed 42) in $work ..."
python3 - "$work/src" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
for d in range(100):
    os.makedirs(f"{root}/small/d{d:02}", exist_ok=True)
    for i in range(100):
        with open(f"{root}/small/d{d:02}/f{i:03}", "wb") as f:
            # Half text-like (compressible), half random, as real trees are.
            n = rng.randint(1024, 16384)
            f.write(rng.randbytes(n) if i % 2 else (b"line %d of a log file\n" % i) * (n // 24 + 1))
os.makedirs(f"{root}/big", exist_ok=True)
for b in range(4):
    with open(f"{root}/big/blob{b}", "wb") as f:
        for _ in range(16):
            f.write(rng.randbytes(16 << 20))
PY

now() { date +%s.%N; }
declare -A T B R S
# tandem_run NAME SRC DST [args...]: times a push, keeps bytes and peak RSS.
tandem_run() {
    local name=$1 src=$2 dst=$3; shift 3
    sync  # nobody pays for flushing what was written before
    local t0; t0=$(now)
    /usr/bin/time -f %M -o "$work/client.rss" "$tandem" -d "$src" -r "$dst" -K push -y -q --format json \
        --agent-path "$work/agent" "$@" > "$work/$name.json"
    T[$name]=$(echo "$(now) - $t0" | bc)
    B[$name]=$(python3 -c "import json,sys; s=[json.loads(l) for l in open(sys.argv[1])][-1]; print(s['bytes_sent']+s['bytes_received'], s['bytes_saved_by_delta'], s['bytes_total'])" "$work/$name.json")
    R[$name]="$(cat "$work/client.rss")/$(cat "$work/agent.rss" 2>/dev/null || echo -)"
}
# rsync_run NAME SRC DST [args...]
rsync_run() {
    local name=$1 src=$2 dst=$3; shift 3
    sync
    local t0; t0=$(now)
    /usr/bin/time -f %M -o "$work/client.rss" rsync -a --stats "$@" "$src/" "$dst/" > "$work/$name.txt"
    T[$name]=$(echo "$(now) - $t0" | bc)
    # tandem makes its writes durable before it records them; rsync never syncs.
    sync
    S[$name]=$(echo "$(now) - $t0" | bc)
    local sent recv lit
    sent=$(awk -F': ' '/Total bytes sent/ {gsub(/,/,"",$2); print $2}' "$work/$name.txt")
    recv=$(awk -F': ' '/Total bytes received/ {gsub(/,/,"",$2); print $2}' "$work/$name.txt")
    lit=$(awk -F': ' '/Literal data/ {gsub(/[, ].*/,"",$2); print $2}' "$work/$name.txt")
    B[$name]="$((sent + recv)) lit=$lit -"
    R[$name]="$(cat "$work/client.rss")/-"
}

mkdir -p "$work"/{t,r,rd}/small "$work"/{t,r}/big
echo "10,000 small files: initial push"
tandem_run small-t "$work/src/small" "$work/t/small"
rsync_run small-r "$work/src/small" "$work/r/small"
echo "4 x 256 MiB: initial push"
tandem_run big-t "$work/src/big" "$work/t/big"
rsync_run big-r "$work/src/big" "$work/r/big"
cp -a "$work/r/big" "$work/rd/big"

echo "1% of one big file changed in scattered 4 KiB blocks"
python3 - "$work/src/big/blob0" <<'PY'
import random, sys
rng = random.Random(7)
size = 256 << 20
with open(sys.argv[1], "r+b") as f:
    for _ in range(size // 100 // 4096):
        f.seek(rng.randrange(0, size - 4096) // 4096 * 4096)
        f.write(rng.randbytes(4096))
PY
tandem_run change-t "$work/src/big" "$work/t/big"
rsync_run change-r "$work/src/big" "$work/r/big"
rsync_run change-rd "$work/src/big" "$work/rd/big" --no-whole-file

echo "no-op re-runs"
tandem_run noop-small-t "$work/src/small" "$work/t/small"
rsync_run noop-small-r "$work/src/small" "$work/r/small"
tandem_run noop-big-t "$work/src/big" "$work/t/big"
rsync_run noop-big-r "$work/src/big" "$work/r/big"

diff -r "$work/src/small" "$work/t/small" >/dev/null && diff -r "$work/src/big" "$work/t/big" >/dev/null \
    || { echo "tandem's replica differs from the source!" >&2; exit 1; }

row() {
    local label=$1 t=$2 r=$3
    printf '%-34s %8.2f %8.2f %6.2fx %10.2f   %-34s %-28s %s\n' "$label" "${T[$t]}" "${T[$r]}" "$(echo "${T[$t]} / ${T[$r]}" | bc -l)" "${S[$r]}" \
        "$(set -- ${B[$t]}; echo "wire=$1 saved=$2")" "$(set -- ${B[$r]}; echo "wire=$1 $2")" "${R[$t]} kB / ${R[$r]} kB"
}
echo
printf '%-34s %8s %8s %7s %10s   %-34s %-28s %s\n' "workload" "tandem s" "rsync s" "ratio" "rsync+sync" "tandem bytes" "rsync bytes" "peak RSS client/agent, rsync"
row "10,000 small files, initial" small-t small-r
row "4 x 256 MiB, initial" big-t big-r
row "1% of a 256 MiB file (rsync -a)" change-t change-r
row "1% of a 256 MiB file (rsync -a -W-)" change-t change-rd
row "no-op, small files" noop-small-t noop-small-r
row "no-op, big files" noop-big-t noop-big-r
changed=$(python3 -c "print(256*1024*1024)")
wire=$(set -- ${B[change-t]}; echo "$1")
echo
echo "1% change: tandem moved $wire bytes on the wire = $(echo "100 * $wire / $changed" | bc -l | cut -c1-5)% of the file"

if [ "$huge" = 1 ]; then
    echo
    echo "4 GiB file: peak RSS"
    rm -rf "$work/src" "$work/t" "$work/r" "$work/rd"  # room for a 4 GiB replica and its temp file
    mkdir -p "$work/huge-src" "$work/huge-dst"
    head -c 4G /dev/urandom > "$work/huge-src/huge.bin"
    tandem_run huge-initial "$work/huge-src" "$work/huge-dst"
    printf 'x%.0s' $(seq 1 4096) | dd of="$work/huge-src/huge.bin" bs=4096 seek=500000 conv=notrunc status=none
    tandem_run huge-delta "$work/huge-src" "$work/huge-dst"
    echo "initial push: ${T[huge-initial]} s, peak RSS client/agent ${R[huge-initial]} kB"
    echo "re-push after a 4 KiB change: ${T[huge-delta]} s, bytes ${B[huge-delta]}, peak RSS ${R[huge-delta]} kB"
    cmp "$work/huge-src/huge.bin" "$work/huge-dst/huge.bin" && echo "4 GiB replica identical"
fi
