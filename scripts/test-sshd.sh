#!/usr/bin/env bash
# Starts a throwaway OpenSSH sshd on 127.0.0.1 for tests and the demo, never touching the
# system's sshd or anyone's ~/.ssh.
#
#   scripts/test-sshd.sh DIR [PORT]
#
# DIR gets fresh host keys, a user key (id_ed25519) in authorized_keys, a known_hosts
# line for the server, an sshd_config and a remote home (DIR/remote-home, the HOME of every
# session). The server logs in the current user by key only. Keys already in DIR are kept,
# and DIR/sshd_extra.conf, if there, is added to the sshd_config. It prints "PORT PID" when
# it accepts connections; stop it with `kill PID`. Without PORT a free one is picked.
# DIR/sshd_env, if there, holds more NAME=VALUE words for the sessions' environment (sshd
# takes only its first SetEnv line, so they join HOME's).
set -euo pipefail
dir=${1:?usage: test-sshd.sh DIR [PORT]}
port=${2:-}
sshd=$(command -v sshd || echo /usr/sbin/sshd)
if [ ! -x "$sshd" ]; then
    echo "test-sshd: OpenSSH's sshd is not installed (Debian: apt-get install openssh-server)" >&2
    exit 1
fi
mkdir -p "$dir/remote-home"
dir=$(cd "$dir" && pwd)
for t in ed25519 ecdsa rsa; do
    [ -f "$dir/ssh_host_${t}_key" ] || ssh-keygen -q -t "$t" -N '' -C "test host $t" -f "$dir/ssh_host_${t}_key"
done
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C 'tandem test user' -f "$dir/id_ed25519"
cat "$dir/id_ed25519.pub" >>"$dir/authorized_keys"
# Privilege separation needs this directory when sshd starts as root.
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; fi

start() {
    cat >"$dir/sshd_config" <<EOF
Port $1
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
HostKey $dir/ssh_host_ecdsa_key
HostKey $dir/ssh_host_rsa_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
PrintMotd no
MaxSessions 64
MaxStartups 64
SetEnv HOME=$dir/remote-home $(cat "$dir/sshd_env" 2>/dev/null || true)
EOF
    # A test's own settings (HostCertificate, TrustedUserCAKeys, ...).
    if [ -f "$dir/sshd_extra.conf" ]; then cat "$dir/sshd_extra.conf" >>"$dir/sshd_config"; fi
    "$sshd" -D -e -f "$dir/sshd_config" </dev/null >/dev/null 2>>"$dir/sshd.log" &
    pid=$!
    # Up when the port answers; down if sshd died (port taken): the caller retries.
    for _ in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    kill "$pid" 2>/dev/null
    return 1
}

for attempt in 1 2 3 4 5 6 7 8; do
    try=${port:-$((20000 + RANDOM % 30000))}
    if start "$try"; then
        {
            printf '[127.0.0.1]:%s ' "$try"
            cat "$dir/ssh_host_ed25519_key.pub"
        } >"$dir/known_hosts"
        echo "$try $pid"
        exit 0
    fi
    [ -z "$port" ] || break
done
echo "test-sshd: sshd did not start; see $dir/sshd.log" >&2
tail -5 "$dir/sshd.log" >&2 || true
exit 1
