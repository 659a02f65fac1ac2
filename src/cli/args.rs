//! The flags: every option of the command line, as clap parses them (the man page and
//! completions are generated from here).

use super::*;

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
    override_usage = "tandem [OPTIONS] -d LOCAL_DIR -r [USER@]HOST:PATH -K push|pull|bidi\n       tandem [OPTIONS] -d LOCAL_DIR -r OTHER_LOCAL_DIR -K push|pull|bidi\n       tandem [OPTIONS] -s SRC_DIR -d DST_DIR FILE...   (adds rules, then syncs them)\n       tandem   (reconciles every rule in the rules file)\n       tandem verify -N NAME [--repair]   (re-reads both sides against the last sync)\n       tandem sessions | tandem status -N NAME | tandem forget -N NAME | tandem completions SHELL",
    disable_help_subcommand = true,
    after_help = "Exit status is an OR of: 1 resolvable conflicts (dry run), 2 unresolved conflicts, 4 named files missing, \
8 permission problems, 16 state or rules file problems, 32 invalid arguments, 64 a root cannot be reached, 128 other errors. \
tandem verify: 2 corruption found and not repaired, 8 a file could not be read, 0 every file verified or repaired."
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
    /// Data compression on the wire: zstd (level 6 for metadata, deltas and small files,
    /// 1 for large files sent whole), zstd:LEVEL, zstd:LEVEL,BULK or none [default: zstd
    /// over SSH, none for a local -r directory].
    #[arg(long = "compress", value_name = "zstd[:LEVEL[,BULK]]|none")]
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
    /// Parallel SSH channels for file data: auto (the default) opens more on a long link,
    /// one more per 4 ms of round trip; with :SIZE, files above SIZE (e.g. 64M) use their
    /// own channels.
    #[arg(long = "transfer-threads", value_name = "auto|N[:SIZE]")]
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
    /// With -C: verify the session this often (e.g. 1d), in the background at a bounded
    /// rate: what is corrupt is reported (and sets bit 2), `tandem verify --repair` fixes it.
    #[arg(
        long = "verify-interval",
        value_name = "DURATION",
        requires = "continuous"
    )]
    pub verify_interval: Option<String>,
    /// With -C: send a file only once it has stopped changing for this long (0 to 60s).
    #[arg(long = "cooloff", value_name = "DURATION", default_value = "3s")]
    pub cooloff: String,
    /// `tandem verify`: re-read both sides against the baseline (set by the word `verify`
    /// before the options).
    #[arg(long = "verify", hide = true)]
    pub verify: bool,
    /// With `tandem verify`: copy the good version over a corrupt copy (the corrupt one is
    /// kept in the keep directory, or beside it as NAME.corrupt-TIME).
    #[arg(long = "repair")]
    pub repair: bool,
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
