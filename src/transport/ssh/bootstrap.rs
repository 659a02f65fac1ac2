//! Starting the agent on the remote host, installing it first if it is missing.
//!
//! Every command runs as `sh` with a one-line script on its stdin, so the login shell
//! (bash, fish, tcsh...) only ever sees the word `sh` and its quoting never matters. The
//! script looks for `tandem-agent` of exactly our version, built for the host's machine,
//! on PATH, then in `~/.cache/tandem/<version>/`, and execs it; otherwise it prints the
//! host's `uname -sm` and `getconf LONG_BIT`, and the client uploads the agent that
//! runs there (temp name, BLAKE3 checked by the uploaded binary itself — which also proves
//! the host can run it — then renamed: two first runs at once cannot corrupt it). An agent
//! of another machine left in the cache fails the check and is replaced.

use std::io::{Read, Write};
use std::path::Path;

use super::agents;
use super::channel::ChannelIo;
use crate::error::{Error, Result};
use crate::wire::agent::systems::{AgentBuild, HostSystem, BUILDS};
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
        "{{ cd \"$HOME\" 2>/dev/null; v={}; m=$(uname -m); for a in {candidates}; do \
         case \"$a\" in */*) [ -x \"$a\" ] || continue;; *) command -v \"$a\" >/dev/null 2>&1 || continue;; esac; \
         if [ \"$(\"$a\" --version-for \"$m\" 2>/dev/null)\" = \"$v\" ]; then exec \"$a\" {args}; fi; done; \
         echo \"{MARK} no-agent $(uname -s) $m $(getconf LONG_BIT 2>/dev/null)\"; }}\n",
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
                let host = HostSystem::parse(line.strip_prefix("no-agent").unwrap_or(&line));
                upload(session, &host, notes)?;
            }
            Answer::Line(_, _) => {
                let at = agent_path.unwrap_or("tandem-agent");
                return Err(Error::Unreachable(format!(
                    "no tandem agent of version {}, built for the host's machine, at '{at}' on {}; install it there (see the README), or leave out --agent-path to let tandem upload one",
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

/// Installs the agent that runs on `host` in its cache: the best build first, the next if
/// the host cannot run it.
fn upload(session: &dyn Shell, host: &HostSystem, notes: &mut Vec<String>) -> Result<()> {
    let mut failed = Vec::new();
    for build in host.builds() {
        if let Some(binary) = agents::local_agent(build) {
            match install(session, host, build, &binary, notes) {
                Ok(()) => return Ok(()),
                Err(e) => failed.push(e.to_string()),
            }
        }
    }
    if !failed.is_empty() {
        return Err(Error::Unreachable(failed.join("; ")));
    }
    Err(Error::Unreachable(no_agent_message(session, host)))
}

/// Why no agent can be uploaded to `host`, and what the user can do.
fn no_agent_message(session: &dyn Shell, host: &HostSystem) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let serves: Vec<&str> = agents::available().iter().map(|b| b.label).collect();
    let serves = match serves.is_empty() {
        true => {
            "no system at all: it was built without agents (scripts/build-agent.sh builds them)"
                .to_string()
        }
        false => serves.join(", "),
    };
    let fix = match host.builds().first() {
        Some(b) => format!(
            "put an agent for it beside tandem as '{}' ({} builds it), or install tandem-agent on the host",
            b.file_name(),
            match b.os {
                "Darwin" => "scripts/build-macos.sh --agents DIR",
                _ => "scripts/build-agent.sh",
            }
        ),
        None => format!(
            "tandem builds agents for {} only: install tandem-agent {version} on the host and name it with --agent-path",
            BUILDS.iter().map(|b| b.label).collect::<Vec<_>>().join(", ")
        ),
    };
    format!(
        "{} has no tandem-agent {version} (not on PATH, not in ~/.cache/tandem/{version}), and this client has no agent for its system ({host}) to upload; it can serve {serves}. To fix: {fix} (see the README)",
        session.label(),
    )
}

/// Uploads `binary` (the agent `build`) into the host's cache, checked and renamed there.
fn install(
    session: &dyn Shell,
    host: &HostSystem,
    build: &AgentBuild,
    binary: &Path,
    notes: &mut Vec<String>,
) -> Result<()> {
    let bytes = std::fs::read(binary).map_err(|e| {
        Error::Unreachable(format!("cannot read the agent '{}': {e}", binary.display()))
    })?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let what = "the agent upload";
    let mut io = run_sh(session, &upload_script(&hash), what)?;
    let fail = |why: String| {
        Error::Unreachable(format!(
            "cannot install the tandem agent for {} in ~/.cache/tandem on {} ({host}): {why}",
            build.label,
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
        "installed tandem-agent {} ({} KiB, for {}) in ~/.cache/tandem/{} on {} ({host})",
        env!("CARGO_PKG_VERSION"),
        bytes.len() >> 10,
        build.label,
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
}
