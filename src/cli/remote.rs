//! The other side on the command line: `-r` as a local directory, `[USER@]HOST:PATH` or
//! `ssh://` URL (a password refused, masked), and the SSH options that say how to reach it.

use super::*;

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
pub(super) fn remote_url(value: &str, port: Option<u16>) -> Result<Option<RemoteSpec>> {
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

pub(super) fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

pub(super) fn parse_transfer_threads(s: &str) -> Result<TransferThreads> {
    let bad = |why: &str| {
        Error::Usage(format!(
            "bad --transfer-threads '{s}': {why}; give auto, N or N:SIZE, e.g. 4 or 4:64M"
        ))
    };
    let (n, size) = match s.split_once(':') {
        Some((n, size)) => (n, Some(size)),
        None => (s, None),
    };
    let count = match n {
        "auto" => None,
        n => Some(
            n.parse::<u32>()
                .ok()
                .filter(|n| (1..=crate::wire::protocol::MAX_STREAMS).contains(n))
                .ok_or_else(|| bad("N must be auto or 1 to 64"))?,
        ),
    };
    let large_above = size
        .map(|z| parse_size::parse_size(z).map_err(|e| bad(&e.to_string())))
        .transpose()?;
    Ok(TransferThreads { count, large_above })
}

pub(super) fn parse_timeout(s: &str) -> Result<std::time::Duration> {
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
pub(super) fn ssh_options(
    args: &Args,
    remote: &RemoteSpec,
    notes: &mut Vec<String>,
) -> Result<SshOptions> {
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
        || opts.threads.count.is_some_and(|n| n > 1);
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
