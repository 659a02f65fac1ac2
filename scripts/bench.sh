#!/usr/bin/env bash
# Benchmarks tandem against rsync on the same fixed-seed workload, in one run, and prints
# tables: between local directories (tandem's agent over a pipe, rsync -a), and over SSH
# to a throwaway sshd on 127.0.0.1 (tandem with its own client and with -e ssh, rsync -a
# -e ssh, rsync -az with zstd, and the raw ssh pipe as the limit), with a long-link row
# through a 25 ms-each-way proxy.
#
#   scripts/bench.sh            # both tables (the SSH one when sshd is installed)
#   scripts/bench.sh --local    # only the local table (~3 GB of disk)
#   scripts/bench.sh --ssh      # only the SSH table: each row the median of BENCH_RUNS
#                               # runs (default 3; ~4 GB of disk per run)
#   scripts/bench.sh --huge     # the local table plus one 4 GiB file, measuring peak RSS
#   scripts/bench.sh --continuous  # -C: propagation latency and idle CPU (and Unison's)
#   scripts/bench.sh --scale    # 100k and 1M tiny files, a copy of /usr/share, peak RSS,
#                               # and delta bytes on a scattered 1% change (SCALE_SIZES=...)
#   scripts/bench.sh --verify   # tandem verify against rsync -c -n over SSH: 1 GiB, 100k files
#   scripts/bench.sh --edits    # real edits: a C project's releases pushed over SSH, and a bidi
#                               # run, beside rsync -az (time and bytes)
#   scripts/bench.sh --hosts    # the x86_64 agent beside the aarch64 and 32-bit ARM ones
#                               # under qemu-user, and rsync: initial, no-op, 1% edit
#
# Needs rsync, GNU time and python3 (apt-get install rsync time openssh-server). Page
# cache stays warm for all tools alike; runs alternate tandem / rsync.
set -euo pipefail
cd "$(dirname "$0")/.."
huge=0 local_table=1 ssh_table=1
runs=${BENCH_RUNS:-3}  # the SSH rows: each the median of this many runs
if [ "${1:-}" = --scale ]; then
    exec bash scripts/bench-scale.sh
fi
if [ "${1:-}" = --edits ]; then
    exec bash scripts/bench-edits.sh
fi
if [ "${1:-}" = --verify ]; then
    exec bash scripts/bench-verify.sh
fi
if [ "${1:-}" = --hosts ]; then
    exec bash scripts/bench-hosts.sh
fi
if [ "${1:-}" = --continuous ]; then
    cargo build --release --quiet --workspace --bins
    work=$(mktemp -d -t tandem-bench.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    python3 scripts/bench-continuous.py "$PWD/target/release/tandem" "$PWD/target/release/tandem-agent" "$work"
    exit
fi
case "${1:-}" in
    --huge) huge=1 ssh_table=0 ;;
    --local) ssh_table=0 ;;
    --ssh) local_table=0 ;;
    "") ;;
    *) echo "usage: bench.sh [--local|--ssh|--huge|--continuous|--scale|--hosts|--edits|--verify]" >&2; exit 1 ;;
esac
for tool in rsync /usr/bin/time python3 bc; do
    command -v "$tool" >/dev/null || { echo "bench.sh needs $tool (apt-get install -y rsync time bc)" >&2; exit 1; }
done
if [ "$ssh_table" = 1 ] && ! command -v sshd >/dev/null && [ ! -x /usr/sbin/sshd ]; then
    [ "$local_table" = 1 ] || { echo "bench.sh --ssh needs sshd (apt-get install openssh-server)" >&2; exit 1; }
    echo "(no sshd: skipping the SSH table; apt-get install openssh-server)"
    ssh_table=0
fi
cargo build --release --quiet --workspace --bins
tandem="$PWD/target/release/tandem"
agent="$PWD/target/release/tandem-agent"
work=$(mktemp -d -t tandem-bench.XXXXXX)
sshd_pid='' proxy_pid='' shm=''
cleanup() {
    if [ -n "$shm" ]; then rm -rf "$shm"; fi
    if [ -n "$sshd_pid" ]; then kill "$sshd_pid" 2>/dev/null || true; fi
    if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
export FILESYNC="$work/state"

# An agent wrapper that records the agent's own peak RSS.
cat > "$work/agent" <<EOF
#!/bin/sh
exec /usr/bin/time -f %M -o "$work/agent.rss" "$agent" "\$@"
EOF
chmod +x "$work/agent"

echo "generating the workload (seed 42) in $work ..."
python3 scripts/bench-workload.py "$work/src"

source scripts/bench-lib.sh
row() {
    local label=$1 t=$2 r=$3
    printf '%-34s %8.2f %8.2f %6.2fx %10.2f   %-34s %-28s %s\n' "$label" "${T[$t]}" "${T[$r]}" "$(echo "${T[$t]} / ${T[$r]}" | bc -l)" "${S[$r]}" \
        "$(set -- ${B[$t]}; echo "wire=$1 saved=$2")" "$(set -- ${B[$r]}; echo "wire=$1 $2")" "${R[$t]} kB / ${R[$r]} kB"
}
same() {
    diff -r "$1" "$2" >/dev/null || { echo "tandem's replica $2 differs from $1!" >&2; exit 1; }
}

ssh_bench() {
    echo "starting a throwaway sshd on 127.0.0.1 ..."
    read -r port sshd_pid < <(scripts/test-sshd.sh "$work/sshd")
    local key="$work/sshd/id_ed25519" user
    user=$(id -un)
    mkdir -p "$work/home/.ssh"
    cp "$work/sshd/known_hosts" "$work/home/.ssh/known_hosts"
    # A proxy adding 25 ms each way stands in for a long link (this kernel has no netem).
    local lport=$((port + 1))
    python3 scripts/latency-proxy.py "$lport" 127.0.0.1 "$port" 25 > "$work/proxy.out" &
    proxy_pid=$!
    while ! grep -q ready "$work/proxy.out" 2>/dev/null; do sleep 0.05; done
    printf '[127.0.0.1]:%s %s\n' "$lport" "$(cut -d' ' -f1,2 "$work/sshd/ssh_host_ed25519_key.pub")" >> "$work/home/.ssh/known_hosts"
    # Both clients get the same cipher: the fastest on a CPU with AES.
    local ssh="ssh -i $key -o UserKnownHostsFile=$work/home/.ssh/known_hosts -o BatchMode=yes -c aes128-gcm@openssh.com"
    local remote="$user@127.0.0.1:$work/s"
    ts() { HOME="$work/home" tandem_run "$@" -P "$port" -i "$key"; }
    rs() { rsync_run "$@" -e "$ssh -p $port"; }
    # tandem through the same system ssh (-e), beside its built-in client.
    te() { HOME="$work/home" tandem_run "$@" -P "$port" -e "$ssh"; }
    local i n names
    # A replica in memory, where there is room for one (tmpfs: no disk in the way).
    if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR == 2 {print $4}')" -gt $((2 << 20)) ]; then
        shm=$(mktemp -d /dev/shm/tandem-bench.XXXXXX)
    fi
    mkdir -p "$work/one" && ln -f "$work/src/big/blob0" "$work/one/blob0"
    # Each measurement runs $runs times, alternating tools, into fresh directories (no
    # deletes in between: a directory just deleted slows the next one's inode allocation).
    for i in $(seq "$runs"); do
        echo "SSH, run $i of $runs: 10,000 small files, initial push"
        mkdir -p "$work"/{s,z}/$i/{tsmall,tbig,rsmall,rbig,far-t,far-r,esmall,ebig,far-e}
        ts ssh-small-t.$i "$work/src/small" "$remote/$i/tsmall"
        te ssh-small-e.$i "$work/src/small" "$remote/$i/esmall"
        rs ssh-small-r.$i "$work/src/small" "$remote/$i/rsmall"
        rsync_run ssh-small-z.$i "$work/src/small" "$user@127.0.0.1:$work/z/$i/rsmall" -z --compress-choice=zstd -e "$ssh -p $port"
        echo "SSH, run $i of $runs: 4 x 256 MiB, initial push"
        ts ssh-big-t.$i "$work/src/big" "$remote/$i/tbig"
        te ssh-big-e.$i "$work/src/big" "$remote/$i/ebig"
        rs ssh-big-r.$i "$work/src/big" "$remote/$i/rbig"
        rsync_run ssh-big-z.$i "$work/src/big" "$user@127.0.0.1:$work/z/$i/rbig" -z --compress-choice=zstd -e "$ssh -p $port"
        cmd_run ssh-big-pipe.$i sh -c "cat '$work'/src/big/* | $ssh -p $port $user@127.0.0.1 'cat >/dev/null'"
        # tandem makes what it writes durable before it records it: the disk is a limit too.
        cmd_run disk.$i sh -c "cat '$work'/src/big/* | dd of='$work/disk.$i' bs=1M conv=fsync status=none"
        # The same push into memory (tmpfs) shows what the connection alone allows.
        if [ -n "$shm" ]; then
            mkdir -p "$shm/$i"
            ts ssh-big-shm.$i "$work/src/big" "$user@127.0.0.1:$shm/$i"
            same "$work/src/big" "$shm/$i"
            rm -rf "${shm:?}/$i"
        fi
        echo "SSH, run $i of $runs: no-op re-runs"
        ts ssh-noop-small-t.$i "$work/src/small" "$remote/1/tsmall"
        te ssh-noop-small-e.$i "$work/src/small" "$remote/1/esmall"
        rs ssh-noop-small-r.$i "$work/src/small" "$remote/1/rsmall"
        ts ssh-noop-big-t.$i "$work/src/big" "$remote/1/tbig"
        te ssh-noop-big-e.$i "$work/src/big" "$remote/1/ebig"
        rs ssh-noop-big-r.$i "$work/src/big" "$remote/1/rbig"
        echo "SSH through 25 ms each way, run $i of $runs: one 256 MiB file"
        HOME="$work/home" tandem_run far-t.$i "$work/one" "$remote/$i/far-t" -P "$lport" -i "$key" --transfer-threads 4
        HOME="$work/home" tandem_run far-e.$i "$work/one" "$remote/$i/far-e" -P "$lport" -e "$ssh" --transfer-threads 4
        rsync_run far-r.$i "$work/one" "$remote/$i/far-r" -e "$ssh -p $lport"
        same "$work/src/small" "$work/s/$i/tsmall"
        same "$work/src/big" "$work/s/$i/tbig"
        same "$work/one" "$work/s/$i/far-t"
        same "$work/src/small" "$work/s/$i/esmall"
        same "$work/src/big" "$work/s/$i/ebig"
        same "$work/one" "$work/s/$i/far-e"
    done
    names="ssh-small-t ssh-small-r ssh-small-z ssh-big-t ssh-big-r ssh-big-z ssh-big-pipe disk"
    names+=" ssh-noop-small-t ssh-noop-small-r ssh-noop-big-t ssh-noop-big-r far-t far-r"
    names+=" ssh-small-e ssh-big-e ssh-noop-small-e ssh-noop-big-e far-e"
    if [ -n "$shm" ]; then names+=" ssh-big-shm"; fi
    for n in $names; do median "$n" "$runs"; done

    local big=$((1024 << 20)) pipe_rate t_rate disk_rate
    pipe_rate=$(echo "$big / ${T[ssh-big-pipe]} / 1048576" | bc -l)
    t_rate=$(echo "$big / ${T[ssh-big-t]} / 1048576" | bc -l)
    disk_rate=$(echo "$big / ${T[disk]} / 1048576" | bc -l)
    echo
    echo "(median of $runs runs each)"
    printf '%-34s %8s %8s %7s %10s   %-34s %-28s %s\n' "over SSH (loopback sshd)" "tandem s" "rsync s" "ratio" "rsync+sync" "tandem bytes" "rsync -e ssh bytes" "peak RSS client/agent, rsync"
    row "10,000 small files, initial" ssh-small-t ssh-small-r
    row "  tandem -e ssh" ssh-small-e ssh-small-r
    row "  vs rsync -az (zstd)" ssh-small-t ssh-small-z
    row "4 x 256 MiB, initial" ssh-big-t ssh-big-r
    row "  tandem -e ssh" ssh-big-e ssh-big-r
    row "  vs rsync -az (zstd)" ssh-big-t ssh-big-z
    row "no-op, small files" ssh-noop-small-t ssh-noop-small-r
    row "  tandem -e ssh" ssh-noop-small-e ssh-noop-small-r
    row "no-op, big files" ssh-noop-big-t ssh-noop-big-r
    row "  tandem -e ssh" ssh-noop-big-e ssh-noop-big-r
    row "256 MiB, 25 ms each way, 4 threads" far-t far-r
    row "  tandem -e ssh, 4 ssh processes" far-e far-r
    echo
    printf '4 x 256 MiB: raw ssh pipe %.2f s (%.0f MiB/s); tandem %.0f MiB/s = %.0f%% of the pipe\n' \
        "${T[ssh-big-pipe]}" "$pipe_rate" "$t_rate" "$(echo "100 * $t_rate / $pipe_rate" | bc -l)"
    printf '4 x 256 MiB: disk, written and flushed %.2f s (%.0f MiB/s); tandem = %.0f%% of the slower of pipe and disk\n' \
        "${T[disk]}" "$disk_rate" "$(echo "r = $pipe_rate; if ($disk_rate < r) r = $disk_rate; 100 * $t_rate / r" | bc -l)"
    if [ -n "$shm" ]; then
        printf '4 x 256 MiB into tmpfs (no disk): tandem %.2f s (%.0f MiB/s) = %.0f%% of the pipe\n' \
            "${T[ssh-big-shm]}" "$(echo "$big / ${T[ssh-big-shm]} / 1048576" | bc -l)" \
            "$(echo "100 * ${T[ssh-big-pipe]} / ${T[ssh-big-shm]}" | bc -l)"
        rmdir "$shm"
        shm=''
    fi
    echo "each run (tandem / rsync):"
    for n in ssh-small ssh-big ssh-noop-small ssh-noop-big far; do
        printf '  %-16s' "$n"
        for i in $(seq "$runs"); do printf ' %5.2f/%-5.2f' "${T[$n-t.$i]}" "${T[$n-r.$i]}"; done
        echo
    done
    printf 'long link: tandem --transfer-threads 4 is %.1fx as fast as rsync -e ssh\n' \
        "$(echo "${T[far-r]} / ${T[far-t]}" | bc -l)"
    kill "$proxy_pid" "$sshd_pid" 2>/dev/null || true
    proxy_pid='' sshd_pid=''
}

local_bench() {
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
    same "$work/src/small" "$work/t/small"
    same "$work/src/big" "$work/t/big"

    echo "no-op re-runs keeping ACLs and xattrs (1% of the files have one): 5 each, alternating"
    python3 - "$work/src/small" <<'PY'
import os, sys
for d in range(100):
    os.setxattr(f"{sys.argv[1]}/d{d:02}/f000", "user.note", b"kept")
PY
    # A session of its own keeps them; its first run reads every file's.
    tandem_run acl-first "$work/src/small" "$work/t/small" -N bench-acl --preserve-acls native
    rsync_run acl-first-r "$work/src/small" "$work/r/small" -AX
    for i in 1 2 3 4 5; do
        tandem_run noop-plain-t.$i "$work/src/small" "$work/t/small"
        tandem_run noop-acl-t.$i "$work/src/small" "$work/t/small" -N bench-acl --preserve-acls native
        rsync_run noop-acl-r.$i "$work/src/small" "$work/r/small" -AX
    done
    median noop-plain-t 5
    median noop-acl-t 5
    median noop-acl-r 5

    echo
    printf '%-34s %8s %8s %7s %10s   %-34s %-28s %s\n' "local directories" "tandem s" "rsync s" "ratio" "rsync+sync" "tandem bytes" "rsync bytes" "peak RSS client/agent, rsync"
    row "10,000 small files, initial" small-t small-r
    row "4 x 256 MiB, initial" big-t big-r
    row "1% of a 256 MiB file (rsync -a)" change-t change-r
    row "1% of a 256 MiB file (rsync -a -W-)" change-t change-rd
    row "no-op, small files" noop-small-t noop-small-r
    row "no-op, big files" noop-big-t noop-big-r
    row "no-op, small, ACLs (-A/-AX; median)" noop-acl-t noop-acl-r
    local changed=$((256 << 20)) wire
    wire=$(set -- ${B[change-t]}; echo "$1")
    echo
    echo "1% change: tandem moved $wire bytes on the wire = $(echo "100 * $wire / $changed" | bc -l | cut -c1-5)% of the file"
    printf -- '--preserve-acls native no-op: %.3f s beside %.3f s without = %.2fx (goal <= 1.25x)\n' \
        "${T[noop-acl-t]}" "${T[noop-plain-t]}" "$(echo "${T[noop-acl-t]} / ${T[noop-plain-t]}" | bc -l)"
}

# The SSH table first: the local one changes the workload (the 1% edit).
if [ "$ssh_table" = 1 ]; then ssh_bench; fi
if [ "$local_table" = 1 ]; then local_bench; fi

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
