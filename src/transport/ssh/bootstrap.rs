//! Starting the agent on the remote host, installing it first if it is missing.
//!
//! Every command runs as `sh` with a one-line script on its stdin, so the login shell
//! (bash, fish, tcsh...) only ever sees the word `sh` and its quoting never matters. The
//! script looks for `tandem-agent` of exactly our version on PATH, then in
//! `~/.cache/tandem/<version>/`, and execs it; otherwise it prints the host's `uname -sm`,
//! and the client uploads a static agent built for that system (temp name, BLAKE3 checked
//! by the uploaded binary itself, then renamed: two first runs at once cannot corrupt it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::channel::ChannelIo;
use crate::error::{Error, Result};
use crate::wire::agent::version_line;
use crate::wire::protocol::handshake::MAGIC;

/// A way to run commands on the host: the built-in client's session, or the system's ssh.
pub trait Shell: Send + Sync {
    /// Runs `command` (here always `sh`, fed a script); `what` names it in messages.
    fn exec(&self, command: &str, what: &str) -> Result<ChannelIo>;
    /// The host, for messages.
    fn label(&self) -> &str;
}

/// Marks the script's own lines on stdout.
const MARK: &str = "tandem-bootstrap:";
/// Output read while looking for the agent's greeting or the script's answer.
const MAX_NOISE: usize = 64 << 10;

/// Quotes bytes for POSIX sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes a remote path, keeping a leading `~` or `~/` for the remote home.
pub fn quote_path(p: &str) -> String {
    match p {
        "~" => "\"$HOME\"".to_string(),
        _ => match p.strip_prefix("~/") {
            Some(rest) => format!("\"$HOME\"/{}", quote(rest)),
            None => quote(p),
        },
    }
}

fn cache_dir() -> String {
    format!("\"$HOME\"/.cache/tandem/{}", env!("CARGO_PKG_VERSION"))
}

/// The script that finds a matching agent and execs it with `args` (already quoted).
fn find_and_exec(agent_path: Option<&str>, args: &str) -> String {
    let candidates = match agent_path {
        Some(p) => quote_path(p),
        None => format!("tandem-agent {}/tandem-agent", cache_dir()),
    };
    // Relative paths (and ~) are the login's home, even where the server starts elsewhere.
    format!(
        "{{ cd \"$HOME\" 2>/dev/null; v={}; for a in {candidates}; do \
         case \"$a\" in */*) [ -x \"$a\" ] || continue;; *) command -v \"$a\" >/dev/null 2>&1 || continue;; esac; \
         if [ \"$(\"$a\" --version 2>/dev/null)\" = \"$v\" ]; then exec \"$a\" {args}; fi; done; \
         echo \"{MARK} no-agent $(uname -sm)\"; }}\n",
        quote(&version_line())
    )
}

fn upload_script(hash: &str) -> String {
    format!(
        "{{ d={}; t=\"$d/.tandem-agent.$$\"; mkdir -p \"$d\" && echo '{MARK} ready' && cat >\"$t\" && chmod 755 \"$t\" && \"$t\" --check-self {hash} && mv -f \"$t\" \"$d/tandem-agent\" && echo '{MARK} installed' || {{ rm -f \"$t\"; echo '{MARK} failed'; }}; }}\n",
        cache_dir()
    )
}

/// What came first on a channel's stdout.
enum Answer {
    /// The agent's greeting (put back in the reader), after this much noise.
    Greeting(String),
    /// A line of the script's, after this much noise.
    Line(String, String),
    /// The output ended.
    End(String),
}

/// Reads until the agent's greeting or a line of the script's.
fn answer(io: &mut ChannelIo) -> std::io::Result<Answer> {
    let mut seen: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(at) = seen.windows(MAGIC.len()).position(|w| w == MAGIC) {
            io.reader.unread(&seen[at..]);
            return Ok(Answer::Greeting(noise(&seen[..at])));
        }
        if let Some(at) = find(&seen, MARK.as_bytes()) {
            if let Some(end) = seen[at..].iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&seen[at + MARK.len()..at + end]);
                return Ok(Answer::Line(line.trim().to_string(), noise(&seen[..at])));
            }
        }
        if seen.len() > MAX_NOISE {
            return Ok(Answer::End(noise(&seen)));
        }
        let n = io.reader.read(&mut buf)?;
        if n == 0 {
            return Ok(Answer::End(noise(&seen)));
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn noise(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b).trim().to_string();
    s.chars().take(300).collect()
}

/// Runs `script` under `sh`.
fn run_sh(session: &dyn Shell, script: &str, what: &str) -> Result<ChannelIo> {
    let mut io = session.exec("sh", what)?;
    io.writer.write_all(script.as_bytes()).map_err(|e| {
        Error::Unreachable(format!("cannot start {what} on {}: {e}", session.label()))
    })?;
    Ok(io)
}

/// Tells the user what the remote shell printed before the agent started.
fn noise_note(noise: &str, session: &dyn Shell, notes: &mut Vec<String>) {
    if !noise.is_empty() {
        notes.push(format!(
            "the remote shell on {} printed {noise:?} before the agent started; remove output from its startup files for non-interactive sessions",
            session.label()
        ));
    }
}

/// Starts `tandem-agent ARGS` (already quoted for sh), uploading it first if the host
/// lacks it. Returns the channel with the agent's greeting still unread.
pub fn start_agent(
    session: &dyn Shell,
    agent_path: Option<&str>,
    args: &str,
    notes: &mut Vec<String>,
) -> Result<ChannelIo> {
    let what = "the tandem agent";
    let script = find_and_exec(agent_path, args);
    for attempt in 0..2 {
        let mut io = run_sh(session, &script, what)?;
        let lost =
            |e: std::io::Error| Error::Unreachable(format!("{what} on {}: {e}", session.label()));
        match answer(&mut io).map_err(lost)? {
            Answer::Greeting(noise) => {
                noise_note(&noise, session, notes);
                return Ok(io);
            }
            Answer::Line(line, noise) if attempt == 0 && agent_path.is_none() => {
                noise_note(&noise, session, notes);
                let system = line
                    .strip_prefix("no-agent")
                    .unwrap_or(&line)
                    .trim()
                    .to_string();
                upload(session, &system, notes)?;
            }
            Answer::Line(_, _) => {
                let at = agent_path.unwrap_or("tandem-agent");
                return Err(Error::Unreachable(format!(
                    "no tandem agent of version {} at '{at}' on {}; install it there (see the README), or leave out --agent-path to let tandem upload one",
                    env!("CARGO_PKG_VERSION"),
                    session.label()
                )));
            }
            Answer::End(noise) => {
                let _ = io.state.wait_ended(std::time::Duration::from_secs(2));
                let said = [noise, io.state.stderr()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                let status = io
                    .state
                    .exit_status()
                    .map(|s| format!(" (exit status {s})"))
                    .unwrap_or_default();
                return Err(Error::Unreachable(format!(
                    "{what} did not start on {}{status}: {}",
                    session.label(),
                    if said.is_empty() {
                        "it printed nothing"
                    } else {
                        &said
                    }
                )));
            }
        }
    }
    Err(Error::Unreachable(format!(
        "{what} was installed on {} but does not start; check ~/.cache/tandem there",
        session.label()
    )))
}

/// Installs our agent for `system` (`uname -sm`, e.g. "Linux x86_64") in the host's cache.
fn upload(session: &dyn Shell, system: &str, notes: &mut Vec<String>) -> Result<()> {
    let binary = local_agent_for(system).ok_or_else(|| {
        Error::Unreachable(format!(
            "{} has no tandem-agent {} (not on PATH, not in ~/.cache/tandem/{}), and this client has no agent built for its system ({system}) to upload. Install tandem-agent on the host, or put a static agent for it beside tandem as '{}' (see the README)",
            session.label(),
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_VERSION"),
            upload_name(system).unwrap_or_else(|| "tandem-agent-ARCH-linux".into())
        ))
    })?;
    let bytes = std::fs::read(&binary).map_err(|e| {
        Error::Unreachable(format!("cannot read the agent '{}': {e}", binary.display()))
    })?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let what = "the agent upload";
    let mut io = run_sh(session, &upload_script(&hash), what)?;
    let fail = |why: String| {
        Error::Unreachable(format!(
            "cannot install the tandem agent in ~/.cache/tandem on {}: {why}",
            session.label()
        ))
    };
    match answer(&mut io).map_err(|e| fail(e.to_string()))? {
        Answer::Line(l, _) if l == "ready" => {}
        _ => return Err(fail(io.state.stderr())),
    }
    io.writer
        .write_all(&bytes)
        .map_err(|e| fail(e.to_string()))?;
    // Closing stdin ends `cat`: the script checks and renames.
    let ChannelIo {
        mut reader,
        writer,
        state,
    } = io;
    drop(writer);
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    if !rest.contains(&format!("{MARK} installed")) {
        return Err(fail(state.stderr()));
    }
    notes.push(format!(
        "installed tandem-agent {} ({} KiB, for {system}) in ~/.cache/tandem/{} on {}",
        env!("CARGO_PKG_VERSION"),
        bytes.len() >> 10,
        env!("CARGO_PKG_VERSION"),
        session.label()
    ));
    Ok(())
}

/// Starts a relay for an extra transfer stream (before the agent has said where it
/// listens), and returns its input once the relay has greeted.
pub fn start_relay(
    session: &dyn Shell,
    agent_path: Option<&str>,
) -> Result<super::channel::ChannelWriter> {
    let mut io = run_sh(session, &find_and_exec(agent_path, "--join"), RELAY)?;
    match answer(&mut io) {
        Ok(Answer::Greeting(_)) => {}
        _ => {
            return Err(Error::Unreachable(format!(
                "{RELAY} to {} did not start: {}",
                session.label(),
                io.state.stderr()
            )))
        }
    }
    // Past the greeting the relay says nothing: its output is dropped, never left unread.
    Ok(io.writer)
}

/// Points a started relay at the agent's stream socket `name`, presenting `token`.
pub fn join_relay(
    mut relay: super::channel::ChannelWriter,
    name: &str,
    token: &[u8],
    label: &str,
) -> Result<super::channel::ChannelWriter> {
    if name.contains('\n') {
        return Err(Error::Protocol(format!(
            "the agent on {label} named its stream socket {name:?}"
        )));
    }
    let mut hello = format!("{name}\n").into_bytes();
    hello.extend_from_slice(token);
    relay
        .write_all(&hello)
        .map_err(|e| Error::Unreachable(format!("{RELAY} to {label}: {e}")))?;
    Ok(relay)
}

/// What a relay is called in messages.
const RELAY: &str = "a transfer stream";

/// The file name an uploadable agent for `system` has beside the client.
fn upload_name(system: &str) -> Option<String> {
    let mut parts = system.split_whitespace();
    let (os, arch) = (parts.next()?, parts.next()?);
    (os == "Linux").then(|| format!("tandem-agent-{}-linux", normalize_arch(arch)))
}

fn normalize_arch(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        a => a,
    }
}

/// Finds a static agent for `system` beside this executable: `tandem-agent-ARCH-linux`,
/// the musl build in cargo's target tree, or `tandem-agent` itself if it is static and
/// built for that machine.
pub fn local_agent_for(system: &str) -> Option<PathBuf> {
    let name = upload_name(system)?;
    let arch = normalize_arch(system.split_whitespace().nth(1)?).to_string();
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let mut candidates = vec![
        dir.join(&name),
        dir.join("../lib/tandem").join(&name),
        dir.join("tandem-agent"),
    ];
    // In a cargo target tree (target/debug/tandem): target/ARCH-unknown-linux-musl/*/.
    if let Some(target) = dir.parent() {
        for profile in ["agent", "release", "debug"] {
            candidates.push(
                target
                    .join(format!("{arch}-unknown-linux-musl"))
                    .join(profile)
                    .join("tandem-agent"),
            );
        }
    }
    candidates
        .into_iter()
        .find(|p| elf_static_for(p, &arch).unwrap_or(false))
}

/// True if `path` is a static ELF executable for `arch` (no interpreter: runs on any
/// Linux of that architecture, whatever its C library).
fn elf_static_for(path: &Path, arch: &str) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head)?;
    if &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Ok(false); // not 64-bit little-endian ELF
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().expect("8 bytes"));
    let machine = match u16_at(18) {
        62 => "x86_64",
        183 => "aarch64",
        _ => return Ok(false),
    };
    if machine != arch {
        return Ok(false);
    }
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54) as u64, u16_at(56) as u64);
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(phoff))?;
    f.read_exact(&mut table)?;
    const PT_INTERP: u32 = 3;
    let interp = table
        .chunks(phentsize.max(4) as usize)
        .any(|ph| ph.len() >= 4 && u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) == PT_INTERP);
    Ok(!interp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_any_name() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote_path("~"), "\"$HOME\"");
        assert_eq!(quote_path("~/x y"), "\"$HOME\"/'x y'");
        assert_eq!(quote_path("/srv/~x"), "'/srv/~x'");
        // Run the quoted words through a real sh.
        for s in [
            "plain",
            "with space",
            "quote'd",
            "$HOME",
            "`cmd`",
            "back\\slash",
            "new\nline",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }

    #[test]
    fn upload_names_follow_uname() {
        assert_eq!(
            upload_name("Linux x86_64").unwrap(),
            "tandem-agent-x86_64-linux"
        );
        assert_eq!(
            upload_name("Linux aarch64").unwrap(),
            "tandem-agent-aarch64-linux"
        );
        assert!(upload_name("Darwin arm64").is_none());
    }

    #[test]
    fn a_dynamic_executable_is_not_uploaded() {
        // This test binary links glibc dynamically.
        let me = std::env::current_exe().unwrap();
        assert!(!elf_static_for(&me, std::env::consts::ARCH).unwrap());
        assert!(!elf_static_for(Path::new("/etc/hostname"), "x86_64").unwrap_or(false));
    }
}
