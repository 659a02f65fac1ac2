//! The pipe transport: `tandem-agent` as a local child process, speaking on stdin/stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::compress::Compression;
use crate::endpoint::RemoteEndpoint;
use crate::error::{Error, Result};

/// Finds `tandem-agent`: the given path, next to this executable (or one directory up, as
/// in cargo's target tree), or on `PATH`.
pub fn find_agent(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
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
    dirs.flatten()
        .chain(path_dirs)
        .map(|d| d.join("tandem-agent"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Unreachable(
                "cannot find 'tandem-agent' next to tandem or on PATH; install it beside tandem (cargo build --workspace) or pass --agent-path".into(),
            )
        })
}

/// Starts the agent on `root` and connects to it.
pub fn connect(
    agent: &Path,
    root: &Path,
    label: &str,
    owner: bool,
    compression: Compression,
) -> Result<RemoteEndpoint> {
    let mut cmd = Command::new(agent);
    cmd.arg("--root")
        .arg(root)
        .arg("--label")
        .arg(label)
        .arg("--die-with-parent");
    if owner {
        cmd.arg("--preserve-owner");
    }
    cmd.arg("--compress").arg(match compression {
        Compression::None => "none".to_string(),
        Compression::Zstd(l) => format!("zstd:{l}"),
    });
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| {
        Error::Unreachable(format!(
            "cannot start the agent '{}' for {label}: {e}",
            agent.display()
        ))
    })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stdin = child.stdin.take().expect("piped stdin");
    RemoteEndpoint::new(stdout, stdin, label.to_string(), compression, Some(child))
}
