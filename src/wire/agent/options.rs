//! What the agent is told on its command line (`--root`, `--acls`, `--keep-dir`, ...), and
//! how the client writes that command line.

use super::*;
use crate::disk::compress::Compression;

/// How the agent was started.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The root it serves.
    pub root: PathBuf,
    /// How errors name this side, e.g. `remote 'host:/srv'`.
    pub label: String,
    /// Preserve owner and group.
    pub owner: bool,
    /// Compression of its frames.
    pub compression: Compression,
    /// Keep hard links (scan names of one inode as links).
    pub hard_links: bool,
    /// Where this side keeps ACLs and xattrs (`--preserve-acls`).
    pub acls: crate::disk::xattrs::AclMode,
    /// Threads that look entries up while scanning (`--scan-threads`).
    pub scan_threads: usize,
    /// The client's cap on the wire in bits per second (`-l`); not the agent's business.
    pub rate: Option<u64>,
    /// `--keep-dir`: where deleted and replaced entries are kept (relative to the root, or
    /// absolute).
    pub keep_dir: Option<PathBuf>,
    /// `--log DIR[:MB]` (the client's `-R`): this side's log.
    pub log: Option<crate::output::log::LogSpec>,
    /// `--background`: run behind everything else on the host (`tandem verify`).
    pub background: bool,
}

impl AgentOptions {
    /// Parses the agent's command line (`--root DIR [--label TEXT] [--preserve-owner]
    /// [--compress zstd[:N[,BULK]]|none]`).
    pub fn parse(args: &[String]) -> Result<AgentOptions, String> {
        let mut root = None;
        let mut label = None;
        let mut owner = false;
        let mut hard_links = true;
        let mut scan_threads = 1;
        let mut acls = crate::disk::xattrs::AclMode::None;
        let mut compression = Compression::default();
        let mut keep_dir = None;
        let mut log = None;
        let mut background = false;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--root" => root = Some(PathBuf::from(value()?)),
                "--label" => label = Some(value()?),
                "--preserve-owner" => owner = true,
                "--no-hard-links" => hard_links = false,
                "--acls" => acls = crate::disk::xattrs::AclMode::parse(&value()?)?,
                "--scan-threads" => scan_threads = parse_threads(&value()?)?,
                "--die-with-parent" => die_with_parent()?,
                "--compress" => compression = Compression::parse(&value()?)?,
                "--keep-dir" => keep_dir = Some(PathBuf::from(value()?)),
                "--log" => log = Some(crate::output::log::LogSpec::parse(&value()?)?),
                "--background" => background = true,
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        let root = root.ok_or("missing --root DIR")?;
        let label = label.unwrap_or_else(|| format!("remote '{}'", root.display()));
        Ok(AgentOptions {
            root,
            label,
            owner,
            compression,
            hard_links,
            acls,
            scan_threads,
            rate: None,
            keep_dir,
            log,
            background,
        })
    }

    /// How the client talks to this agent.
    pub fn link(&self) -> crate::endpoint::remote::Link {
        crate::endpoint::remote::Link {
            compression: self.compression,
            rate: self.rate,
        }
    }

    /// The command line that [`AgentOptions::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--root".to_string(),
            self.root.to_string_lossy().into_owned(),
            "--label".to_string(),
            self.label.clone(),
        ];
        if self.owner {
            args.push("--preserve-owner".into());
        }
        if !self.hard_links {
            args.push("--no-hard-links".into());
        }
        // Only when asked for: an agent from before the option still serves the rest.
        if self.scan_threads > 1 {
            args.push("--scan-threads".into());
            args.push(self.scan_threads.to_string());
        }
        if self.acls != crate::disk::xattrs::AclMode::None {
            args.push("--acls".into());
            args.push(self.acls.word().into());
        }
        if let Some(k) = &self.keep_dir {
            args.push("--keep-dir".into());
            args.push(k.to_string_lossy().into_owned());
        }
        if let Some(l) = &self.log {
            args.push("--log".into());
            args.push(l.to_arg());
        }
        if self.background {
            args.push("--background".into());
        }
        args.push("--compress".into());
        args.push(self.compression.to_arg());
        args
    }
}

/// `--scan-threads N`: a count from 1 to [`MAX_SCAN_THREADS`].
pub(super) fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=MAX_SCAN_THREADS) => Ok(n),
        _ => Err(format!(
            "--scan-threads takes a count from 1 to {MAX_SCAN_THREADS}, not '{s}'"
        )),
    }
}

/// Most threads a scan may use.
pub const MAX_SCAN_THREADS: usize = 64;
