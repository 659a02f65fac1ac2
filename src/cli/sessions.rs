//! The maintenance commands: `sessions`, `status`, `forget`, `completions`. What a person
//! checking on an unattended session needs: its roots and how its last run went.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::{Args, Command, Format};
use crate::error::{Error, Result};
use crate::exit::ExitStatus;
use crate::output::human_bytes;
use crate::state::baseline::Baseline;
use crate::state::session::last_run::LastRun;
use crate::state::session::{state_dir, Session};

/// Runs a maintenance command.
pub fn maintenance(cmd: &Command, format: Format) -> Result<()> {
    let dir = state_dir()?;
    match cmd {
        Command::Sessions => {
            for name in Session::list(&dir) {
                let s = Session {
                    name,
                    dir: dir.clone(),
                };
                let baseline = Baseline::load(&s.baseline_path());
                print(
                    &about(&s, baseline.as_ref().ok().and_then(Option::as_ref)),
                    format,
                    true,
                );
            }
            Ok(())
        }
        Command::Status { name } => {
            let s = Session::new(name.clone())?;
            let baseline = Baseline::load(&s.baseline_path())?;
            if baseline.is_none() && s.last_run().is_none() {
                return Err(Error::State(format!(
                    "no session named '{name}' in '{}' (see 'tandem sessions')",
                    dir.display()
                )));
            }
            print(&about(&s, baseline.as_ref()), format, false);
            Ok(())
        }
        Command::Agent { .. } => unreachable!("handled before"),
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a closed pipe (`| head`).
            let mut script = Vec::new();
            let mut cmd = <Args as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "tandem", &mut script);
            let _ = std::io::stdout().write_all(&script);
            Ok(())
        }
        Command::Forget { name } => forget(name, &dir),
    }
}

fn forget(name: &str, dir: &Path) -> Result<()> {
    let s = Session::new(name.to_string())?;
    let _lock = s.lock()?;
    let _ = std::fs::remove_file(s.last_run_path());
    match std::fs::remove_file(s.baseline_path()) {
        Ok(()) => {
            println!("forgot session '{name}'; the next run starts over");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::State(format!(
            "no session named '{name}' in '{}'",
            dir.display()
        ))),
        Err(e) => Err(Error::State(format!(
            "cannot remove '{}': {e}",
            s.baseline_path().display()
        ))),
    }
}

/// What is known of one session.
struct About {
    name: String,
    roots: Option<(String, String)>,
    entries: Option<usize>,
    baseline: String,
    last: Option<LastRun>,
}

fn about(s: &Session, baseline: Option<&Baseline>) -> About {
    let last = s.last_run();
    let roots = baseline
        .map(|b| (b.local_root.clone(), b.remote_root.clone()))
        .or_else(|| {
            last.as_ref()
                .map(|l| (l.local_root.clone(), l.remote_root.clone()))
        });
    About {
        name: s.name.clone(),
        roots,
        entries: baseline.map(|b| b.tree.len()),
        baseline: s.baseline_path().display().to_string(),
        last,
    }
}

fn print(a: &About, format: Format, one_line: bool) {
    let now = now();
    match format {
        Format::Json => println!("{}", as_json(a, now)),
        Format::Human if one_line => println!("{}", as_line(a, now)),
        Format::Human => print!("{}", as_block(a, now)),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `2026-12-07 02:00:01 +01:00`, in local time.
fn local_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| {
            d.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .unwrap_or_else(|| t.to_string())
}

/// `2026-12-07 02:00:01 +01:00 (3 hours ago)`.
fn when(t: i64, now: i64) -> String {
    format!("{} ({})", local_time(t), ago(now - t))
}

/// `just now`, `5 minutes ago`, `3 hours ago`, `2 days ago`.
fn ago(secs: i64) -> String {
    let n = |v: i64, unit: &str| format!("{v} {unit}{} ago", if v == 1 { "" } else { "s" });
    match secs {
        s if s < 0 => "in the future: check the clock".into(),
        s if s < 60 => "just now".into(),
        s if s < 3600 => n(s / 60, "minute"),
        s if s < 86_400 => n(s / 3600, "hour"),
        s => n(s / 86_400, "day"),
    }
}

fn outcome(l: &LastRun) -> String {
    format!("exit {} ({})", l.exit, ExitStatus(l.exit).meaning())
}

fn moved(l: &LastRun) -> String {
    let s = if l.files == 1 { "" } else { "s" };
    format!("{} file{s}, {}", l.files, human_bytes(l.bytes))
}

fn last_ok(l: &LastRun, now: i64) -> String {
    match l.last_ok {
        Some(t) if t == l.ended => "this one".into(),
        Some(t) => when(t, now),
        None => "never".into(),
    }
}

fn as_line(a: &About, now: i64) -> String {
    let (local, remote) = a.roots.clone().unwrap_or_else(|| ("?".into(), "?".into()));
    let last = match &a.last {
        Some(l) => format!(
            "last run {}, {}, {}, {}; last exit 0: {}",
            when(l.ended, now),
            l.direction,
            outcome(l),
            moved(l),
            last_ok(l, now)
        ),
        None => "no run recorded".into(),
    };
    let unreadable = if a.entries.is_none() && a.last.is_none() {
        " (unreadable baseline)"
    } else {
        ""
    };
    format!("{}\t{local}\t{remote}\t{last}{unreadable}", a.name)
}

fn as_block(a: &About, now: i64) -> String {
    let (local, remote) = a.roots.clone().unwrap_or_else(|| ("?".into(), "?".into()));
    let mut out = format!(
        "session:   {}\nlocal:     {local}\nremote:    {remote}\n",
        a.name
    );
    match &a.last {
        Some(l) => {
            out += &format!(
                "last run:  {}\ndirection: {}\noutcome:   {}\nmoved:     {}\nlast ok:   {}\n",
                when(l.ended, now),
                l.direction,
                outcome(l),
                moved(l),
                last_ok(l, now)
            );
        }
        None => out += "last run:  none recorded\n",
    }
    match a.entries {
        Some(n) => out += &format!("entries:   {n}\nbaseline:  {}\n", a.baseline),
        None => out += "baseline:  none yet (no run has completed)\n",
    }
    out
}

fn as_json(a: &About, now: i64) -> serde_json::Value {
    let (local, remote) = a.roots.clone().unzip();
    let last = a.last.as_ref().map(|l| {
        json!({
            "ended": l.ended,
            "ended_local": local_time(l.ended),
            "ago_s": now - l.ended,
            "direction": l.direction,
            "exit": l.exit,
            "meaning": ExitStatus(l.exit).meaning(),
            "files": l.files,
            "bytes": l.bytes,
            "last_ok": l.last_ok,
            "last_ok_local": l.last_ok.map(local_time),
        })
    });
    json!({
        "session": a.name,
        "local": local,
        "remote": remote,
        "entries": a.entries,
        "baseline": a.entries.map(|_| &a.baseline),
        "last_run": last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(7200), "2 hours ago");
        assert_eq!(ago(3 * 86_400 + 5), "3 days ago");
        assert!(ago(-100).contains("clock"));
    }
}
