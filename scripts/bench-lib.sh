# Timing helpers shared by the benchmark scripts (sourced; needs $tandem, $work, and an
# agent wrapper at $work/agent that records the agent's peak RSS in $work/agent.rss).
# Results land in the arrays T (seconds), B (bytes), R (peak RSS kB), S (rsync + sync).
declare -A T B R S
now() { date +%s.%N; }
# tandem_run NAME SRC DST [args...]: times a push (a bidi run with mode=bidi), keeps bytes
# and peak RSS.
tandem_run() {
    local name=$1 src=$2 dst=$3; shift 3
    sync  # nobody pays for flushing what was written before
    rm -f "$work/agent.rss"
    local t0; t0=$(now)
    /usr/bin/time -f %M -o "$work/client.rss" "$tandem" -d "$src" -r "$dst" -K "${mode:-push}" -y -q --format json \
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
# cmd_run NAME COMMAND...: times any command (the raw ssh pipe).
cmd_run() {
    local name=$1; shift
    sync
    local t0; t0=$(now)
    "$@"
    T[$name]=$(echo "$(now) - $t0" | bc)
}
# median NAME RUNS: T[NAME] (and S[NAME]) become the median of NAME.1 .. NAME.RUNS, with
# the bytes and peak RSS of the first run (one run of a noisy VM proves little).
median() {
    local name=$1 runs=$2 i
    local ts=() ss=()
    for i in $(seq "$runs"); do
        ts+=("${T[$name.$i]}")
        ss+=("${S[$name.$i]:-0}")
    done
    T[$name]=$(printf '%s\n' "${ts[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")
    S[$name]=$(printf '%s\n' "${ss[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")
    B[$name]=${B[$name.1]:-}
    R[$name]=${R[$name.1]:-}
}
