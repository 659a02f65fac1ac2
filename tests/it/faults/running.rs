//! Running the client with a time limit and its output drained as it comes, and finding
//! the agents that serve a remote root.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Longer than any run of the workload takes in a debug build on a busy machine.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `c` to its end, or kills it at [`RUN_LIMIT`]: a hang is a failure, not a stuck
/// test binary.
pub(super) fn run_bounded(c: Command) -> Result<Run, String> {
    Running::start(c).finish()
}

/// A client started with its output drained as it comes (a full pipe cannot stall it),
/// stdout also line by line to whoever watches its events.
pub(super) struct Running {
    child: std::process::Child,
    pub(super) lines: std::sync::mpsc::Receiver<String>,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    pub(super) deadline: Instant,
}

impl Running {
    pub(super) fn start(mut c: Command) -> Running {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufRead::lines(out).map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        });
        Running {
            child,
            lines,
            stdout,
            stderr,
            deadline: Instant::now() + RUN_LIMIT,
        }
    }

    pub(super) fn ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the end, or kills the client at the deadline and says it hung.
    pub(super) fn finish(mut self) -> Result<Run, String> {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.stderr.join().unwrap_or_default();
                return Err(format!(
                    "HANG: still running after {RUN_LIMIT:?}; stderr: {stderr}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(Run {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        })
    }
}

/// Pids of `tandem-agent` processes serving `root` (the client names both the agent and
/// the root in its arguments too, so the program run is what tells them apart).
pub(super) fn agents_serving(root: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmd.split(|b| *b == 0).map(String::from_utf8_lossy);
        let program = args.next().unwrap_or_default();
        if program.ends_with("tandem-agent") && args.any(|a| a.contains(root)) && !is_zombie(pid) {
            pids.push(pid);
        }
    }
    pids
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(") ").is_some_and(|(_, a)| a.starts_with('Z'))
    })
}
