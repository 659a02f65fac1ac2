//! Where and how to connect: the command line first, then `$HOME/.ssh/config` (Host
//! aliases with HostName, Port, User, IdentityFile, ProxyJump, ProxyCommand, UserKnownHostsFile,
//! StrictHostKeyChecking, ConnectTimeout, ServerAliveInterval), then OpenSSH's defaults.
//! What would change where to connect and is not carried out is refused by name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::{HostParams, ParseRule, SshConfig};

use super::match_blocks::{self, Connection, MatchBlock};
use super::{Hop, SshOptions};
use crate::error::{Error, Result};

/// Connect timeout when neither the command line nor the config gives one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// One host to connect to, fully resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The name as typed (a config alias, perhaps).
    pub alias: String,
    /// The host to connect to (HostName, or the alias).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The login name.
    pub user: String,
    /// Keys to offer, in order: `-i`, then IdentityFile.
    pub identities: Vec<PathBuf>,
    /// Whether to offer the default `~/.ssh/id_*` keys (only when no key was named).
    pub default_identities: bool,
    /// Where host keys are recorded (the first is where new ones are learned).
    pub known_hosts: Vec<PathBuf>,
    /// Record an unknown host key instead of refusing it.
    pub accept_new: bool,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Keepalive interval (ServerAliveInterval).
    pub keepalive: Duration,
    /// ProxyCommand, its tokens expanded: run through `sh -c`, its stdin and stdout
    /// carry the SSH connection instead of a TCP socket.
    pub proxy_command: Option<String>,
}

impl Target {
    /// `user@host:port` for messages.
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            format!("{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// The hosts to go through (jump hosts first) and the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Jump hosts, in order.
    pub hops: Vec<Target>,
    /// The destination.
    pub target: Target,
}

/// The user this process runs as, the default login name.
pub fn local_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Some(u) = std::env::var_os(var).and_then(|v| v.into_string().ok()) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    let uid = rustix::process::getuid().as_raw().to_string();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[2] == uid)
                .map(|f| f[0].to_string())
        })
        .unwrap_or_else(|| "root".into())
}

fn home() -> Result<PathBuf> {
    dirs::home_dir().ok_or_else(|| {
        Error::Unreachable("cannot find the home directory (HOME is not set) for ~/.ssh".into())
    })
}

/// `~/.ssh/config` as read: the parsed config, and the `Match` blocks cut out of it.
struct Config {
    parsed: SshConfig,
    matches: Vec<MatchBlock>,
}

/// Reads `$HOME/.ssh/config` (an empty config when there is none).
fn read_config(home: &Path) -> Result<Config> {
    let path = home.join(".ssh/config");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Config {
                parsed: SshConfig::default(),
                matches: Vec::new(),
            })
        }
        Err(e) => {
            return Err(Error::Unreachable(format!(
                "cannot read '{}': {e}",
                path.display()
            )))
        }
    };
    let (text, matches) = match_blocks::cut(&text);
    let parsed = SshConfig::default()
        .home_dir(home)
        .parse(
            &mut &text[..],
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map_err(|e| {
            Error::Unreachable(format!(
                "cannot use '{}': {e}; fix the file or give the host's settings on the command line",
                path.display()
            ))
        })?;
    Ok(Config { parsed, matches })
}

/// Fails if a `Match` block may apply to `t` (tandem does not carry them out yet).
fn refuse_matching(matches: &[MatchBlock], t: &Target) -> Result<()> {
    let local = local_user();
    let c = Connection {
        alias: &t.alias,
        host: &t.host,
        user: &t.user,
        local_user: &local,
    };
    match matches.iter().find(|m| m.may_apply(&c)) {
        Some(m) => Err(Error::Unreachable(format!(
            "'{}': the Match block on line {} of ~/.ssh/config applies to it, and tandem does \
             not carry out Match blocks yet; put its settings in a Host block for this host",
            t.alias, m.line
        ))),
        None => Ok(()),
    }
}

/// OpenSSH's `%` tokens: `%d` home, `%u` local user, `%r` login, `%h` host, `%n` the
/// name as typed, `%p` port, `%%`.
fn tokens(s: &str, t: &Target, home: &Path) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&home.to_string_lossy()),
            Some('u') => out.push_str(&local_user()),
            Some('r') => out.push_str(&t.user),
            Some('h') => out.push_str(&t.host),
            Some('n') => out.push_str(&t.alias),
            Some('p') => out.push_str(&t.port.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// [`tokens`] in a path.
fn expand(p: &Path, t: &Target, home: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    if !s.contains('%') {
        return p.to_path_buf();
    }
    PathBuf::from(tokens(&s, t, home))
}

fn unsupported<'a>(p: &'a HostParams, key: &str) -> Option<&'a [String]> {
    p.unsupported_fields.get(key).map(Vec::as_slice)
}

/// Settings that decide where or how to connect and that tandem does not carry out:
/// refused by name, never ignored (ignored, tandem would dial another address than the
/// user's `ssh` does). The value that leaves each alone.
const REFUSED: [(&str, &str, &str); 2] = [
    ("canonicalizehostname", "no", "CanonicalizeHostname"),
    ("proxyusefdpass", "no", "ProxyUseFdpass"),
];

/// Fails on a setting of [`REFUSED`] for `alias`.
fn refuse_unsupported(p: &HostParams, alias: &str) -> Result<()> {
    for (key, off, name) in REFUSED {
        let set = unsupported(p, key)
            .or_else(|| p.ignored_fields.get(key).map(Vec::as_slice))
            .and_then(|v| v.first())
            .filter(|v| !v.eq_ignore_ascii_case(off));
        if let Some(value) = set {
            return Err(Error::Unreachable(format!(
                "'{alias}' has '{name} {value}' in ~/.ssh/config, which tandem does not carry \
                 out; it will not connect another way than ssh would. Reach the host through \
                 a jump host (-J, or ProxyJump in the config) instead"
            )));
        }
    }
    Ok(())
}

/// Resolves one host: the command line's values first, then the config's.
fn resolve_host(
    config: &SshConfig,
    home: &Path,
    hop: &Hop,
    opts: &SshOptions,
) -> Result<(Target, Option<Vec<String>>)> {
    let p = config.query(&hop.host);
    refuse_unsupported(&p, &hop.host)?;
    let mut t = Target {
        alias: hop.host.clone(),
        host: p
            .host_name
            .clone()
            .map(|h| h.replace("%h", &hop.host))
            .unwrap_or_else(|| hop.host.clone()),
        port: hop.port.or(p.port).unwrap_or(22),
        user: hop
            .user
            .clone()
            .or_else(|| p.user.clone())
            .unwrap_or_else(local_user),
        identities: Vec::new(),
        default_identities: false,
        known_hosts: Vec::new(),
        accept_new: opts.accept_new_host_key,
        connect_timeout: opts
            .connect_timeout
            .or(p.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        keepalive: p.server_alive_interval.unwrap_or(Duration::from_secs(15)),
        proxy_command: None,
    };
    let proxy = unsupported(&p, "proxycommand")
        .or_else(|| p.ignored_fields.get("proxycommand").map(Vec::as_slice))
        .filter(|v| !(v.len() == 1 && v[0].eq_ignore_ascii_case("none")))
        .filter(|v| !v.is_empty());
    t.proxy_command = proxy.map(|words| tokens(&words.join(" "), &t, home));
    let from_config = p.identity_file.clone().unwrap_or_default();
    t.default_identities = opts.identities.is_empty() && from_config.is_empty();
    t.identities = opts
        .identities
        .iter()
        .cloned()
        .chain(from_config.iter().map(|f| expand(f, &t, home)))
        .collect();
    t.known_hosts = match unsupported(&p, "userknownhostsfile") {
        Some(files) if !files.is_empty() => files
            .iter()
            .filter(|f| f.as_str() != "none")
            .map(|f| {
                let f = f
                    .strip_prefix("~/")
                    .map_or(PathBuf::from(f), |r| home.join(r));
                expand(&f, &t, home)
            })
            .collect(),
        _ => vec![
            home.join(".ssh/known_hosts"),
            home.join(".ssh/known_hosts2"),
        ],
    };
    if let Some([v, ..]) = unsupported(&p, "stricthostkeychecking") {
        // "no" in OpenSSH also lets changed keys through; here a changed key is always
        // refused, so it means the same as accept-new.
        if matches!(v.to_ascii_lowercase().as_str(), "accept-new" | "no" | "off") {
            t.accept_new = true;
        }
    }
    Ok((t, p.proxy_jump.clone()))
}

/// Resolves the destination and its jump hosts. Jump hosts come from `-J`/`--proxy`, else
/// from the destination's ProxyJump (`none` for none).
pub fn resolve(dest: &Hop, opts: &SshOptions) -> Result<Route> {
    let home = home()?;
    let Config {
        parsed: config,
        matches,
    } = read_config(&home)?;
    let (target, config_jumps) = resolve_host(&config, &home, dest, opts)?;
    refuse_matching(&matches, &target)?;
    let jumps = match &opts.jumps {
        Some(j) => j.clone(),
        None => match config_jumps {
            Some(list) if list.iter().all(|j| j != "none") => list
                .iter()
                .flat_map(|j| j.split(','))
                .map(|j| Hop::parse(j).map_err(Error::Usage))
                .collect::<Result<Vec<_>>>()?,
            _ => Vec::new(),
        },
    };
    let hops = jumps
        .iter()
        .map(|j| resolve_host(&config, &home, j, opts).map(|(t, _)| t))
        .collect::<Result<Vec<_>>>()?;
    for hop in &hops {
        refuse_matching(&matches, hop)?;
    }
    Ok(Route { hops, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SshConfig {
        SshConfig::default()
            .home_dir("/home/me")
            .parse(
                &mut text.as_bytes(),
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .unwrap()
    }

    fn hop(s: &str) -> Hop {
        Hop::parse(s).unwrap()
    }

    #[test]
    fn aliases_fill_in_what_the_command_line_leaves_out() {
        let c = parse(
            "Host backup\n  HostName 10.1.2.3\n  Port 2222\n  User bk\n  IdentityFile ~/.ssh/bk_%r\n  UserKnownHostsFile ~/kh\n  StrictHostKeyChecking accept-new\n  ConnectTimeout 4\n  ProxyJump jump.example\n\tServerAliveInterval 9\nHost *\n  User other\n",
        );
        let home = Path::new("/home/me");
        let opts = SshOptions::default();
        let (t, jumps) = resolve_host(&c, home, &hop("backup"), &opts).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.1.2.3", 2222, "bk")
        );
        assert_eq!(t.identities, vec![PathBuf::from("/home/me/.ssh/bk_bk")]);
        assert!(!t.default_identities && t.accept_new);
        assert_eq!(t.known_hosts, vec![PathBuf::from("/home/me/kh")]);
        assert_eq!(t.connect_timeout, Duration::from_secs(4));
        assert_eq!(t.keepalive, Duration::from_secs(9));
        assert_eq!(jumps, Some(vec!["jump.example".to_string()]));
        // The command line wins.
        let opts = SshOptions {
            identities: vec!["/k".into()],
            connect_timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let (t, _) = resolve_host(&c, home, &hop("root@backup:22"), &opts).unwrap();
        assert_eq!((t.port, t.user.as_str()), (22, "root"));
        assert_eq!(t.identities[0], PathBuf::from("/k"));
        assert_eq!(t.connect_timeout, Duration::from_secs(1));
        // Unlisted hosts get the defaults.
        let (t, _) = resolve_host(&c, home, &hop("elsewhere"), &opts).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("elsewhere", 22, "other")
        );
        assert_eq!(t.known_hosts[0], PathBuf::from("/home/me/.ssh/known_hosts"));
    }
}
