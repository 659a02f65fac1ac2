//! The parsed flags checked and turned into a [`Job`]: direction and conflict policy,
//! filters, keep directories, rates, continuous-mode timings, ACL modes, compression.

use super::*;

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
pub(super) fn keep_dir_pattern(dir: &Path) -> Result<Option<String>> {
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
pub(super) fn parse_rate(s: &str) -> Result<u64> {
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
        verify_interval: interval(&args.verify_interval, "--verify-interval")?,
    }))
}

pub(super) fn parse_max_delete(s: &str) -> Result<DeleteLimit> {
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

pub(super) fn conflict_suffix() -> String {
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
    format!(".conflict-{host}-{}", crate::output::name_stamp())
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
        background: false,
    };
    Ok((job, notes))
}

/// The reconciliation policy the options ask for (a note when they do not apply).
pub(super) fn policy(args: &Args, direction: Direction, notes: &mut Vec<String>) -> Policy {
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
pub(super) fn filter_spec(args: &Args) -> Result<FilterSpec> {
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
pub(super) fn acl_modes(args: &Args) -> Result<[crate::disk::xattrs::AclMode; 2]> {
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
pub(super) fn compression(args: &Args, remote: &RemoteSpec) -> Result<Compression> {
    // Compressing costs CPU and saves nothing on a local pipe; over a network it pays.
    Ok(match (&args.compress, remote) {
        (Some(c), _) => Compression::parse(c).map_err(Error::Usage)?,
        (None, RemoteSpec::Local(_)) => Compression::None,
        (None, RemoteSpec::Ssh { .. }) => Compression::default(),
    })
}

/// The command line as one line for the log.
pub(super) fn shell_words(args: impl Iterator<Item = String>) -> String {
    args.map(|a| crate::output::dryrun::shell_quote(a.as_bytes()))
        .collect::<Vec<_>>()
        .join(" ")
}
