//! A real OpenSSH sshd for the SSH tests: started by `scripts/test-sshd.sh` on 127.0.0.1
//! with throwaway keys in a temp dir, stopped by its pid. A missing sshd fails the test.
//! The client runs with HOME pointed at a temp dir, so no one's own ~/.ssh is touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{fixture, output, Fixture, Run};

/// A running sshd.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pid: u32,
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_in(tempfile::tempdir().unwrap())
    }

    /// Starts in a prepared directory: keys already there are kept, and `sshd_extra.conf`
    /// is added to the server's config.
    pub fn start_in(dir: tempfile::TempDir) -> Sshd {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-sshd.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot start the test sshd (install openssh-server): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut words = text.split_whitespace();
        let port = words.next().unwrap().parse().unwrap();
        let pid = words.next().unwrap().parse().unwrap();
        Sshd { dir, port, pid }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The user key that authorized_keys accepts.
    pub fn key(&self) -> PathBuf {
        self.path("id_ed25519")
    }

    /// HOME of every session on this server.
    pub fn remote_home(&self) -> PathBuf {
        self.path("remote-home")
    }

    /// The line for known_hosts.
    pub fn known_hosts_line(&self) -> String {
        std::fs::read_to_string(self.path("known_hosts")).unwrap()
    }

    /// Drops every connection (kills the per-connection sshd processes), keeping the
    /// listener up.
    pub fn kill_connections(&self) -> usize {
        let mut killed = 0;
        for pid in children(self.pid) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            killed += 1;
        }
        killed
    }

    pub fn stop(&mut self) {
        if self.pid != 0 {
            let _ = Command::new("kill").arg(self.pid.to_string()).status();
            // Wait (with a deadline) until it is gone, so its port is free.
            for _ in 0..200 {
                if !Path::new(&format!("/proc/{}", self.pid)).exists()
                    || std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                        .is_ok_and(|s| s.contains(") Z "))
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            self.pid = 0;
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        for pid in children(self.pid) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        self.stop();
    }
}

/// Direct children of a process.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(after) = stat.rsplit_once(") ").map(|(_, a)| a) else {
            continue;
        };
        let ppid: u32 = after
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == pid && pid != 0 {
            if let Ok(child) = e.file_name().to_string_lossy().parse() {
                out.push(child);
            }
        }
    }
    out
}

/// Two local trees (a, and b served over SSH), a client HOME that trusts the server's host
/// key, and the server.
pub struct SshFixture {
    pub f: Fixture,
    pub sshd: Sshd,
    pub home: PathBuf,
}

pub fn ssh_fixture() -> SshFixture {
    ssh_fixture_on(Sshd::start())
}

/// [`ssh_fixture`] with a server started by the test.
pub fn ssh_fixture_on(sshd: Sshd) -> SshFixture {
    let f = fixture();
    let home = f.tmp.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/known_hosts"), sshd.known_hosts_line()).unwrap();
    SshFixture { f, sshd, home }
}

impl SshFixture {
    /// The remote spec of `b` on the server.
    pub fn remote(&self) -> String {
        format!("{}@127.0.0.1:{}", user(), self.f.b.display())
    }

    /// The client with HOME, no ssh-agent, no terminal, and the current agent binary.
    pub fn client(&self) -> Command {
        let mut c = self.f.command();
        c.env("HOME", &self.home).env_remove("SSH_AUTH_SOCK");
        c
    }

    /// `tandem -d a -r ALIAS:b -K DIR`: nothing but the ssh config says where ALIAS is and
    /// how to log in (no `--agent-path` either: add it, or let the agent be uploaded).
    pub fn alias_command(&self, alias: &str, dir: &str) -> Command {
        let mut c = self.client();
        c.arg("-d")
            .arg(&self.f.a)
            .arg("-r")
            .arg(format!("{alias}:{}", self.f.b.display()))
            .args(["-K", dir]);
        c
    }

    /// A config for the system ssh client, named with `-F` (ssh reads the passwd home's,
    /// not $HOME's): the alias `box` with this server's port, key and known_hosts.
    pub fn system_ssh_config(&self) -> PathBuf {
        let path = self.home.join("system_ssh_config");
        std::fs::write(
            &path,
            format!(
                "Host box\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n  BatchMode yes\n  StrictHostKeyChecking yes\n",
                self.sshd.port,
                user(),
                self.sshd.key().display(),
                self.home.join(".ssh/known_hosts").display()
            ),
        )
        .unwrap();
        path
    }

    /// Runs [`SshFixture::sync_command`].
    pub fn sync(&self, dir: &str, extra: &[&str]) -> Run {
        output(self.sync_command(dir, extra).output().unwrap())
    }

    /// `tandem -d a -r USER@127.0.0.1:b -P PORT -i KEY --agent-path AGENT -K dir extra...`
    pub fn sync_command(&self, dir: &str, extra: &[&str]) -> Command {
        let mut c = self.uploading_command(dir, extra);
        c.arg("--agent-path").arg(crate::util::native_agent_path());
        c
    }

    /// [`SshFixture::sync_command`] without `--agent-path`: the agent is the host's own,
    /// or uploaded.
    pub fn uploading_command(&self, dir: &str, extra: &[&str]) -> Command {
        let mut c = self.client();
        c.arg("-d")
            .arg(&self.f.a)
            .arg("-r")
            .arg(self.remote())
            .arg("-P")
            .arg(self.sshd.port.to_string())
            .arg("-i")
            .arg(self.sshd.key())
            .arg("-K")
            .arg(dir)
            .args(extra);
        c
    }
}

/// The login name the server accepts (the user running the tests).
pub fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Lets the client trust the server's host key when it connects through `port`:
/// known_hosts entries are keyed by host and port.
pub fn trust_port(s: &SshFixture, port: u16) {
    let line = s.sshd.known_hosts_line();
    let key = line.split_once(' ').unwrap().1;
    let path = s.home.join(".ssh/known_hosts");
    let mut all = std::fs::read_to_string(&path).unwrap();
    all.push_str(&format!("[127.0.0.1]:{port} {key}"));
    std::fs::write(&path, all).unwrap();
}
