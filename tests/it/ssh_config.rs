//! `~/.ssh/config` as users write it, against the real test sshd: ProxyCommand, Match
//! blocks and Include, HostKeyAlias, several known_hosts files, IdentitiesOnly,
//! IdentityAgent and AddKeysToAgent, and settings refused by name.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::sshd::{ssh_fixture, user, SshFixture};
use crate::util::*;

#[track_caller]
fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{r:?}");
}

/// `tandem -d a -r ALIAS:b -K push --agent-path AGENT EXTRA...`: nothing but the config
/// says where ALIAS is and how to log in.
fn push(s: &SshFixture, alias: &str, extra: &[&str]) -> Run {
    let mut c = s.alias_command(alias, "push");
    c.arg("--agent-path").arg(agent_path()).args(extra);
    output(c.output().unwrap())
}

fn config(s: &SshFixture, text: &str) {
    std::fs::write(s.home.join(".ssh/config"), text).unwrap();
}

/// A ProxyCommand that relays stdin and stdout to HOST PORT (as `nc` or `ssh -W` would).
const RELAY: &str = r#"
import socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while True:
        b = sys.stdin.buffer.raw.read(65536)
        if not b:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(b)
threading.Thread(target=up, daemon=True).start()
while True:
    b = s.recv(65536)
    if not b:
        break
    sys.stdout.buffer.write(b)
    sys.stdout.buffer.flush()
"#;

#[test]
fn a_proxy_command_is_the_way_in_and_never_bypassed() {
    let s = ssh_fixture();
    let relay = s.home.join("relay.py");
    std::fs::write(&relay, RELAY).unwrap();
    write(s.f.a.join("f"), "through the command\n");
    // HostName and Port lead nowhere: the command is the only way in. %h and %p are
    // what it is given, the real port set apart.
    let config = |proxy: &str, port: u16| {
        format!(
            "Host viaproxy\n  HostName 127.0.0.1\n  Port {port}\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n  ProxyCommand {proxy}\n",
            user(),
            s.sshd.key().display(),
            s.home.join(".ssh/known_hosts").display(),
        )
    };
    // The known_hosts entry is for [127.0.0.1]:PORT: the proxied host must be known
    // under the same name and port, so Port is the real one and the relay gets it by %p.
    let via = format!("python3 {} %h %p", relay.display());
    std::fs::write(s.home.join(".ssh/config"), config(&via, s.sshd.port)).unwrap();
    let r = push(&s, "viaproxy", &[]);
    ok(&r);
    assert_same_tree(&s.f.a, &s.f.b);
    // A command that cannot connect fails the run: nothing is dialled directly, though
    // HostName and Port lead straight to the sshd.
    write(s.f.a.join("g"), "not sent\n");
    std::fs::write(
        s.home.join(".ssh/config"),
        config("/bin/false %h %p", s.sshd.port),
    )
    .unwrap();
    let before = snapshot(&s.f.b);
    let r = push(&s, "viaproxy", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("ProxyCommand"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
    // A relay to the real port while Port is dead: the command alone decides where.
    let fixed = format!("python3 {} 127.0.0.1 {}", relay.display(), s.sshd.port);
    std::fs::write(s.home.join(".ssh/config"), config(&fixed, 1)).unwrap();
    // Known under the dead port's name now: accept it as new.
    ok(&push(&s, "viaproxy", &["--accept-new-host-key"]));
    assert_same_tree(&s.f.a, &s.f.b);
    // `ProxyCommand none` is ssh's way to say: connect directly.
    write(s.f.a.join("h"), "direct\n");
    std::fs::write(s.home.join(".ssh/config"), config("none", s.sshd.port)).unwrap();
    ok(&push(&s, "viaproxy", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
}

#[test]
fn match_blocks_and_included_files_set_the_port_and_the_key() {
    let s = ssh_fixture();
    write(s.f.a.join("f"), "matched\n");
    // `other` is caught by the first Match (a dead port) before the included one, which
    // tests the HostName and User set above it and gives the real port and the key. The
    // Include sits in `Host *`: under the Match it would be read for `other` only.
    config(
        &s,
        &format!(
            "Host matched other\n  HostName 127.0.0.1\n  User {u}\nMatch originalhost other\n  Port 1\nHost *\n  Include conf.d/*.conf\n  Port 2\n  IdentityFile /nonexistent\n",
            u = user()
        ),
    );
    write(
        s.home.join(".ssh/conf.d/50-key.conf"),
        &format!(
            "Match host 127.0.0.1 user {u}\n  Port {p}\n  IdentityFile {k}\n",
            u = user(),
            p = s.sshd.port,
            k = s.sshd.key().display()
        ),
    );
    ok(&push(&s, "matched", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
    write(s.f.a.join("g"), "not sent\n");
    let before = snapshot(&s.f.b);
    let r = push(&s, "other", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("127.0.0.1:1"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
    // The issue's case: Host other (its own port) before a Match for another host.
    config(
        &s,
        &format!(
            "Host other\n  HostName 127.0.0.1\n  Port {p}\n  User {u}\n  IdentityFile {k}\nMatch host matched\n  Port 1\n",
            u = user(),
            p = s.sshd.port,
            k = s.sshd.key().display()
        ),
    );
    ok(&push(&s, "other", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
}

#[test]
fn match_exec_runs_its_command_to_decide() {
    let s = ssh_fixture();
    write(s.f.a.join("f"), "exec\n");
    let flag = s.home.join("on-the-vpn");
    config(
        &s,
        &format!(
            "Host box\n  HostName 127.0.0.1\n  User {u}\n  IdentityFile {k}\nMatch exec \"test -e {f} && test %n = box\"\n  Port {p}\nHost *\n  Port 1\n",
            u = user(),
            p = s.sshd.port,
            k = s.sshd.key().display(),
            f = flag.display()
        ),
    );
    let r = push(&s, "box", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("127.0.0.1:1"), "{r:?}");
    write(flag, "");
    ok(&push(&s, "box", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
}

#[test]
fn settings_that_would_change_the_connection_are_refused_by_name() {
    let s = ssh_fixture();
    write(s.f.a.join("f"), "never sent\n");
    let before = snapshot(&s.f.b);
    for (line, named) in [
        ("CanonicalizeHostname yes", "CanonicalizeHostname yes"),
        ("BindAddress 127.0.0.2", "BindAddress"),
        ("Match localnetwork 127.0.0.0/8", "Match localnetwork"),
    ] {
        config(
            &s,
            &format!(
                "Host box\n  HostName 127.0.0.1\n  Port {p}\n  User {u}\n  IdentityFile {k}\n{line}\n",
                u = user(),
                p = s.sshd.port,
                k = s.sshd.key().display()
            ),
        );
        let r = push(&s, "box", &[]);
        assert_eq!(r.code, 32, "{line}: {r:?}");
        assert!(
            r.stderr.contains(named) && r.stderr.contains("-e ssh") && r.stderr.contains("line 6"),
            "{line}: {r:?}"
        );
        assert_unchanged(&s.f.b, &before);
    }
}

#[test]
fn host_key_alias_and_global_known_hosts_files_are_where_keys_are_looked_up() {
    let s = ssh_fixture();
    write(s.f.a.join("f"), "alias\n");
    let host_key = std::fs::read_to_string(s.sshd.path("ssh_host_ed25519_key.pub")).unwrap();
    std::fs::write(
        s.home.join(".ssh/known_hosts"),
        format!("backup-box {host_key}"),
    )
    .unwrap();
    let base = format!(
        "Host box\n  HostName 127.0.0.1\n  Port {p}\n  User {u}\n  IdentityFile {k}\n",
        u = user(),
        p = s.sshd.port,
        k = s.sshd.key().display()
    );
    // Recorded under the alias only: known with HostKeyAlias, unknown without.
    let r = push(&s, "box", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("not known"), "{r:?}");
    config(&s, &format!("{base}  HostKeyAlias backup-box\n"));
    ok(&push(&s, "box", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
    // Known through a global file; a key learned goes to the first user file, hashed with
    // HashKnownHosts, and the global file is never written.
    let global = s.home.join("ssh_known_hosts");
    std::fs::write(&global, s.sshd.known_hosts_line()).unwrap();
    let (user_a, user_b) = (s.home.join("kh-a"), s.home.join("kh-b"));
    config(
        &s,
        &format!(
            "{base}  UserKnownHostsFile {} {}\n  GlobalKnownHostsFile {}\n",
            user_a.display(),
            user_b.display(),
            global.display()
        ),
    );
    write(s.f.a.join("g"), "global\n");
    ok(&push(&s, "box", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
    assert!(!user_a.exists() && !user_b.exists());
    config(
        &s,
        &format!(
            "{base}  UserKnownHostsFile {} {}\n  GlobalKnownHostsFile none\n  HashKnownHosts yes\n",
            user_a.display(),
            user_b.display(),
        ),
    );
    write(s.f.a.join("h"), "learned\n");
    ok(&push(&s, "box", &["--accept-new-host-key"]));
    assert_same_tree(&s.f.a, &s.f.b);
    let learned = std::fs::read_to_string(&user_a).unwrap();
    assert!(
        learned.starts_with("|1|") && !learned.contains("127.0.0.1"),
        "{learned}"
    );
    assert_eq!(
        std::fs::read_to_string(&global).unwrap(),
        s.sshd.known_hosts_line()
    );
    // Known now, from the hashed line: no --accept-new-host-key needed.
    write(s.f.a.join("i"), "again\n");
    ok(&push(&s, "box", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
}

/// A running `ssh-agent` on its own socket, killed on drop.
struct Agent {
    child: std::process::Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, sock }
    }

    fn add(&self, key: &Path) {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// `ssh-add -l`: the fingerprints it holds.
    fn keys(&self) -> String {
        let out = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &self.sock)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn identity_agent_identities_only_and_add_keys_to_agent() {
    let s = ssh_fixture();
    write(s.f.a.join("f"), "agent\n");
    let agent = Agent::start(s.f.tmp.path());
    let other = s.home.join("other_key");
    let gen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(gen.success());
    let base = format!(
        "Host box\n  HostName 127.0.0.1\n  Port {p}\n  User {u}\n  IdentityAgent {a}\n",
        u = user(),
        p = s.sshd.port,
        a = agent.sock.display()
    );
    // AddKeysToAgent: the key that logged in from its file is in the agent afterwards
    // (SSH_AUTH_SOCK is unset: IdentityAgent names the agent).
    config(
        &s,
        &format!(
            "{base}  IdentityFile {}\n  AddKeysToAgent yes\n",
            s.sshd.key().display()
        ),
    );
    assert!(!agent.keys().contains(&fingerprint(&s.sshd.key())));
    ok(&push(&s, "box", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
    assert!(
        agent.keys().contains(&fingerprint(&s.sshd.key())),
        "{}",
        agent.keys()
    );
    // The agent's key logs in where the named key is refused...
    agent.add(&other);
    config(&s, &format!("{base}  IdentityFile {}\n", other.display()));
    write(s.f.a.join("g"), "by the agent's key\n");
    ok(&push(&s, "box", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
    // ...but not with IdentitiesOnly: only the named key is offered, and it is refused.
    config(
        &s,
        &format!(
            "{base}  IdentityFile {}\n  IdentitiesOnly yes\n",
            other.display()
        ),
    );
    write(s.f.a.join("h"), "not sent\n");
    let before = snapshot(&s.f.b);
    let r = push(&s, "box", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(
        r.stderr.contains("other_key") && r.stderr.contains("refused"),
        "{r:?}"
    );
    assert_unchanged(&s.f.b, &before);
    // IdentityAgent none: no agent, so nothing logs in.
    config(
        &s,
        &format!(
            "{}  IdentityAgent none\n",
            base.replace(&format!("  IdentityAgent {}\n", agent.sock.display()), "")
        ),
    );
    let r = push(&s, "box", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert_unchanged(&s.f.b, &before);
}

#[test]
fn proxy_command_on_the_command_line_wins_over_the_config() {
    let s = ssh_fixture();
    let relay = s.home.join("relay.py");
    std::fs::write(&relay, RELAY).unwrap();
    let used = s.home.join("proxy-used");
    let proxy = s.home.join("proxy.sh");
    write(
        &proxy,
        &format!(
            "#!/bin/sh\necho \"$@\" > {}\nexec python3 {} \"$@\"\n",
            used.display(),
            relay.display()
        ),
    );
    make_executable(&proxy);
    // The config's ProxyCommand fails: the command line's is the one run.
    config(&s, "Host 127.0.0.1\n  ProxyCommand /bin/false\n");
    write(s.f.a.join("f"), "through --proxy-command\n");
    let cmd = format!("{} %h %p", proxy.display());
    let r = s.sync("push", &["--proxy-command", &cmd]);
    ok(&r);
    assert_same_tree(&s.f.a, &s.f.b);
    assert_eq!(read(&used), format!("127.0.0.1 {}\n", s.sshd.port));
    // Without it, the config's is run (and fails): it was not bypassed either way.
    write(s.f.a.join("g"), "not sent\n");
    let before = snapshot(&s.f.b);
    let r = s.sync("push", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("ProxyCommand"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
    // `none` connects directly.
    ok(&s.sync("push", &["--proxy-command", "none"]));
    assert_same_tree(&s.f.a, &s.f.b);
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_open_control_master_is_ridden_through_the_system_ssh() {
    let s = ssh_fixture();
    write(s.f.a.join("f"), "through the master\n");
    let sock = s.home.join("master.sock");
    let system_config = s.system_ssh_config();
    let mut master = Command::new("ssh")
        .arg("-F")
        .arg(&system_config)
        .args(["-N", "-o", "ControlMaster=yes", "-o"])
        .arg(format!("ControlPath={}", sock.display()))
        .arg("box")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the ssh master did not start");
        assert!(
            master.try_wait().unwrap().is_none(),
            "the ssh master exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // For tandem, `box` is behind a dead port: only the open master gets in.
    config(
        &s,
        &format!(
            "Host box\n  HostName 127.0.0.1\n  Port 1\n  ControlPath {}\n",
            sock.display()
        ),
    );
    let r = push(&s, "box", &[]);
    let _ = master.kill();
    let _ = master.wait();
    ok(&r);
    assert!(r.stderr.contains("riding the open ssh connection"), "{r:?}");
    assert_same_tree(&s.f.a, &s.f.b);
    // Without a master, tandem connects itself, to the dead port, and says so.
    let _ = std::fs::remove_file(&sock);
    write(s.f.a.join("g"), "not sent\n");
    let before = snapshot(&s.f.b);
    let r = push(&s, "box", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("127.0.0.1:1"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
}
