//! The pipe transport: `tandem-agent` as a local child process, speaking on stdin/stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::endpoint::RemoteEndpoint;
use crate::error::{Error, Result};
use crate::wire::agent::AgentOptions;

/// How to start an agent: a program and the arguments before the agent's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentCommand {
    /// The program.
    pub program: PathBuf,
    /// Arguments that select agent mode (empty for `tandem-agent` itself).
    pub prefix: Vec<String>,
}

/// Finds `tandem-agent`: the given path, next to this executable (or one directory up, as
/// in cargo's target tree), or on `PATH`. Without one, this executable serves the agent
/// itself (`tandem agent ...`, the same code), so a lone `tandem` still syncs locally.
pub fn find_agent(explicit: Option<&Path>) -> Result<AgentCommand> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(AgentCommand {
                program: p.to_path_buf(),
                prefix: vec![],
            })
        } else {
            Err(Error::Unreachable(format!(
                "--agent-path '{}' is not a file",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe().ok();
    let dirs = exe
        .iter()
        .filter_map(|e| e.parent())
        .flat_map(|d| [Some(d.to_path_buf()), d.parent().map(Path::to_path_buf)]);
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = dirs
        .flatten()
        .chain(path_dirs)
        .map(|d| d.join("tandem-agent"))
        .find(|p| p.is_file());
    match (found, exe) {
        (Some(program), _) => Ok(AgentCommand {
            program,
            prefix: vec![],
        }),
        (None, Some(exe)) => Ok(AgentCommand {
            program: exe,
            prefix: vec!["agent".into()],
        }),
        (None, None) => Err(Error::Unreachable(
            "cannot find 'tandem-agent' next to tandem or on PATH; pass --agent-path".into(),
        )),
    }
}

/// Starts the agent for `opts` and connects to it.
pub fn connect(agent: &AgentCommand, opts: &AgentOptions) -> Result<RemoteEndpoint> {
    let mut cmd = Command::new(&agent.program);
    cmd.args(&agent.prefix)
        .args(opts.to_args())
        .arg("--die-with-parent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let label = &opts.label;
    let mut child = cmd.spawn().map_err(|e| {
        Error::Unreachable(format!(
            "cannot start the agent '{}' for {label}: {e}",
            agent.program.display()
        ))
    })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stdin = child.stdin.take().expect("piped stdin");
    RemoteEndpoint::new(
        stdout,
        stdin,
        label.clone(),
        opts.link(),
        Some(Box::new(AgentProcess(child))),
    )
}

/// The agent child: waited for once its input is closed, so no zombie stays behind.
struct AgentProcess(std::process::Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.wait();
    }
}
