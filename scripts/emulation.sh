#!/usr/bin/env bash
# Lets this Linux machine run aarch64 and 32-bit ARM executables directly, through
# qemu-user and binfmt_misc, as the tests of ARM hosts need. binfmt_misc is kernel state:
# run it every time (as root); it changes nothing when already done.
set -euo pipefail
misc=/proc/sys/fs/binfmt_misc
if [ ! -e "$misc/register" ]; then
    mount -t binfmt_misc binfmt_misc "$misc" || {
        echo "emulation: cannot mount binfmt_misc (needs root)" >&2
        exit 1
    }
fi
for arch in aarch64 arm; do
    conf=/usr/lib/binfmt.d/qemu-$arch.conf
    if [ ! -f "$conf" ]; then
        echo "emulation: $conf is missing (Debian: apt-get install qemu-user-static)" >&2
        exit 1
    fi
    # Two registrations at once: the loser's write fails, but the rule is there.
    [ -e "$misc/qemu-$arch" ] || cat "$conf" >"$misc/register" 2>/dev/null || [ -e "$misc/qemu-$arch" ] || {
        echo "emulation: cannot register qemu-$arch with binfmt_misc" >&2
        exit 1
    }
done
