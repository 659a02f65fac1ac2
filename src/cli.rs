//! The command line: clap definitions as typed (`Args`), validated into a [`Job`].

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::core::plan::Side;
use crate::core::reconcile::safety::{Concern, DeleteLimit};
use crate::core::reconcile::{Direction, Favor, Policy};
use crate::disk::compress::Compression;
use crate::error::{Error, Result};
use crate::exit::ExitStatus;
use crate::output::progress::Bars;
use crate::output::{human::Human, json::Json, Event, Reporter};
use crate::state::rules::FilterSpec;
use crate::state::session::{default_name, validate_name, Session};
use crate::sync::{run, run_watched, Job, LocalTransport, RemoteSpec};
use crate::transport::ssh::{Cipher, Hop, SshOptions, TransferThreads};

mod args;
pub mod filesync;
mod job;
mod remote;
pub mod sessions;
mod short_e;
mod verify;

pub use args::{Args, Command, DirectionArg, FavorArg, Format};
use job::*;
pub use job::{continuous_options, job, parse_duration};
pub use remote::parse_remote;
use remote::*;

/// Asks on the terminal; without one, refuses (cron must pass `-y`).
fn confirm_on_tty(concerns: &[Concern]) -> bool {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return false;
    }
    let mut err = std::io::stderr();
    for c in concerns {
        let _ = writeln!(err, "tandem: warning: {c}");
    }
    let _ = write!(err, "Proceed? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

/// `tandem-agent`'s command line, for its man page (the agent itself parses it without
/// clap: see [`crate::wire::agent::AgentOptions::parse`]).
pub fn agent_command() -> clap::Command {
    use clap::{Arg, ArgAction};
    let flag = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    let value = |name: &'static str, v: &'static str, help: &'static str| {
        Arg::new(name).long(name).value_name(v).help(help)
    };
    clap::Command::new("tandem-agent")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The far side of tandem: serves one directory tree to a tandem client over stdin/stdout")
        .long_about(
            "tandem-agent is started by tandem, over SSH or as a child process for a local -r \
             directory; it is not run by hand. It serves one root: scans it, hashes, sends and \
             receives files as rsync deltas, applies changes, and watches it in continuous mode, \
             never reading or writing outside the root (and the keep directory it is given). \
             tandem uploads a static build to ~/.cache/tandem/VERSION/ on hosts without one.",
        )
        .arg(value("root", "DIR", "The directory served (required)").required(true))
        .arg(value("label", "TEXT", "How messages name this side, e.g. remote 'host:/srv'"))
        .arg(flag("preserve-owner", "Apply owners and groups (as root)"))
        .arg(flag("no-hard-links", "Scan every name as a file of its own"))
        .arg(value("scan-threads", "N", "Threads that look entries up while scanning"))
        .arg(value("acls", "none|native|metafile", "Where ACLs and xattrs are kept"))
        .arg(value("compress", "zstd[:LEVEL[,BULK]]|none", "Compression of the agent's frames"))
        .arg(value("keep-dir", "DIR", "Keep what is deleted or replaced in DIR"))
        .arg(value("log", "DIR[:MB]", "Write a log into DIR, rotated at MB megabytes"))
        .arg(flag("background", "Run at low CPU and idle I/O priority (verify)"))
        .arg(flag("die-with-parent", "Exit when the process that started it dies"))
        .arg(value("join", "NAME", "Relay an extra stream into a running agent (internal)"))
        .arg(value("check-self", "BLAKE3", "Exit 0 if this executable has this hash (upload check)"))
}

/// The client's `main`: parses, runs, returns the exit status.
pub fn main() -> u8 {
    let args = match Args::try_parse_from(verify::rewrite(short_e::rewrite(
        std::env::args_os().collect(),
    ))) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => ExitStatus::USAGE.0,
            };
        }
    };
    // Bars only for a person at a terminal: never in JSON, quiet or dry-run mode.
    let bars = (args.format == Format::Human
        && !args.quiet
        && !args.dry_run
        && !args.continuous
        && std::io::stderr().is_terminal())
    .then(Bars::new);
    let reporter: Box<dyn Reporter> = match args.format {
        Format::Json => Box::new(Json::default()),
        Format::Human => Box::new(Human {
            quiet: args.quiet,
            verbose: args.verbose,
            bars: bars.clone(),
        }),
    };
    if let Some(Command::Agent { args }) = &args.command {
        return crate::wire::agent::main_with_args(args);
    }
    // The log opens first, so a run that fails early is logged too.
    let mut reporter = match logged(&args, reporter) {
        Ok(r) => r,
        Err(bit) => return bit,
    };
    if let Some(cmd) = &args.command {
        return match sessions::maintenance(cmd, args.format) {
            Ok(()) => 0,
            Err(e) => fail(reporter.as_mut(), &e.to_string(), e.exit_bit()),
        };
    }
    if args.verify {
        return verify::main(&args, reporter.as_mut(), bars);
    }
    if args.source.is_none() && args.files.first().is_some_and(|f| f == "verify") {
        let message = "'verify' is a command: give it first, before the options ('tandem verify -N NAME ...')";
        return fail(reporter.as_mut(), message, ExitStatus::USAGE);
    }
    if args.repair {
        let message = "--repair goes with tandem verify: 'tandem verify -N NAME --repair'";
        return fail(reporter.as_mut(), message, ExitStatus::USAGE);
    }
    if args.source.is_some() || !args.files.is_empty() {
        return filesync::add_and_sync(&args, reporter.as_mut()).0;
    }
    if filesync::is_bare(&args) {
        return filesync::reconcile_rules(&args, reporter.as_mut()).0;
    }
    let (job, notes, continuous) =
        match job(&args).and_then(|(j, n)| Ok((j, n, continuous_options(&args)?))) {
            Ok(j) => j,
            Err(e) => {
                let message = format!("{e} (see 'tandem --help')");
                return fail(reporter.as_mut(), &message, e.exit_bit());
            }
        };
    for n in &notes {
        reporter.event(&Event::Notice { message: n });
    }
    if let Some(opts) = &continuous {
        // Bars would sit on the terminal between cycles: status lines only.
        let watch = &mut crate::sync::transfer::NoWatch;
        return crate::sync::continuous::run(
            &job,
            opts,
            reporter.as_mut(),
            &mut confirm_on_tty,
            watch,
        )
        .0;
    }
    match bars {
        Some(mut bars) => run_watched(&job, reporter.as_mut(), &mut confirm_on_tty, &mut bars).0,
        None => run(&job, reporter.as_mut(), &mut confirm_on_tty).0,
    }
}

/// The reporter, also writing to the `--local-logdir` log when one is asked for; a log
/// that cannot be opened is reported, and its exit bit returned.
fn logged(
    args: &Args,
    mut reporter: Box<dyn Reporter>,
) -> std::result::Result<Box<dyn Reporter>, u8> {
    let Some(spec) = &args.local_logdir else {
        return Ok(reporter);
    };
    let log = crate::output::log::LogSpec::parse(spec)
        .map_err(|why| (why, ExitStatus::USAGE))
        .and_then(|s| {
            crate::output::log::Log::open(&s, "tandem").map_err(|why| (why, ExitStatus::STATE))
        });
    match log {
        Ok(log) => {
            let args = std::env::args().map(|a| crate::secret::masked(&a));
            log.line(&format!("started: {}", shell_words(args)));
            Ok(Box::new(crate::output::log::Logged {
                inner: reporter,
                log,
            }))
        }
        Err((why, bit)) => Err(fail(reporter.as_mut(), &why, bit)),
    }
}

/// Reports an error that ends the run before it starts; returns its exit status.
fn fail(reporter: &mut dyn Reporter, message: &str, bit: ExitStatus) -> u8 {
    reporter.event(&Event::Error {
        path: None,
        side: None,
        message,
        exit_bit: bit.0,
    });
    bit.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_specs() {
        let ssh = |u: Option<&str>, h: &str, p: &str| RemoteSpec::Ssh {
            user: u.map(Into::into),
            host: h.into(),
            port: None,
            path: p.into(),
        };
        assert_eq!(
            parse_remote(Some("backup@host:/srv/data"), None, None, None).unwrap(),
            ssh(Some("backup"), "host", "/srv/data")
        );
        assert_eq!(
            parse_remote(Some("host:data"), None, None, None).unwrap(),
            ssh(None, "host", "data")
        );
        assert_eq!(
            parse_remote(Some("[::1]:/x"), None, None, None).unwrap(),
            ssh(None, "::1", "/x")
        );
        assert_eq!(
            parse_remote(Some("/x"), Some("me@corp"), Some("h"), None).unwrap(),
            ssh(Some("me@corp"), "h", "/x")
        );
        assert!(matches!(
            parse_remote(Some("/tmp/a:b"), None, None, None).unwrap(),
            RemoteSpec::Local(_)
        ));
        assert!(matches!(
            parse_remote(Some("./dir"), None, None, None).unwrap(),
            RemoteSpec::Local(_)
        ));
        assert_eq!(
            parse_remote(Some("ssh://bk@host:2222/srv/data"), None, None, None).unwrap(),
            RemoteSpec::Ssh {
                user: Some("bk".into()),
                host: "host".into(),
                port: Some(2222),
                path: "/srv/data".into()
            }
        );
        assert_eq!(
            parse_remote(Some("ssh://host/~/data"), None, None, Some(22)).unwrap(),
            RemoteSpec::Ssh {
                user: None,
                host: "host".into(),
                port: Some(22),
                path: "~/data".into()
            }
        );
        for secret in [
            "ssh://gazelle:s3cret@host/srv",
            "gazelle:s3cret@host:/srv",
            "dnats://gazelle:s3cret@host",
        ] {
            let e = parse_remote(Some(secret), None, None, None)
                .unwrap_err()
                .to_string();
            assert!(
                !e.contains("s3cret") && e.contains("gazelle:***@host"),
                "{e}"
            );
        }
        assert!(parse_remote(Some("ssh://h:1/x"), None, None, Some(2)).is_err());
        assert!(parse_remote(None, None, None, None).is_err());
        assert!(parse_remote(Some("[::1"), None, None, None).is_err());
    }

    #[test]
    fn max_delete_forms() {
        assert_eq!(parse_max_delete("10").unwrap(), DeleteLimit::Count(10));
        assert_eq!(parse_max_delete("5%").unwrap(), DeleteLimit::Percent(5));
        assert!(parse_max_delete("x").is_err());
        assert!(parse_max_delete("101%").is_err());
    }
}
