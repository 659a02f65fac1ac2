#!/usr/bin/env bash
# The verify benchmark (bench.sh --verify): `tandem verify` against `rsync -a -c -n
# --delete` over SSH to a throwaway sshd on 127.0.0.1, in one run, on the 1 GiB tree (four
# 256 MiB files) and on 100,000 tiny files. Both tools read every file on both sides;
# tandem's agent hashes on its side and only digests cross, rsync sends a checksum per
# file the same way. Each row the median of BENCH_RUNS (default 3) runs, alternating
# tools, page cache warm for both alike (as after a sync). Also checks that verify read
# everything and found nothing wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${BENCH_RUNS:-3}
for tool in rsync /usr/bin/time python3 bc; do
    command -v "$tool" >/dev/null || { echo "bench.sh --verify needs $tool (apt-get install -y rsync time bc)" >&2; exit 1; }
done
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || { echo "bench.sh --verify needs sshd (apt-get install openssh-server)" >&2; exit 1; }
cargo build --release --quiet --workspace --bins
tandem="$PWD/target/release/tandem"
agent="$PWD/target/release/tandem-agent"
work=$(mktemp -d -t tandem-verify.XXXXXX)
sshd_pid=''
cleanup() {
    if [ -n "$sshd_pid" ]; then kill "$sshd_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
export FILESYNC="$work/state"
cat > "$work/agent" <<AGENT
#!/bin/sh
exec /usr/bin/time -f %M -o "$work/agent.rss" "$agent" "\$@"
AGENT
chmod +x "$work/agent"
source scripts/bench-lib.sh

echo "generating the workloads (seed 42) in $work ..."
python3 scripts/bench-workload.py "$work/src"
python3 - "$work/src/tiny" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
for d in range(1000):
    path = f"{root}/g{d // 100:02}/d{d % 100:02}"
    os.makedirs(path, exist_ok=True)
    for i in range(100):
        with open(f"{path}/f{i:02}", "wb") as f:
            f.write(rng.randbytes(rng.randint(0, 199)))
PY

echo "starting a throwaway sshd on 127.0.0.1 ..."
read -r port sshd_pid < <(scripts/test-sshd.sh "$work/sshd")
key="$work/sshd/id_ed25519"
user=$(id -un)
mkdir -p "$work/home/.ssh"
cp "$work/sshd/known_hosts" "$work/home/.ssh/known_hosts"
ssh="ssh -i $key -o UserKnownHostsFile=$work/home/.ssh/known_hosts -o BatchMode=yes -c aes128-gcm@openssh.com -p $port"

# The replicas, pushed once by tandem (its sessions are what verify checks).
for tree in big tiny; do
    mkdir -p "$work/dst/$tree"
    HOME="$work/home" "$tandem" -d "$work/src/$tree" -r "$user@127.0.0.1:$work/dst/$tree" -K push \
        -N "bench-$tree" -P "$port" -i "$key" --agent-path "$agent" -q -y
done

# verify_run NAME TREE: times `tandem verify`, keeps bytes on the wire and peak RSS.
verify_run() {
    local name=$1 tree=$2
    rm -f "$work/agent.rss"
    local t0; t0=$(now)
    HOME="$work/home" /usr/bin/time -f %M -o "$work/client.rss" "$tandem" verify -N "bench-$tree" \
        -P "$port" -i "$key" --agent-path "$work/agent" --format json > "$work/$name.json"
    T[$name]=$(echo "$(now) - $t0" | bc)
    B[$name]=$(python3 - "$work/$name.json" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])][-1]
v = s["verify"]
assert s["exit"] == 0 and v["files_corrupt"] == 0, s
print(s["bytes_sent"] + s["bytes_received"], v["files_verified"], v["bytes_read"])
PY
)
    R[$name]="$(cat "$work/client.rss")/$(cat "$work/agent.rss" 2>/dev/null || echo -)"
}
# check_run NAME TREE: rsync -c -n, which reads and checksums every file on both sides.
check_run() {
    local name=$1 tree=$2
    local t0; t0=$(now)
    /usr/bin/time -f %M -o "$work/client.rss" rsync -a -c -n --delete --stats -e "$ssh" \
        "$work/src/$tree/" "$user@127.0.0.1:$work/dst/$tree/" > "$work/$name.txt"
    T[$name]=$(echo "$(now) - $t0" | bc)
    local sent recv
    sent=$(awk -F': ' '/Total bytes sent/ {gsub(/,/,"",$2); print $2}' "$work/$name.txt")
    recv=$(awk -F': ' '/Total bytes received/ {gsub(/,/,"",$2); print $2}' "$work/$name.txt")
    B[$name]="$((sent + recv))"
    R[$name]="$(cat "$work/client.rss")"
}
for i in $(seq "$runs"); do
    echo "run $i of $runs"
    for tree in big tiny; do
        verify_run "v-$tree.$i" "$tree"
        check_run "c-$tree.$i" "$tree"
    done
done
for n in v-big c-big v-tiny c-tiny; do median "$n" "$runs"; done
echo
echo "(median of $runs runs each; both sides read in full by both tools)"
printf '%-28s %9s %9s %7s   %-36s %-16s %s\n' "verify over SSH" "tandem s" "rsync s" "ratio" "tandem wire B, files, bytes read" "rsync wire B" "peak RSS client/agent, rsync kB"
vrow() {
    printf '%-28s %9.2f %9.2f %6.2fx   %-36s %-16s %s / %s\n' "$1" "${T[$2]}" "${T[$3]}" \
        "$(echo "${T[$2]} / ${T[$3]}" | bc -l)" "${B[$2]}" "${B[$3]}" "${R[$2]}" "${R[$3]}"
}
vrow "1 GiB (4 x 256 MiB)" v-big c-big
vrow "100,000 tiny files" v-tiny c-tiny
