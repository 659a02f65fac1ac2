#!/usr/bin/env bash
# A demo sync on a fresh machine: builds tandem, makes two sample trees in a temp dir,
# pushes, edits both sides, runs bidi and shows a conflict; then, when OpenSSH's sshd is
# installed, pushes over SSH to a throwaway sshd on 127.0.0.1 (its own keys, stopped at
# the end). Touches nothing else: not your ~/.ssh, not your system's sshd.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --workspace --bins
tandem="$PWD/target/debug/tandem"
demo=$(mktemp -d -t tandem-demo.XXXXXX)
export FILESYNC="$demo/state"   # keep the demo's session state out of your own
laptop="$demo/laptop" server="$demo/server"
mkdir -p "$laptop/photos/2026" "$laptop/notes" "$server"
echo "buy milk" > "$laptop/notes/todo.txt"
echo "draft 1" > "$laptop/notes/report.md"
head -c 200000 /dev/urandom > "$laptop/photos/2026/beach.jpg"
ln -s notes/todo.txt "$laptop/todo"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
step "tandem -d laptop -r server -K push        # first sync: the server becomes a replica"
"$tandem" -d "$laptop" -r "$server" -K push || true

step "edit both sides: laptop renames a photo and edits the report; server edits it too and adds a file"
mv "$laptop/photos/2026/beach.jpg" "$laptop/photos/2026/beach-sunset.jpg"
echo "draft 2 (laptop)" > "$laptop/notes/report.md"
sleep 0.02
echo "draft 2 (server)" > "$server/notes/report.md"
echo "from the server" > "$server/notes/server-note.txt"

step "tandem -d laptop -r server -K bidi -n     # dry run: the plan as shell commands"
"$tandem" -d "$laptop" -r "$server" -K bidi -n || true

step "tandem -d laptop -r server -K bidi        # exit status 2: one conflict left for you"
"$tandem" -d "$laptop" -r "$server" -K bidi && status=0 || status=$?
echo "exit status: $status"

step "tandem -d laptop -r server -K bidi --keep-both   # settle it: keep both versions"
"$tandem" -d "$laptop" -r "$server" -K bidi --keep-both || true

step "diff -r laptop server   # identical"
diff -r "$laptop" "$server" && echo "(no differences)"
ls -l "$server/notes"

if ! command -v sshd >/dev/null && [ ! -x /usr/sbin/sshd ]; then
    echo
    echo "To see the same over SSH, install OpenSSH's server (Debian: apt-get install openssh-server)"
    echo "and run this demo again; it starts a throwaway sshd on 127.0.0.1 and stops it after."
    echo "demo trees left in $demo"
    exit 0
fi
step "scripts/test-sshd.sh DIR   # a throwaway sshd on 127.0.0.1 with its own keys"
read -r port pid < <(scripts/test-sshd.sh "$demo/sshd")
trap 'kill "$pid" 2>/dev/null || true' EXIT
echo "sshd (pid $pid) listening on 127.0.0.1:$port"
# The host has no tandem-agent: tandem uploads its static one when it has it.
agent=()
if ! scripts/build-agent.sh >/dev/null 2>&1; then
    echo "(no musl toolchain for the static agent: using this build's agent on the host instead)"
    agent=(--agent-path "$PWD/target/debug/tandem-agent")
fi
# The client's own HOME: the server's host key is known there, nothing else.
export HOME="$demo/home"
mkdir -p "$HOME/.ssh"
cp "$demo/sshd/known_hosts" "$HOME/.ssh/known_hosts"
unset SSH_AUTH_SOCK
mkdir -p "$demo/backup"
remote="$(id -un)@127.0.0.1:$demo/backup"
key="$demo/sshd/id_ed25519"
step "tandem -d laptop -r $remote -P $port -i KEY -K push"
"$tandem" -d "$laptop" -r "$remote" -P "$port" -i "$key" "${agent[@]}" -K push

step "edit a photo, push again: only the change crosses the wire"
printf 'retouched' | dd of="$laptop/photos/2026/beach-sunset.jpg" bs=1 seek=100000 conv=notrunc status=none
"$tandem" -d "$laptop" -r "$remote" -P "$port" -i "$key" "${agent[@]}" -K push

step "diff -r laptop backup   # identical"
diff -r "$laptop" "$demo/backup" && echo "(no differences)"
kill "$pid"
echo
echo "sshd stopped; demo trees left in $demo"
