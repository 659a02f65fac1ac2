#!/usr/bin/env bash
# A demo sync on a fresh machine: builds tandem, makes two sample trees in a temp dir,
# pushes, edits both sides, runs bidi and shows a conflict. Touches nothing else.
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
echo
echo "demo trees left in $demo"
