#!/usr/bin/env bash
# Real edits over SSH: the release history of a real C project (OpenSSL, as the
# openssl-src crate ships it: ~3,500 files, 50 MB), each release unpacked over one working
# tree so unchanged files keep their mtimes, pushed by tandem and by `rsync -az -e ssh` to a
# throwaway sshd on 127.0.0.1, side by side in one run: time and bytes on the wire (sent +
# received) of each update. Then a bidi run where each side got half of one release's
# changes, beside rsync -azu one way and then the other.
#
#   scripts/bench.sh --edits
#
# Fetches the releases from crates.io once (into ${BENCH_CACHE:-~/.cache/tandem-bench}).
set -euo pipefail
cd "$(dirname "$0")/.."
releases=(300.3.0+3.3.0 300.3.1+3.3.1 300.3.2+3.3.2 300.4.0+3.4.0 300.5.0+3.5.0)
bidi_base=300.3.2+3.3.2 bidi_next=300.4.0+3.4.0
cache=${BENCH_CACHE:-$HOME/.cache/tandem-bench}
rel() { python3 scripts/bench-releases.py "$@"; }
rel fetch "$cache" openssl-src "${releases[@]}"
cargo build --release --quiet --workspace --bins
tandem="$PWD/target/release/tandem"
work=$(mktemp -d -t tandem-bench.XXXXXX)
sshd_pid=''
trap '[ -z "$sshd_pid" ] || kill "$sshd_pid" 2>/dev/null; rm -rf "$work"' EXIT
export FILESYNC="$work/state"
source scripts/bench-lib.sh
printf '#!/bin/sh\nexec /usr/bin/time -f %%M -o "%s" "%s" "$@"\n' "$work/agent.rss" "$PWD/target/release/tandem-agent" >"$work/agent"
chmod +x "$work/agent"

read -r port sshd_pid < <(scripts/test-sshd.sh "$work/sshd")
key="$work/sshd/id_ed25519" user=$(id -un)
mkdir -p "$work/home/.ssh" && cp "$work/sshd/known_hosts" "$work/home/.ssh/known_hosts"
ssh="ssh -i $key -o UserKnownHostsFile=$work/home/.ssh/known_hosts -o BatchMode=yes -c aes128-gcm@openssh.com -p $port"
ts() { HOME="$work/home" tandem_run "$@" -P "$port" -i "$key"; }
rz() { rsync_run "$@" -z -e "$ssh"; }
far="$user@127.0.0.1:$work"
mkdir -p "$work/far-t" "$work/far-r"

printf '%-30s %6s %9s %9s %7s %12s %12s %7s\n' "release (files changed)" "" "tandem s" "rsync s" ratio "tandem B" "rsync B" ratio
line() {  # line LABEL T R
    local bt br
    bt=$(set -- ${B[$2]}; echo "$1") br=$(set -- ${B[$3]}; echo "$1")
    printf '%-30s %6s %9.2f %9.2f %6.2fx %12d %12d %6.2fx\n' "$1" "" "${T[$2]}" "${T[$3]}" \
        "$(echo "${T[$2]} / ${T[$3]}" | bc -l)" "$bt" "$br" "$(echo "$bt / $br" | bc -l)"
}
rel unpack "$cache" openssl-src "${releases[0]}" "$work/tree"
ts init-t "$work/tree" "$far/far-t"
rz init-r "$work/tree" "$far/far-r"
line "${releases[0]#*+} (initial)" init-t init-r
total_t=0 total_r=0 bytes_t=0 bytes_r=0
for v in "${releases[@]:1}"; do
    rel unpack "$cache" openssl-src "$v" "$work/next"
    n=$(rel count "$work/next" "$work/tree")
    rel overlay "$work/next" "$work/tree"
    ts "up-t-$v" "$work/tree" "$far/far-t"
    rz "up-r-$v" "$work/tree" "$far/far-r"
    line "→ ${v#*+} ($n)" "up-t-$v" "up-r-$v"
    diff -r "$work/tree" "$work/far-t" >/dev/null || { echo "tandem's replica differs at $v" >&2; exit 1; }
    total_t=$(echo "$total_t + ${T[up-t-$v]}" | bc) total_r=$(echo "$total_r + ${T[up-r-$v]}" | bc)
    bytes_t=$((bytes_t + $(set -- ${B[up-t-$v]}; echo "$1"))) bytes_r=$((bytes_r + $(set -- ${B[up-r-$v]}; echo "$1")))
done
printf '%-30s %6s %9.2f %9.2f %6.2fx %12d %12d %6.2fx\n' "updates, all" "" "$total_t" "$total_r" \
    "$(echo "$total_t / $total_r" | bc -l)" "$bytes_t" "$bytes_r" "$(echo "$bytes_t / $bytes_r" | bc -l)"

# The fixed cost of a run: a no-op push, step by step, beside the login alone.
ts noop-t "$work/tree" "$far/far-t"
cmd_run ssh-true $ssh "$user@127.0.0.1" true
python3 - "$work/noop-t.json" "${T[noop-t]}" "${T[ssh-true]}" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])][-1]
steps = "  ".join(f"{n} {t:.3f}" for n, t in s["phases_s"])
print(f"no-op push: {float(sys.argv[2]):.2f} s ({steps}); ssh host true: {float(sys.argv[3]):.2f} s")
PY

# Bidi: both sides at one release, then each gets half of the next one's changes.
rel unpack "$cache" openssl-src "$bidi_base" "$work/a-t"
rel unpack "$cache" openssl-src "$bidi_next" "$work/next"
cp -a "$work/a-t" "$work/a-r"
mkdir -p "$work/b-t" "$work/b-r"
ts bidi-init "$work/a-t" "$far/b-t"
cp -a "$work/a-r/." "$work/b-r/"
n=$(rel count "$work/next" "$work/a-t")
rel split "$work/next" "$work/a-t" "$work/b-t"
rel split "$work/next" "$work/a-r" "$work/b-r"
mode=bidi ts bidi-t "$work/a-t" "$far/b-t"
rz bidi-r1 "$work/a-r" "$far/b-r" -u
rz bidi-r2 "$far/b-r" "$work/a-r" -u
T[bidi-r]=$(echo "${T[bidi-r1]} + ${T[bidi-r2]}" | bc)
B[bidi-r]=$(($(set -- ${B[bidi-r1]}; echo "$1") + $(set -- ${B[bidi-r2]}; echo "$1")))
line "bidi, ${bidi_next#*+} split ($n)" bidi-t bidi-r
diff -r "$work/a-t" "$work/b-t" >/dev/null || { echo "tandem's bidi sides differ" >&2; exit 1; }
echo "(bytes: sent + received as each tool counts them; rsync -az negotiates zstd here; bidi's rsync is -azu one way, then the other)"
