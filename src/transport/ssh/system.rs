//! `--rsh COMMAND` (rsync's `-e`): the host reached through the system's `ssh`, or any
//! command that takes ssh's arguments, so every OpenSSH feature works (ControlMaster, FIDO
//! and PKCS#11 keys, GSSAPI, whatever the user's config holds). Each command runs as
//! `COMMAND [OPTIONS] HOST sh` with the same script on its stdin as over the built-in
//! client; the protocol then runs over the process's stdin and stdout. Host keys, config
//! and logins are ssh's own business.

use std::process::{Command, Stdio};

use super::bootstrap::Shell;
use super::channel::ChannelIo;
use super::{Cipher, Hop, SshOptions};
use crate::error::{Error, Result};

/// The system's ssh (or another command) as the way in.
pub struct SystemSsh {
    /// The command as given: shell words, run by `sh` (so `~` and `$VAR` work).
    command: String,
    /// What is added to it: the options tandem was given, then the host.
    args: Vec<String>,
    label: String,
}

/// `[user@]host[:port]` as ssh's `-J` takes it.
fn jump_arg(h: &Hop) -> String {
    let mut s = String::new();
    if let Some(u) = &h.user {
        s.push_str(u);
        s.push('@');
    }
    match (h.port, h.host.contains(':')) {
        (Some(p), true) => s.push_str(&format!("[{}]:{p}", h.host)),
        (Some(p), false) => s.push_str(&format!("{}:{p}", h.host)),
        (None, _) => s.push_str(&h.host),
    }
    s
}

impl SystemSsh {
    /// `command` for `dest`, passing on the SSH options tandem was given (`-P`, user,
    /// `-i`, `-J`, `-c`, `--connect-timeout`, `--accept-new-host-key`) as ssh spells them.
    pub fn new(command: &str, dest: &Hop, opts: &SshOptions) -> SystemSsh {
        let mut args: Vec<String> = Vec::new();
        if let Some(p) = dest.port {
            args.extend(["-p".into(), p.to_string()]);
        }
        if let Some(u) = &dest.user {
            args.extend(["-l".into(), u.clone()]);
        }
        for i in &opts.identities {
            args.extend(["-i".into(), i.to_string_lossy().into_owned()]);
        }
        if let Some(jumps) = &opts.jumps {
            let list: Vec<String> = jumps.iter().map(jump_arg).collect();
            let list = if list.is_empty() {
                "none".to_string()
            } else {
                list.join(",")
            };
            args.extend(["-J".into(), list]);
        }
        let cipher = match opts.cipher {
            Some(Cipher::Aes128Gcm) => Some("aes128-gcm@openssh.com"),
            Some(Cipher::Aes256Gcm) => Some("aes256-gcm@openssh.com"),
            Some(Cipher::Chacha20Poly1305) => Some("chacha20-poly1305@openssh.com"),
            Some(Cipher::Fastest) | None => None,
        };
        if let Some(c) = cipher {
            args.extend(["-c".into(), c.into()]);
        }
        if let Some(t) = opts.connect_timeout {
            args.extend([
                "-o".into(),
                format!("ConnectTimeout={}", t.as_secs().max(1)),
            ]);
        }
        if opts.accept_new_host_key {
            args.extend(["-o".into(), "StrictHostKeyChecking=accept-new".into()]);
        }
        if let Some(p) = &opts.proxy_command {
            args.extend(["-o".into(), format!("ProxyCommand={p}")]);
        }
        // The host last, after `--`-free options: ssh takes the first non-option as host.
        args.push(dest.host.clone());
        // Only the program is named: the rest of the command may hold a secret
        // (`sshpass -p ...`).
        let program = command.split_whitespace().next().unwrap_or(command);
        let label = match &dest.user {
            Some(u) => format!("{u}@{} (through {program})", dest.host),
            None => format!("{} (through {program})", dest.host),
        };
        SystemSsh {
            command: command.to_string(),
            args,
            label,
        }
    }
}

impl SystemSsh {
    /// `ssh` riding the open master connection at `socket` (ControlPath): no new login.
    pub fn riding(socket: &std::path::Path, dest: &Hop, opts: &SshOptions) -> SystemSsh {
        let mut s = SystemSsh::new("ssh", dest, opts);
        let socket = socket.to_string_lossy().into_owned();
        s.args.splice(
            0..0,
            ["-o".into(), "ControlMaster=no".into(), "-S".into(), socket],
        );
        s
    }
}

impl Shell for SystemSsh {
    fn exec(&self, command: &str, what: &str) -> Result<ChannelIo> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{} \"$@\"", self.command))
            .arg("tandem-rsh")
            .args(&self.args)
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Unreachable(format!(
                    "cannot run sh to start {what} on {}: {e}",
                    self.label
                ))
            })?;
        Ok(ChannelIo::process(child, what))
    }

    fn label(&self) -> &str {
        &self.label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_given_reach_ssh_as_it_spells_them() {
        let dest = Hop::parse("bk@backup:2222").unwrap();
        let opts = SshOptions {
            identities: vec!["/k".into()],
            jumps: Some(vec![
                Hop::parse("me@jump:22").unwrap(),
                Hop::parse("[::1]:2").unwrap(),
            ]),
            cipher: Some(Cipher::Aes128Gcm),
            connect_timeout: Some(std::time::Duration::from_secs(4)),
            accept_new_host_key: true,
            ..Default::default()
        };
        let s = SystemSsh::new("ssh -F ~/work", &dest, &opts);
        assert_eq!(
            s.args,
            [
                "-p",
                "2222",
                "-l",
                "bk",
                "-i",
                "/k",
                "-J",
                "me@jump:22,[::1]:2",
                "-c",
                "aes128-gcm@openssh.com",
                "-o",
                "ConnectTimeout=4",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "backup"
            ]
        );
        assert_eq!(
            SystemSsh::new("ssh", &Hop::parse("h").unwrap(), &SshOptions::default()).args,
            ["h"]
        );
        // The command's words reach the program as sh splits them.
        let echo = SystemSsh::new("printf '%s|'", &dest, &SshOptions::default());
        let mut io = echo.exec("sh", "a test").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut io.reader, &mut out).unwrap();
        assert_eq!(out, "-p|2222|-l|bk|backup|sh|");
    }
}
