//! Where and how to connect: the command line first, then `~/.ssh/config` and
//! `/etc/ssh/ssh_config` as OpenSSH reads them (see [`config_file`]), then OpenSSH's
//! defaults. Settings that would change where or how to connect and that tandem does not
//! carry out are refused by name, never ignored.
//!
//! Over 600 lines only with its tests (about 180 of them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config_file::{self, Directive, Files, Query, Settings};
use super::tokens::Tokens;
use super::{Hop, SshOptions};
use crate::error::{Error, Result};

/// Connect timeout when neither the command line nor the config gives one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How to log in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Login {
    /// Keys to offer, in order: `-i`, then IdentityFile.
    pub identities: Vec<PathBuf>,
    /// Whether to offer the default `~/.ssh/id_*` keys (only when no key was named).
    pub default_identities: bool,
    /// CertificateFile: certificates to offer with the keys they certify (besides any
    /// `KEY-cert.pub` next to a key).
    pub certificates: Vec<PathBuf>,
    /// IdentitiesOnly: offer only the named keys, even when ssh-agent holds others.
    pub identities_only: bool,
    /// The ssh-agent socket (IdentityAgent, else SSH_AUTH_SOCK); `None`: no agent.
    pub agent: Option<PathBuf>,
    /// AddKeysToAgent.
    pub add_to_agent: AddToAgent,
    /// BatchMode: never ask for a passphrase or password.
    pub batch: bool,
}

/// AddKeysToAgent: whether a key read from a file is handed to ssh-agent after it logged in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddToAgent {
    /// No (the default).
    #[default]
    No,
    /// Yes, unless a person at the terminal says no (`ask`) or without asking (`yes`),
    /// with the agent asking before each use (`confirm`) and for so many seconds.
    Yes {
        /// `ask`: ask first.
        ask: bool,
        /// `confirm`.
        confirm: bool,
        /// A lifetime in seconds.
        lifetime: Option<u32>,
    },
}

/// How the host key is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostKeys {
    /// UserKnownHostsFile: where keys are looked up; the first is where new ones are learned.
    pub files: Vec<PathBuf>,
    /// GlobalKnownHostsFile: looked up too, never written.
    pub global: Vec<PathBuf>,
    /// HostKeyAlias: the name keys are recorded under, instead of `[host]:port`.
    pub alias: Option<String>,
    /// Record an unknown host key instead of refusing it (never a changed one).
    pub accept_new: bool,
    /// HashKnownHosts: learned names are hashed.
    pub hash: bool,
}

impl HostKeys {
    /// Every file to look keys up in.
    pub fn lookup_files(&self) -> Vec<PathBuf> {
        self.files.iter().chain(&self.global).cloned().collect()
    }

    /// The name and port keys of `host:port` are recorded under (HostKeyAlias has no port).
    pub fn recorded_as<'a>(&'a self, host: &'a str, port: u16) -> (&'a str, u16) {
        match &self.alias {
            Some(a) => (a, 22),
            None => (host, port),
        }
    }
}

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
    /// How to log in.
    pub login: Login,
    /// How the host key is checked.
    pub host_keys: HostKeys,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Keepalive interval (ServerAliveInterval).
    pub keepalive: Duration,
    /// Unanswered keepalives before the connection counts as dead (ServerAliveCountMax).
    pub keepalive_max: usize,
    /// AddressFamily: `Some(true)` IPv4 only, `Some(false)` IPv6 only.
    pub ipv4: Option<bool>,
    /// ProxyCommand, its tokens expanded: run through `sh -c`, its stdin and stdout
    /// carry the SSH connection instead of a TCP socket.
    pub proxy_command: Option<String>,
    /// ControlPath, its tokens expanded: where an open ssh master connection for this
    /// host would be (ssh rides it; so does tandem, through the system ssh).
    pub control_path: Option<PathBuf>,
}

impl Target {
    /// A target with OpenSSH's defaults, for `user@host:port`.
    pub fn new(alias: &str, host: &str, port: u16, user: &str) -> Target {
        Target {
            alias: alias.into(),
            host: host.into(),
            port,
            user: user.into(),
            login: Login::default(),
            host_keys: HostKeys::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive: Duration::from_secs(15),
            keepalive_max: 3,
            ipv4: None,
            proxy_command: None,
            control_path: None,
        }
    }

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
    let uid = crate::disk::sys::user_id().to_string();
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

/// Settings that decide where or how to connect and that tandem's own client does not
/// carry out: refused by name, never ignored (ignored, tandem would connect another way
/// than the user's `ssh` does). Each with the values that leave it off.
const REFUSED: [(&str, &[&str], &str); 8] = [
    (
        "canonicalizehostname",
        &["no", "false"],
        "CanonicalizeHostname",
    ),
    ("proxyusefdpass", &["no", "false"], "ProxyUseFdpass"),
    ("bindaddress", &[], "BindAddress"),
    ("bindinterface", &[], "BindInterface"),
    ("knownhostscommand", &["none"], "KnownHostsCommand"),
    ("pkcs11provider", &["none"], "PKCS11Provider"),
    ("remotecommand", &["none"], "RemoteCommand"),
    ("tunnel", &["no", "false"], "Tunnel"),
];

/// Fails on a setting of [`REFUSED`] for `alias`.
fn refuse_unsupported(s: &Settings, alias: &str) -> Result<()> {
    for (key, off, name) in REFUSED {
        let Some(d) = s.first(key) else { continue };
        if off.iter().any(|o| d.value().eq_ignore_ascii_case(o)) {
            continue;
        }
        return Err(Error::Usage(format!(
            "'{alias}' has '{name} {}' ({}), which tandem's own SSH client does not carry \
             out, and it will not connect another way than ssh would; run tandem through the \
             system ssh with -e ssh",
            d.raw, d.place
        )));
    }
    Ok(())
}

/// A yes/no setting.
fn yes(d: Option<&Directive>) -> Result<Option<bool>> {
    let Some(d) = d else { return Ok(None) };
    match d.value().to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(Some(true)),
        "no" | "false" => Ok(Some(false)),
        _ => Err(d.bad("expected yes or no")),
    }
}

/// A time as ssh_config(5) writes it: seconds, or `1h30m` with s, m, h, d, w.
fn time(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return None,
        };
        total += number.parse::<u64>().ok()? * unit;
        number.clear();
    }
    if !number.is_empty() {
        total += number.parse::<u64>().ok()?;
    }
    Some(total)
}

fn seconds(d: Option<&Directive>) -> Result<Option<Duration>> {
    d.map(|d| {
        time(d.value())
            .map(Duration::from_secs)
            .ok_or_else(|| d.bad("not a time (write seconds, or e.g. 1m30s)"))
    })
    .transpose()
}

/// AddKeysToAgent: yes, no, ask or confirm, each maybe followed by a lifetime, or a
/// lifetime alone.
fn add_to_agent(d: Option<&Directive>) -> Result<AddToAgent> {
    let Some(d) = d else {
        return Ok(AddToAgent::No);
    };
    let mut words = d.args.iter().map(|a| a.to_ascii_lowercase());
    let first = words.next().unwrap_or_default();
    let (ask, confirm, lifetime) = match first.as_str() {
        "no" | "false" => return Ok(AddToAgent::No),
        "yes" | "true" => (false, false, words.next()),
        "ask" => (true, false, words.next()),
        "confirm" => (false, true, words.next()),
        _ => (false, false, Some(first)),
    };
    let lifetime = lifetime
        .map(|l| {
            time(&l)
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| d.bad("expected yes, no, ask, confirm, or a lifetime"))
        })
        .transpose()?;
    Ok(AddToAgent::Yes {
        ask,
        confirm,
        lifetime,
    })
}

/// IdentityAgent: a socket path (tokens, `~`), `SSH_AUTH_SOCK`, `$VAR`, or `none`.
fn identity_agent(d: Option<&Directive>, tokens: &Tokens) -> Option<PathBuf> {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    match d.map(Directive::value) {
        None | Some("SSH_AUTH_SOCK") => from_env("SSH_AUTH_SOCK"),
        Some("none") => None,
        Some(v) if v.starts_with('$') => from_env(&v[1..]),
        Some(v) => Some(tokens.path(v)),
    }
}

/// Path lists (UserKnownHostsFile, GlobalKnownHostsFile): the first line's words, `none`
/// for none, else `default`.
fn paths(d: Option<&Directive>, tokens: &Tokens, default: &[PathBuf]) -> Vec<PathBuf> {
    match d {
        None => default.to_vec(),
        Some(d) => d
            .args
            .iter()
            .filter(|f| f.as_str() != "none")
            .map(|f| tokens.path(f))
            .collect(),
    }
}

/// One host resolved: its target, and the jump hosts its ProxyJump names.
struct Resolved {
    target: Target,
    jumps: Vec<Hop>,
}

/// Resolves one host: the command line's values first, then the config's;
/// `command_line_proxy` is `--proxy-command`, for the destination.
fn resolve_host(
    files: &Files,
    home: &Path,
    hop: &Hop,
    opts: &SshOptions,
    command_line_proxy: Option<&str>,
) -> Result<Resolved> {
    let local = local_user();
    let query = Query {
        original: &hop.host,
        user: hop.user.as_deref(),
        port: hop.port,
        home,
        local_user: &local,
    };
    let s = config_file::read(files, &query)?;
    refuse_unsupported(&s, &hop.host)?;
    let host = match s.first("hostname") {
        Some(d) => d.value().replace("%h", &hop.host).replace("%%", "%"),
        None => hop.host.clone(),
    };
    let port = match (hop.port, s.first("port")) {
        (Some(p), _) => p,
        (None, Some(d)) => d
            .value()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| d.bad("not a port number"))?,
        (None, None) => 22,
    };
    let user = hop
        .user
        .clone()
        .or_else(|| s.first("user").map(|d| d.value().to_string()))
        .unwrap_or_else(|| local.clone());
    let mut t = Target::new(&hop.host, &host, port, &user);
    let alias = s
        .first("hostkeyalias")
        .map(|d| d.value().to_string())
        .filter(|a| a != "none");
    let proxy = s.first_of(&["proxycommand", "proxyjump"]);
    let jump_text = proxy
        .filter(|d| d.key == "proxyjump")
        .map_or("", Directive::value);
    let tokens = Tokens {
        home,
        local_user: &local,
        user: &user,
        host: &host,
        original: &hop.host,
        port,
        host_key_alias: alias.as_deref(),
        jump: jump_text,
    };
    t.connect_timeout = match opts.connect_timeout {
        Some(c) => c,
        None => seconds(s.first("connecttimeout"))?.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    };
    if let Some(k) = seconds(s.first("serveraliveinterval"))? {
        t.keepalive = k;
    }
    if let Some(d) = s.first("serveralivecountmax") {
        t.keepalive_max = d.value().parse().map_err(|_| d.bad("not a number"))?;
    }
    t.ipv4 = match s.first("addressfamily") {
        None => None,
        Some(d) => match d.value().to_ascii_lowercase().as_str() {
            "any" => None,
            "inet" => Some(true),
            "inet6" => Some(false),
            _ => return Err(d.bad("expected any, inet or inet6")),
        },
    };
    let mut jumps = Vec::new();
    match (command_line_proxy, proxy) {
        // --proxy-command wins over the config, as ssh's -o ProxyCommand would.
        (Some("none"), _) => {}
        (Some(cmd), _) => t.proxy_command = Some(tokens.expand(cmd)),
        (None, Some(d)) if d.key == "proxycommand" && d.value() != "none" => {
            t.proxy_command = Some(tokens.expand(&d.raw));
        }
        (None, Some(d)) if d.key == "proxyjump" && d.value() != "none" => {
            for j in d.value().split(',') {
                jumps.push(Hop::parse(j).map_err(|why| d.bad(&why))?);
            }
        }
        _ => {}
    }
    t.control_path = s
        .first("controlpath")
        .filter(|d| d.value() != "none")
        .map(|d| tokens.path(d.value()));
    t.login = login(&s, &tokens, opts)?;
    let ssh_dir = home.join(".ssh");
    let etc = Path::new("/etc/ssh");
    t.host_keys = HostKeys {
        files: paths(
            s.first("userknownhostsfile"),
            &tokens,
            &[ssh_dir.join("known_hosts"), ssh_dir.join("known_hosts2")],
        ),
        global: paths(
            s.first("globalknownhostsfile"),
            &tokens,
            &[etc.join("ssh_known_hosts"), etc.join("ssh_known_hosts2")],
        ),
        alias,
        accept_new: opts.accept_new_host_key || strict_allows_new(s.first("stricthostkeychecking")),
        hash: yes(s.first("hashknownhosts"))?.unwrap_or(false),
    };
    Ok(Resolved { target: t, jumps })
}

/// StrictHostKeyChecking `accept-new` (or `no`: in OpenSSH it also lets changed keys
/// through; here a changed key is always refused, so it means the same as accept-new).
fn strict_allows_new(d: Option<&Directive>) -> bool {
    d.is_some_and(|d| {
        matches!(
            d.value().to_ascii_lowercase().as_str(),
            "accept-new" | "no" | "off" | "false"
        )
    })
}

fn login(s: &Settings, tokens: &Tokens, opts: &SshOptions) -> Result<Login> {
    let from_config: Vec<PathBuf> = s
        .all("identityfile")
        .flat_map(|d| &d.args)
        .map(|f| tokens.path(f))
        .collect();
    Ok(Login {
        default_identities: opts.identities.is_empty() && from_config.is_empty(),
        identities: opts.identities.iter().cloned().chain(from_config).collect(),
        certificates: s
            .all("certificatefile")
            .flat_map(|d| &d.args)
            .map(|f| tokens.path(f))
            .collect(),
        identities_only: yes(s.first("identitiesonly"))?.unwrap_or(false),
        agent: identity_agent(s.first("identityagent"), tokens),
        add_to_agent: add_to_agent(s.first("addkeystoagent"))?,
        batch: yes(s.first("batchmode"))?.unwrap_or(false),
    })
}

/// How deep jump hosts may be reached through their own jump hosts.
const MAX_JUMP_DEPTH: usize = 8;

/// `hop` and the hosts before it: its jump hosts (`explicit`, else its ProxyJump), the
/// first of which is reached as its own config says (its own ProxyJump or ProxyCommand),
/// the others each through the one before, as `ssh -J` does.
fn chain(
    files: &Files,
    home: &Path,
    hop: &Hop,
    opts: &SshOptions,
    explicit: Option<&[Hop]>,
    depth: usize,
) -> Result<Vec<Target>> {
    if depth > MAX_JUMP_DEPTH {
        return Err(Error::Usage(format!(
            "'{}': jump hosts lead through more than {MAX_JUMP_DEPTH} others (a ProxyJump \
             loop in ~/.ssh/config?)",
            hop.host
        )));
    }
    let command_line_proxy = opts.proxy_command.as_deref().filter(|_| depth == 0);
    let Resolved { mut target, jumps } = resolve_host(files, home, hop, opts, command_line_proxy)?;
    let jumps = explicit.map_or(jumps, <[Hop]>::to_vec);
    let mut out = Vec::new();
    for (i, j) in jumps.iter().enumerate() {
        if i == 0 {
            out.extend(chain(files, home, j, opts, None, depth + 1)?);
        } else {
            let mut t = resolve_host(files, home, j, opts, None)?.target;
            t.proxy_command = None;
            out.push(t);
        }
    }
    if !out.is_empty() {
        // Jump hosts given on the command line win over the config's ProxyCommand.
        target.proxy_command = None;
    }
    out.push(target);
    Ok(out)
}

/// Resolves the destination and its jump hosts. Jump hosts come from `-J`/`--proxy`, else
/// from the destination's ProxyJump (`none` for none).
pub fn resolve(dest: &Hop, opts: &SshOptions) -> Result<Route> {
    let home = home()?;
    resolve_in(&Files::standard(&home), &home, dest, opts)
}

fn resolve_in(files: &Files, home: &Path, dest: &Hop, opts: &SshOptions) -> Result<Route> {
    let mut hosts = chain(files, home, dest, opts, opts.jumps.as_deref(), 0)?;
    let target = hosts.pop().expect("a chain ends at its destination");
    Ok(Route {
        hops: hosts,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Home {
        dir: tempfile::TempDir,
    }

    impl Home {
        fn new(config: &str) -> Home {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join(".ssh")).unwrap();
            std::fs::write(dir.path().join(".ssh/config"), config).unwrap();
            Home { dir }
        }

        fn route(&self, dest: &str, opts: &SshOptions) -> Result<Route> {
            let files = Files {
                user: self.dir.path().join(".ssh/config"),
                system: self.dir.path().join("no-system-config"),
            };
            resolve_in(&files, self.dir.path(), &Hop::parse(dest).unwrap(), opts)
        }

        fn target(&self, dest: &str) -> Target {
            self.route(dest, &SshOptions::default()).unwrap().target
        }
    }

    #[test]
    fn aliases_fill_in_what_the_command_line_leaves_out() {
        let h = Home::new(
            "Host backup\n  HostName 10.1.2.3\n  Port 2222\n  User bk\n  IdentityFile ~/.ssh/bk_%r\n  UserKnownHostsFile ~/kh ~/kh2\n  GlobalKnownHostsFile /g\n  StrictHostKeyChecking accept-new\n  ConnectTimeout 4\n  ProxyJump jump.example\n\tServerAliveInterval 1m\nHost *\n  User other\n",
        );
        let home = h.dir.path();
        let r = h.route("backup", &SshOptions::default()).unwrap();
        let t = &r.target;
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.1.2.3", 2222, "bk")
        );
        assert_eq!(t.login.identities, vec![home.join(".ssh/bk_bk")]);
        assert!(!t.login.default_identities && t.host_keys.accept_new);
        assert_eq!(t.host_keys.files, vec![home.join("kh"), home.join("kh2")]);
        assert_eq!(t.host_keys.global, vec![PathBuf::from("/g")]);
        assert_eq!(t.connect_timeout, Duration::from_secs(4));
        assert_eq!(t.keepalive, Duration::from_secs(60));
        assert_eq!(r.hops.len(), 1);
        assert_eq!(
            (r.hops[0].host.as_str(), r.hops[0].user.as_str()),
            ("jump.example", "other")
        );
        // The command line wins.
        let opts = SshOptions {
            identities: vec!["/k".into()],
            connect_timeout: Some(Duration::from_secs(1)),
            jumps: Some(vec![]),
            ..Default::default()
        };
        let t = h.route("root@backup:22", &opts).unwrap().target;
        assert_eq!((t.port, t.user.as_str()), (22, "root"));
        assert_eq!(t.login.identities[0], PathBuf::from("/k"));
        assert_eq!(t.connect_timeout, Duration::from_secs(1));
        // Unlisted hosts get the defaults.
        let t = h.target("elsewhere");
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("elsewhere", 22, "other")
        );
        assert_eq!(t.host_keys.files[0], home.join(".ssh/known_hosts"));
        assert_eq!(
            t.host_keys.global[0],
            PathBuf::from("/etc/ssh/ssh_known_hosts")
        );
    }

    #[test]
    fn login_and_host_key_settings() {
        let h = Home::new(
            "Host a\n  HostName %h.example\n  HostKeyAlias box\n  CertificateFile ~/.ssh/c1\n  CertificateFile ~/.ssh/c2\n  IdentitiesOnly yes\n  IdentityAgent ~/agent.%r\n  AddKeysToAgent confirm 1h\n  HashKnownHosts yes\n  BatchMode yes\n  AddressFamily inet\nHost b\n  IdentityAgent none\n  AddKeysToAgent 30m\n",
        );
        let home = h.dir.path();
        let a = h.target("me@a");
        assert_eq!(a.host, "a.example");
        assert_eq!(a.host_keys.recorded_as(&a.host, 2200), ("box", 22));
        assert!(a.host_keys.hash);
        assert_eq!(
            a.login.certificates,
            vec![home.join(".ssh/c1"), home.join(".ssh/c2")]
        );
        assert!(a.login.identities_only && a.login.batch);
        assert_eq!(a.login.agent, Some(home.join("agent.me")));
        assert_eq!(
            a.login.add_to_agent,
            AddToAgent::Yes {
                ask: false,
                confirm: true,
                lifetime: Some(3600)
            }
        );
        assert_eq!(a.ipv4, Some(true));
        let b = h.target("b");
        assert_eq!(b.login.agent, None);
        assert_eq!(
            b.login.add_to_agent,
            AddToAgent::Yes {
                ask: false,
                confirm: false,
                lifetime: Some(1800)
            }
        );
    }

    #[test]
    fn the_first_of_proxycommand_and_proxyjump_wins_and_jump_hosts_have_their_own_way_in() {
        let h = Home::new(
            "Host cmd\n  ProxyCommand nc %h %p\n  ProxyJump j1\nHost jmp\n  ProxyJump j1,j2\n  ProxyCommand nc %h %p\nHost j1\n  ProxyCommand relay %h\nHost j2\n  ProxyCommand never\n",
        );
        let r = h.route("cmd", &SshOptions::default()).unwrap();
        assert!(r.hops.is_empty());
        assert_eq!(r.target.proxy_command.as_deref(), Some("nc cmd 22"));
        let r = h.route("jmp", &SshOptions::default()).unwrap();
        assert_eq!(r.target.proxy_command, None);
        let hops: Vec<_> = r
            .hops
            .iter()
            .map(|t| (t.host.as_str(), t.proxy_command.as_deref()))
            .collect();
        assert_eq!(hops, [("j1", Some("relay j1")), ("j2", None)]);
        // -J on the command line wins over the config's ProxyCommand.
        let opts = SshOptions {
            jumps: Some(vec![Hop::parse("j2").unwrap()]),
            ..Default::default()
        };
        let r = h.route("cmd", &opts).unwrap();
        assert_eq!(r.target.proxy_command, None);
        assert_eq!(r.hops[0].proxy_command.as_deref(), Some("never"));
        // --proxy-command wins over the config's ProxyJump and ProxyCommand.
        let opts = SshOptions {
            proxy_command: Some("relay %h %p %r".into()),
            ..Default::default()
        };
        let r = h.route("me@jmp", &opts).unwrap();
        assert!(r.hops.is_empty());
        assert_eq!(r.target.proxy_command.as_deref(), Some("relay jmp 22 me"));
        let opts = SshOptions {
            proxy_command: Some("none".into()),
            ..Default::default()
        };
        assert_eq!(h.route("cmd", &opts).unwrap().target.proxy_command, None);
        let loop_ = Home::new("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n");
        let e = loop_
            .route("a", &SshOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("loop"), "{e}");
    }

    #[test]
    fn settings_that_change_the_connection_and_are_not_carried_out_are_refused() {
        for (line, name) in [
            ("CanonicalizeHostname yes", "CanonicalizeHostname"),
            ("BindAddress 10.0.0.1", "BindAddress"),
            ("KnownHostsCommand /bin/true", "KnownHostsCommand"),
            ("RemoteCommand top", "RemoteCommand"),
        ] {
            let h = Home::new(&format!("Host x\n  {line}\n"));
            let e = h
                .route("x", &SshOptions::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(name) && e.contains("-e ssh") && e.contains("line 2"),
                "{e}"
            );
            assert!(h.route("y", &SshOptions::default()).is_ok());
        }
        let h = Home::new("Host x\n  CanonicalizeHostname no\n  Port none\n");
        let e = h
            .route("x", &SshOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a port number"), "{e}");
    }
}
