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

/// `-K`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DirectionArg {
    /// The remote becomes a replica of the local directory.
    Push,
    /// The local directory becomes a replica of the remote.
    Pull,
    /// Two-way: changes on either side propagate; conflicts are reported.
    Bidi,
}

/// `-f`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FavorArg {
    /// The local (-d) version wins.
    #[value(alias = "local")]
    Src,
    /// The remote (-r) version wins.
    #[value(alias = "remote")]
    Dst,
    /// The version with the older modification time wins.
    Old,
    /// The version with the newer modification time wins.
    New,
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Status lines for people.
    Human,
    /// One JSON object per line on stdout.
    Json,
}

/// tandem keeps two directory trees identical: push, pull or bidirectional.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "tandem",
    version,
    args_conflicts_with_subcommands = true,
    override_usage = "tandem [OPTIONS] -d LOCAL_DIR -r [USER@]HOST:PATH -K push|pull|bidi\n       tandem [OPTIONS] -d LOCAL_DIR -r OTHER_LOCAL_DIR -K push|pull|bidi\n       tandem [OPTIONS] -s SRC_DIR -d DST_DIR FILE...   (adds rules, then syncs them)\n       tandem   (reconciles every rule in the rules file)\n       tandem sessions | tandem status -N NAME | tandem forget -N NAME | tandem completions SHELL",
    disable_help_subcommand = true,
    after_help = "Exit status is an OR of: 1 resolvable conflicts (dry run), 2 unresolved conflicts, 4 named files missing, \
8 permission problems, 16 state or rules file problems, 32 invalid arguments, 64 a root cannot be reached, 128 other errors."
)]
pub struct Args {
    /// Session name; keys the baseline and the lock (default: derived from the two roots).
    #[arg(short = 'N', long = "name", value_name = "NAME")]
    pub name: Option<String>,
    /// The local directory.
    #[arg(short = 'd', long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The other side: USER@HOST:PATH (or HOST:PATH, ssh://USER@HOST:PORT/PATH), or a
    /// local directory.
    #[arg(short = 'r', long = "remote-dir", value_name = "[USER@]HOST:PATH")]
    pub remote: Option<String>,
    /// Remote user name (may contain '@').
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Remote host.
    #[arg(long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Remote SSH port.
    #[arg(short = 'P', long = "port", value_name = "PORT")]
    pub port: Option<u16>,
    /// push, pull or bidi.
    #[arg(short = 'K', long = "direction", value_enum, value_name = "DIRECTION")]
    pub direction: Option<DirectionArg>,
    /// Conflict policy in bidi: src (local), dst (remote), old or new.
    #[arg(short = 'f', long = "favor", value_enum, value_name = "WHICH")]
    pub favor: Option<FavorArg>,
    /// On conflict keep both versions; the loser is renamed NAME.conflict-HOST-TIME.
    #[arg(long = "keep-both")]
    pub keep_both: bool,
    /// Decide and print the plan as shell commands; change nothing.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Print nothing but errors and unresolved conflicts (for cron).
    #[arg(short = 'q', long = "quiet", conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say why for every file.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Skip the safety prompts (mass deletion, changed root).
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Owner and mode differences also count as differences and conflicts.
    #[arg(short = 'e', long = "everything")]
    pub everything: bool,
    /// Accepted for filesync compatibility; mtimes are always preserved.
    #[arg(short = 'm', long = "preserve-mtime")]
    pub preserve_mtime: bool,
    /// Stop at the first read or write error.
    #[arg(long = "halt-on-error")]
    pub halt_on_error: bool,
    /// Threads per side that look entries up while scanning (more help on fast disks
    /// with cores to spare).
    #[arg(long = "scan-threads", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=crate::wire::agent::MAX_SCAN_THREADS as u64))]
    pub scan_threads: u64,
    /// Copy hard-linked names as separate files (by default they stay hard links).
    #[arg(long = "no-hard-links")]
    pub no_hard_links: bool,
    /// Keep owner and group numbers as they are (by default they travel by name).
    #[arg(long = "numeric-ids")]
    pub numeric_ids: bool,
    /// POSIX ACLs and user xattrs on this side: none, native, or metafile (kept in a side
    /// file per directory).
    #[arg(
        long = "preserve-acls",
        value_name = "none|native|metafile",
        default_value = "none"
    )]
    pub preserve_acls: String,
    /// The same for the other side [default: as --preserve-acls].
    #[arg(
        long = "remote-preserve-acls",
        alias = "remote-preserve-acles",
        value_name = "none|native|metafile"
    )]
    pub remote_preserve_acls: Option<String>,
    /// Leave out paths matching this gitignore-style pattern (repeatable).
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Keep paths matching this pattern even if excluded (repeatable).
    #[arg(long = "include", value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Leave alone directories whose mtime is older than this on either side (e.g. 7d,
    /// 1w0d0h0m0s): their contents are neither copied nor deleted.
    #[arg(long = "exclude-dirs-older-than", value_name = "DURATION")]
    pub exclude_dirs_older_than: Option<String>,
    /// Read exclude patterns from a file (one per line, '!' to include).
    #[arg(long = "exclude-from", value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,
    /// Refuse a run that would delete more than N entries, or P% of a side.
    #[arg(long = "max-delete", value_name = "N|P%")]
    pub max_delete: Option<String>,
    /// Data compression on the wire: zstd, zstd:LEVEL or none [default: zstd over SSH,
    /// none for a local -r directory].
    #[arg(long = "compress", value_name = "zstd[:LEVEL]|none")]
    pub compress: Option<String>,
    /// Write a log (timestamped status lines, conflicts, errors) into DIR, rotated at MB
    /// megabytes (default 10).
    #[arg(short = 'L', long = "local-logdir", value_name = "DIR[:MB]")]
    pub local_logdir: Option<String>,
    /// The same for the agent, on the other side.
    #[arg(short = 'R', long = "remote-logdir", value_name = "DIR[:MB]")]
    pub remote_logdir: Option<String>,
    /// Content already on the receiving side (same BLAKE3) is copied there (copy; a reflink
    /// where possible) or hard-linked (hardlink, when attributes match) instead of sent.
    #[arg(
        long = "dedup",
        value_name = "copy|hardlink|none",
        default_value = "none"
    )]
    pub dedup: String,
    /// Keep what the sync deletes or replaces on this side in DIR (dated subdirectories;
    /// relative to the -d directory, and then excluded from the sync, or absolute).
    #[arg(long = "keep-dir-local", value_name = "DIR")]
    pub keep_dir_local: Option<PathBuf>,
    /// The same on the other side (relative to its root, or absolute there).
    #[arg(long = "keep-dir-remote", value_name = "DIR")]
    pub keep_dir_remote: Option<PathBuf>,
    /// Most bits per second on the wire, e.g. 500m (k, m, g: thousands, millions, billions).
    #[arg(short = 'l', long = "target-rate", value_name = "RATE")]
    pub target_rate: Option<String>,
    /// Most files in flight at once.
    #[arg(long = "pending-max", value_name = "N", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub pending_max: u64,
    /// Path of the tandem-agent program for the other side (on the remote host over SSH).
    #[arg(long = "agent-path", value_name = "PATH")]
    pub agent_path: Option<PathBuf>,
    /// SSH key to log in with; repeatable, tried in order before ssh-agent and ~/.ssh/id_*.
    #[arg(short = 'i', long = "private-key-path", value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// Record the host key of a host seen for the first time in ~/.ssh/known_hosts
    /// (a changed key is always refused).
    #[arg(long = "accept-new-host-key")]
    pub accept_new_host_key: bool,
    /// Give up connecting after this long (e.g. 15s, 1m) [default: 15s, or ConnectTimeout].
    #[arg(long = "connect-timeout", value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// SSH cipher: aes128-gcm, aes256-gcm, chacha20-poly1305, or none for the fastest
    /// available (SSH always encrypts).
    #[arg(short = 'c', long = "cipher", value_name = "NAME")]
    pub cipher: Option<String>,
    /// Reach the remote through a jump host.
    #[arg(
        long = "proxy",
        value_name = "ssh://[USER@]HOST[:PORT]",
        conflicts_with = "jump"
    )]
    pub proxy: Option<String>,
    /// Reach the host through this command instead of the built-in SSH client, as rsync's
    /// -e: e.g. ssh, or 'ssh -F ~/.ssh/work_config' (given to -e, the first word must be
    /// a program; -e alone is --everything).
    #[arg(long = "rsh", value_name = "COMMAND")]
    pub rsh: Option<String>,
    /// Reach the host through this command's stdin and stdout, as ProxyCommand (%h %p %r
    /// %n %% expanded; 'none' ignores ProxyCommand in ~/.ssh/config).
    #[arg(long = "proxy-command", value_name = "COMMAND", conflicts_with_all = ["jump", "proxy"])]
    pub proxy_command: Option<String>,
    /// Jump hosts, as ssh -J ('none' ignores ProxyJump in ~/.ssh/config).
    #[arg(short = 'J', value_name = "[USER@]HOST[:PORT][,...]")]
    pub jump: Option<String>,
    /// Parallel SSH channels for file data; with :SIZE, files above SIZE (e.g. 64M) use
    /// their own channels.
    #[arg(long = "transfer-threads", value_name = "N[:SIZE]")]
    pub transfer_threads: Option<String>,
    /// Keep running: watch both trees and sync each change as it settles.
    #[arg(short = 'C', long = "continuous")]
    pub continuous: bool,
    /// With -C: rescan the whole local tree this often (e.g. 4h, 1w0d0h0m0s).
    #[arg(
        long = "scan-interval",
        value_name = "DURATION",
        requires = "continuous"
    )]
    pub scan_interval: Option<String>,
    /// With -C: rescan the whole far tree this often.
    #[arg(
        long = "remote-scan-interval",
        value_name = "DURATION",
        requires = "continuous"
    )]
    pub remote_scan_interval: Option<String>,
    /// With -C: send a file only once it has stopped changing for this long (0 to 60s).
    #[arg(long = "cooloff", value_name = "DURATION", default_value = "3s")]
    pub cooloff: String,
    /// Output format.
    #[arg(
        long = "format",
        value_enum,
        default_value = "human",
        value_name = "FORMAT",
        global = true
    )]
    pub format: Format,
    /// filesync form: the directory the named FILEs are copied from (with -d DST).
    #[arg(short = 's', long = "source-dir", value_name = "SRC")]
    pub source: Option<String>,
    /// filesync form: files and directories below SRC to keep in sync with DST (quoted
    /// wildcards are stored as written and evaluated at each run).
    #[arg(value_name = "FILE")]
    pub files: Vec<String>,
    /// Rules-file IGNORE patterns (set by the rules-file forms, not on the command line).
    #[arg(skip)]
    pub ignore: Vec<String>,
    /// Maintenance commands.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Session maintenance.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// List the sessions that have a baseline.
    Sessions,
    /// Show what a session's baseline holds.
    Status {
        /// The session.
        #[arg(short = 'N', long = "name", value_name = "NAME")]
        name: String,
    },
    /// Delete a session's baseline, so the next run starts over.
    Forget {
        /// The session.
        #[arg(short = 'N', long = "name", value_name = "NAME")]
        name: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Serve the agent protocol on stdin/stdout (what tandem-agent does).
    #[command(hide = true)]
    Agent {
        /// The agent's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

pub mod filesync;
pub mod sessions;
mod short_e;

/// Parses `-r` (plus `--user`, `--host`, `-P`) into a [`RemoteSpec`].
pub fn parse_remote(
    value: Option<&str>,
    user: Option<&str>,
    host: Option<&str>,
    port: Option<u16>,
) -> Result<RemoteSpec> {
    let ssh = |user: Option<&str>, host: &str, path: &str| -> Result<RemoteSpec> {
        if host.is_empty() {
            return Err(Error::Usage("empty host name in -r/--host".into()));
        }
        Ok(RemoteSpec::Ssh {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            path: if path.is_empty() {
                ".".into()
            } else {
                path.to_string()
            },
        })
    };
    if let Some(h) = host {
        return ssh(user, h, value.unwrap_or(""));
    }
    let value = value.ok_or_else(|| {
        Error::Usage("missing -r/--remote-dir: give [USER@]HOST:PATH or a local directory".into())
    })?;
    if value.is_empty() {
        return Err(Error::Usage("empty -r/--remote-dir".into()));
    }
    if let Some(url) = remote_url(value, port)? {
        return Ok(url);
    }
    let (u, rest) = match value.split_once('@') {
        Some((u, rest)) if u.contains(':') && !u.contains('/') && rest.contains(':') => {
            return Err(Error::Usage(format!(
                "bad -r '{}': a password there is not used (tandem logs in with keys or \
                 ssh-agent); leave it out, as USER@HOST:PATH",
                crate::secret::masked(value)
            )))
        }
        Some((u, rest)) if !u.contains('/') && !u.contains(':') => (Some(u), rest),
        _ => (None, value),
    };
    let user = user.or(u);
    if let Some(v6) = rest.strip_prefix('[') {
        let (h, path) = v6.split_once("]:").ok_or_else(|| {
            Error::Usage(format!(
                "bad -r '{value}': write an IPv6 host as [ADDR]:PATH"
            ))
        })?;
        return ssh(user, h, path);
    }
    match rest.split_once(':') {
        Some((h, path)) if !h.contains('/') => ssh(user, h, path),
        _ if u.is_some() => Err(Error::Usage(format!(
            "bad -r '{value}': a user needs a host, as USER@HOST:PATH"
        ))),
        _ => {
            if port.is_some() || user.is_some() {
                return Err(Error::Usage("--user and -P need a remote host".into()));
            }
            Ok(RemoteSpec::Local(absolute(PathBuf::from(value))))
        }
    }
}

/// `-r ssh://[USER@]HOST[:PORT]/PATH` (`/~/PATH` in the home); another `SCHEME://` is
/// refused naming the one that works. `None` when `value` is no URL.
fn remote_url(value: &str, port: Option<u16>) -> Result<Option<RemoteSpec>> {
    let shown = crate::secret::masked(value);
    let Some((scheme, rest)) = value.split_once("://") else {
        return Ok(None);
    };
    let is_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return Ok(None);
    }
    if scheme != "ssh" {
        return Err(Error::Usage(format!(
            "bad -r '{shown}': '{scheme}://' is not a way tandem reaches a host; write \
             ssh://[USER@]HOST[:PORT]/PATH, [USER@]HOST:PATH, or a local directory"
        )));
    }
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (
            a,
            p.strip_prefix('~')
                .map_or(format!("/{p}"), |r| format!("~{r}")),
        ),
        None => (rest, ".".to_string()),
    };
    let hop = Hop::parse(authority).map_err(|why| {
        Error::Usage(format!(
            "bad -r '{shown}': {}",
            why.replace("jump host ", "host ")
        ))
    })?;
    let port = match (hop.port, port) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::Usage(format!(
                "bad -r '{shown}': port {a} there and -P {b} disagree; give one"
            )))
        }
        (a, b) => a.or(b),
    };
    Ok(Some(RemoteSpec::Ssh {
        user: hop.user,
        host: hop.host,
        port,
        path,
    }))
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

fn parse_transfer_threads(s: &str) -> Result<TransferThreads> {
    let bad = |why: &str| {
        Error::Usage(format!(
            "bad --transfer-threads '{s}': {why}; give N or N:SIZE, e.g. 4 or 4:64M"
        ))
    };
    let (n, size) = match s.split_once(':') {
        Some((n, size)) => (n, Some(size)),
        None => (s, None),
    };
    let count = n
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=crate::wire::protocol::MAX_STREAMS).contains(n))
        .ok_or_else(|| bad("N must be 1 to 64"))?;
    let large_above = size
        .map(|z| parse_size::parse_size(z).map_err(|e| bad(&e.to_string())))
        .transpose()?;
    Ok(TransferThreads { count, large_above })
}

/// A duration as async writes them (`4h`, `7d`, `1w0d0h0m0s`, `500ms`; a bare number is
/// seconds), for the option `what`.
pub fn parse_duration(s: &str, what: &str) -> Result<std::time::Duration> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| {
        Error::Usage(format!(
            "bad {what} '{s}': {e}; give e.g. 30s, 4h or 1w0d0h0m0s"
        ))
    })
}

/// The pattern that keeps a keep directory inside a root out of the sync (none for one
/// outside: absolute, or above the root).
fn keep_dir_pattern(dir: &Path) -> Result<Option<String>> {
    if dir.as_os_str().is_empty() || dir == Path::new(".") {
        return Err(Error::Usage(
            "a keep directory cannot be the root itself; give a subdirectory or an absolute path"
                .into(),
        ));
    }
    if dir.is_absolute() || dir.starts_with("..") {
        return Ok(None);
    }
    let text = dir.to_str().ok_or_else(|| {
        Error::Usage(format!(
            "keep directory '{}' is not valid UTF-8",
            dir.display()
        ))
    })?;
    Ok(Some(format!(
        "/{}",
        text.trim_start_matches("./").trim_end_matches('/')
    )))
}

/// `-l`: bits per second, with an optional k/m/g suffix (as async: `500m` is 500 Mbit/s).
fn parse_rate(s: &str) -> Result<u64> {
    let bad = || {
        Error::Usage(format!(
            "bad --target-rate '{s}': give bits per second, e.g. 800k, 500m or 1g"
        ))
    };
    let lower = s.trim().to_ascii_lowercase();
    let (digits, scale) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1_000),
        Some((i, 'm')) => (&lower[..i], 1_000_000),
        Some((i, 'g')) => (&lower[..i], 1_000_000_000),
        _ => (&lower[..], 1),
    };
    let n: f64 = digits.parse().map_err(|_| bad())?;
    let bits = n * scale as f64;
    if !(8.0..=1e15).contains(&bits) {
        return Err(bad());
    }
    Ok(bits as u64)
}

/// The continuous-mode settings, if `-C` was given.
pub fn continuous_options(args: &Args) -> Result<Option<crate::sync::continuous::Options>> {
    let cooloff = parse_duration(&args.cooloff, "--cooloff")?;
    if cooloff > std::time::Duration::from_secs(60) {
        return Err(Error::Usage(format!(
            "--cooloff '{}' is too long: give 0 to 60s",
            args.cooloff
        )));
    }
    if !args.continuous {
        return Ok(None);
    }
    let interval = |v: &Option<String>, what: &str| -> Result<Option<std::time::Duration>> {
        let Some(v) = v else { return Ok(None) };
        let d = parse_duration(v, what)?;
        if d < std::time::Duration::from_secs(1) {
            return Err(Error::Usage(format!(
                "{what} '{v}' is too short: give 1s or more"
            )));
        }
        Ok(Some(d))
    };
    Ok(Some(crate::sync::continuous::Options {
        cooloff,
        scan_interval: interval(&args.scan_interval, "--scan-interval")?,
        remote_scan_interval: interval(&args.remote_scan_interval, "--remote-scan-interval")?,
    }))
}

fn parse_timeout(s: &str) -> Result<std::time::Duration> {
    let d = match s.parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| {
            Error::Usage(format!(
                "bad --connect-timeout '{s}': {e}; give e.g. 15s or 2m"
            ))
        })?,
    };
    if d.is_zero() {
        return Err(Error::Usage("--connect-timeout must be more than 0".into()));
    }
    Ok(d)
}

/// The SSH settings of the command line; notes for options that do not apply.
fn ssh_options(args: &Args, remote: &RemoteSpec, notes: &mut Vec<String>) -> Result<SshOptions> {
    let jumps = match (&args.proxy, &args.jump) {
        (Some(p), _) => Some(vec![Hop::parse(p).map_err(Error::Usage)?]),
        (None, Some(j)) if j == "none" => Some(Vec::new()),
        (None, Some(j)) => Some(
            j.split(',')
                .map(|h| Hop::parse(h).map_err(Error::Usage))
                .collect::<Result<Vec<_>>>()?,
        ),
        (None, None) => None,
    };
    let cipher = args
        .cipher
        .as_deref()
        .map(|c| Cipher::parse(c).map_err(Error::Usage))
        .transpose()?;
    let opts = SshOptions {
        identities: args
            .identities
            .iter()
            .map(|p| absolute(p.clone()))
            .collect(),
        jumps,
        accept_new_host_key: args.accept_new_host_key,
        connect_timeout: args
            .connect_timeout
            .as_deref()
            .map(parse_timeout)
            .transpose()?,
        cipher,
        agent_path: match remote {
            RemoteSpec::Ssh { .. } => args
                .agent_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            RemoteSpec::Local(_) => None,
        },
        threads: args
            .transfer_threads
            .as_deref()
            .map(parse_transfer_threads)
            .transpose()?
            .unwrap_or_default(),
        proxy_command: args.proxy_command.clone(),
        rsh: match args.rsh.as_deref().map(str::trim) {
            Some("") => {
                return Err(Error::Usage(
                    "--rsh needs a command, e.g. --rsh ssh or -e 'ssh -F FILE'".into(),
                ))
            }
            r => r.map(str::to_string),
        },
    };
    let ssh_only = opts.rsh.is_some()
        || opts.proxy_command.is_some()
        || !opts.identities.is_empty()
        || opts.jumps.is_some()
        || opts.accept_new_host_key
        || opts.cipher.is_some()
        || opts.threads.count > 1;
    match remote {
        RemoteSpec::Local(_) if ssh_only => notes.push(
            "SSH options (-i, -J/--proxy, --proxy-command, -c, --rsh, --accept-new-host-key, --transfer-threads) do nothing for a local -r directory".into(),
        ),
        RemoteSpec::Ssh { .. } if opts.cipher == Some(Cipher::Fastest) => notes.push(
            "-c none: SSH always encrypts; using the fastest cipher this CPU offers".into(),
        ),
        _ => {}
    }
    Ok(opts)
}

fn parse_max_delete(s: &str) -> Result<DeleteLimit> {
    let bad = || {
        Error::Usage(format!(
            "bad --max-delete '{s}': give a count (100) or a percentage (10%)"
        ))
    };
    match s.strip_suffix('%') {
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|p| *p <= 100)
            .map(DeleteLimit::Percent)
            .ok_or_else(bad),
        None => s.parse::<u64>().map(DeleteLimit::Count).map_err(|_| bad()),
    }
}

fn conflict_suffix() -> String {
    let host = crate::disk::sys::host_name();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = now.chars().filter(char::is_ascii_digit).collect();
    let (day, time) = digits.split_at(8.min(digits.len()));
    format!(".conflict-{host}-{day}-{time}")
}

/// Validates parsed arguments into a job; returns notices to show (ignored options).
pub fn job(args: &Args) -> Result<(Job, Vec<String>)> {
    let mut notes = Vec::new();
    let dir = args.dir.clone().ok_or_else(|| {
        Error::Usage("missing -d/--dir: the local directory to synchronize".into())
    })?;
    let direction = match args.direction {
        Some(DirectionArg::Push) => Direction::Push,
        Some(DirectionArg::Pull) => Direction::Pull,
        Some(DirectionArg::Bidi) => Direction::Bidi,
        None => {
            return Err(Error::Usage(
                "missing -K/--direction: push, pull or bidi".into(),
            ))
        }
    };
    let remote = parse_remote(
        args.remote.as_deref(),
        args.user.as_deref(),
        args.host.as_deref(),
        args.port,
    )?;
    let local_dir = absolute(dir);
    let name = match &args.name {
        Some(n) => {
            validate_name(n)?;
            n.clone()
        }
        None => default_name(&local_dir, &remote.display()),
    };
    let policy = policy(args, direction, &mut notes);
    let filter = filter_spec(args)?;
    let ssh = ssh_options(args, &remote, &mut notes)?;
    let job = Job {
        compression: compression(args, &remote)?,
        local_dir,
        remote,
        session: Session::new(name)?,
        policy,
        filter,
        dry_run: args.dry_run,
        yes: args.yes,
        halt_on_error: args.halt_on_error,
        max_delete: args
            .max_delete
            .as_deref()
            .map(parse_max_delete)
            .transpose()?,
        preserve_owner: args.everything || crate::disk::sys::is_root(),
        transport: LocalTransport::Pipe {
            agent: args.agent_path.clone(),
        },
        pending_max: args.pending_max as usize,
        ssh,
        hard_links: !args.no_hard_links,
        scan_threads: args.scan_threads as usize,
        numeric_ids: args.numeric_ids,
        acls: acl_modes(args)?,
        exclude_dirs_older_than: args
            .exclude_dirs_older_than
            .as_deref()
            .map(|v| parse_duration(v, "--exclude-dirs-older-than"))
            .transpose()?,
        rate: args.target_rate.as_deref().map(parse_rate).transpose()?,
        keep_dirs: [args.keep_dir_local.clone(), args.keep_dir_remote.clone()],
        dedup: crate::sync::dedup::Dedup::parse(&args.dedup).map_err(Error::Usage)?,
        remote_log: args
            .remote_logdir
            .as_deref()
            .map(crate::output::log::LogSpec::parse)
            .transpose()
            .map_err(Error::Usage)?,
    };
    Ok((job, notes))
}

/// The reconciliation policy the options ask for (a note when they do not apply).
fn policy(args: &Args, direction: Direction, notes: &mut Vec<String>) -> Policy {
    let favor = args.favor.map(|f| match f {
        FavorArg::Src => Favor::Side(Side::Local),
        FavorArg::Dst => Favor::Side(Side::Remote),
        FavorArg::Old => Favor::Old,
        FavorArg::New => Favor::New,
    });
    if direction != Direction::Bidi && (favor.is_some() || args.keep_both) {
        notes.push(
            "-f and --keep-both only apply to -K bidi; with push/pull the near side always wins"
                .to_string(),
        );
    }
    let suffix = conflict_suffix();
    Policy {
        direction,
        favor,
        keep_both: args.keep_both,
        everything: args.everything,
        local_conflict_suffix: suffix.clone(),
        remote_conflict_suffix: suffix,
    }
}

/// The patterns of `--exclude`, `--include`, `--exclude-from` and the keep-dirs inside the
/// roots, checked.
fn filter_spec(args: &Args) -> Result<FilterSpec> {
    let mut filter = FilterSpec {
        exclude: args.exclude.clone(),
        include: args.include.clone(),
        ignore: args.ignore.clone(),
    };
    for f in &args.exclude_from {
        filter.read_exclude_file(f)?;
    }
    for keep in [&args.keep_dir_local, &args.keep_dir_remote]
        .into_iter()
        .flatten()
    {
        filter.exclude.extend(keep_dir_pattern(keep)?);
    }
    filter.build()?;
    Ok(filter)
}

/// Each side's `--preserve-acls` mode (`[local, remote]`).
fn acl_modes(args: &Args) -> Result<[crate::disk::xattrs::AclMode; 2]> {
    use crate::disk::xattrs::AclMode;
    let local = AclMode::parse(&args.preserve_acls).map_err(Error::Usage)?;
    let remote = match &args.remote_preserve_acls {
        Some(r) => AclMode::parse(r).map_err(Error::Usage)?,
        None => local,
    };
    // Attributes are compared and kept only when both sides keep them somewhere.
    Ok(if local == AclMode::None || remote == AclMode::None {
        [AclMode::None; 2]
    } else {
        [local, remote]
    })
}

/// `--compress`, or what pays for the transport.
fn compression(args: &Args, remote: &RemoteSpec) -> Result<Compression> {
    // Compressing costs CPU and saves nothing on a local pipe; over a network it pays.
    Ok(match (&args.compress, remote) {
        (Some(c), _) => Compression::parse(c).map_err(Error::Usage)?,
        (None, RemoteSpec::Local(_)) => Compression::None,
        (None, RemoteSpec::Ssh { .. }) => Compression::default(),
    })
}

/// The command line as one line for the log.
fn shell_words(args: impl Iterator<Item = String>) -> String {
    args.map(|a| crate::output::dryrun::shell_quote(a.as_bytes()))
        .collect::<Vec<_>>()
        .join(" ")
}

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
        .arg(value("compress", "zstd[:LEVEL]|none", "Compression of the agent's frames"))
        .arg(value("keep-dir", "DIR", "Keep what is deleted or replaced in DIR"))
        .arg(value("log", "DIR[:MB]", "Write a log into DIR, rotated at MB megabytes"))
        .arg(flag("die-with-parent", "Exit when the process that started it dies"))
        .arg(value("join", "NAME", "Relay an extra stream into a running agent (internal)"))
        .arg(value("check-self", "BLAKE3", "Exit 0 if this executable has this hash (upload check)"))
}

/// The client's `main`: parses, runs, returns the exit status.
pub fn main() -> u8 {
    let args = match Args::try_parse_from(short_e::rewrite(std::env::args_os().collect())) {
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
        Format::Json => Box::new(Json),
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
