//! The SSH transport: russh connects (through jump hosts if asked), checks the host key
//! against known_hosts, logs in, starts (or installs) `tandem-agent` on the host and hands
//! the rest of the program a byte stream, plus extra channels for `--transfer-threads`.
//! russh stays in this module; the settings types below do not need it.

#[cfg(feature = "ssh")]
mod agents;
#[cfg(feature = "ssh")]
mod auth;
#[cfg(feature = "ssh")]
pub mod bootstrap;
#[cfg(feature = "ssh")]
mod channel;
#[cfg(feature = "ssh")]
pub mod config;
#[cfg(feature = "ssh")]
pub mod config_file;
#[cfg(feature = "ssh")]
pub mod known_hosts;
#[cfg(feature = "ssh")]
mod pattern;
#[cfg(feature = "ssh")]
mod quick_ack;
#[cfg(feature = "ssh")]
mod session;
#[cfg(feature = "ssh")]
mod system;
#[cfg(feature = "ssh")]
mod tokens;

use std::path::PathBuf;
use std::time::Duration;

/// A host on the way: `[user@]host[:port]` (`-J`, `--proxy`, ProxyJump) or the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// Login name, if given.
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
}

impl Hop {
    /// Parses `[ssh://][user@]host[:port]`, with `[v6addr]` for IPv6. A password in it is
    /// refused (logins are by key) and never repeated in the message.
    pub fn parse(s: &str) -> Result<Hop, String> {
        let shown = crate::secret::masked(s);
        let bad = |why: &str| format!("bad jump host '{shown}': {why}; write [USER@]HOST[:PORT]");
        let rest = match s.split_once("://") {
            Some(("ssh", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "jump host '{shown}': '{scheme}://' is not a way tandem reaches a host; \
                     write ssh://[USER@]HOST[:PORT] (or [USER@]HOST[:PORT])"
                ))
            }
            None => s,
        }
        .trim_end_matches('/');
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, _)) if u.contains(':') => {
                return Err(bad(
                    "a password there is not used (tandem logs in with keys or ssh-agent); \
                     leave it out",
                ))
            }
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(bad("empty user")),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                _ => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("bad port"))
            })
            .transpose()?;
        Ok(Hop {
            user,
            host: host.to_string(),
            port,
        })
    }
}

/// `-c/--cipher`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    /// aes128-gcm@openssh.com.
    Aes128Gcm,
    /// aes256-gcm@openssh.com.
    Aes256Gcm,
    /// chacha20-poly1305@openssh.com.
    Chacha20Poly1305,
    /// `none`: the fastest this CPU has (SSH always encrypts).
    Fastest,
}

impl Cipher {
    /// Parses a cipher name as OpenSSH spells it (the `@openssh.com` suffix optional).
    pub fn parse(s: &str) -> Result<Cipher, String> {
        Ok(match s.trim_end_matches("@openssh.com") {
            "aes128-gcm" => Cipher::Aes128Gcm,
            "aes256-gcm" => Cipher::Aes256Gcm,
            "chacha20-poly1305" => Cipher::Chacha20Poly1305,
            "none" | "fastest" => Cipher::Fastest,
            _ => {
                return Err(format!(
                    "unknown cipher '{s}': use aes128-gcm, aes256-gcm, chacha20-poly1305 or none (the fastest available)"
                ))
            }
        })
    }
}

/// `--transfer-threads auto|N[:SIZE]` (the default: auto).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferThreads {
    /// Channels to carry file data (1: the agent's own); `None`: as many as the link's
    /// round trip calls for ([`auto_streams`]).
    pub count: Option<u32>,
    /// With `:SIZE`: files above SIZE bytes use the extra channels, smaller ones the first.
    pub large_above: Option<u64>,
}

/// How many channels carry file data over a link whose round trip is `rtt`. sshd lets a
/// channel have 2 MiB in flight, so one channel moves at most 2 MiB per round trip: below
/// 4 ms that is 500 MiB/s, more than the rest of a run keeps up with, and one is best (each
/// extra channel starts a process on the host); beyond, one more for every 4 ms, up to 16.
pub fn auto_streams(rtt: std::time::Duration) -> u32 {
    let ms = rtt.as_secs_f64() * 1000.0;
    if ms < 4.0 {
        1
    } else {
        ((ms / 4.0).ceil() as u32).clamp(2, 16)
    }
}

/// SSH settings from the command line; `~/.ssh/config` fills in what is not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshOptions {
    /// `-i` keys, tried first, in order.
    pub identities: Vec<PathBuf>,
    /// `-J`/`--proxy` jump hosts; `None` leaves it to ProxyJump in the config.
    pub jumps: Option<Vec<Hop>>,
    /// `--accept-new-host-key`: record an unknown host key (never a changed one).
    pub accept_new_host_key: bool,
    /// `--connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `-c`.
    pub cipher: Option<Cipher>,
    /// `--agent-path`: where the agent is on the host.
    pub agent_path: Option<String>,
    /// `--transfer-threads`.
    pub threads: TransferThreads,
    /// `--proxy-command CMD`: as ProxyCommand, winning over the config (`none`: connect
    /// directly).
    pub proxy_command: Option<String>,
    /// `--rsh`/`-e COMMAND`: reach the host through this command (the system's ssh)
    /// instead of the built-in client.
    pub rsh: Option<String>,
}

#[cfg(feature = "ssh")]
pub use connect::connect;

#[cfg(feature = "ssh")]
mod connect {
    use std::sync::Arc;
    use std::time::Duration;

    use super::bootstrap::{self, quote, quote_path, Shell};
    use super::session::Session;
    use super::system::SystemSsh;
    use super::{auto_streams, config, Hop, SshOptions};
    use crate::endpoint::remote::StreamPlan;
    use crate::endpoint::RemoteEndpoint;
    use crate::error::Result;
    use crate::wire::agent::AgentOptions;

    /// Keeps the connection up while the endpoint uses it; on drop, lets the agent
    /// finish (its input is closed by then), then disconnects.
    struct Connection {
        _session: Arc<dyn Shell>,
        agent: Arc<super::channel::ChannelState>,
    }

    impl Drop for Connection {
        fn drop(&mut self) {
            self.agent.wait_ended(Duration::from_secs(5));
        }
    }

    fn is_socket(p: &std::path::Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
    }

    /// Starts `n` relays for extra streams, each on its own thread.
    fn start_relays(
        session: &Arc<dyn Shell>,
        opts: &SshOptions,
        n: u32,
    ) -> Vec<std::thread::JoinHandle<Result<super::channel::ChannelWriter>>> {
        (0..n)
            .map(|_| {
                let (session, agent_path) = (session.clone(), opts.agent_path.clone());
                std::thread::spawn(move || {
                    bootstrap::start_relay(session.as_ref(), agent_path.as_deref())
                })
            })
            .collect()
    }

    /// The agent's command line, quoted for sh.
    fn agent_args(agent: &AgentOptions) -> String {
        let args = agent.to_args();
        args.iter()
            .enumerate()
            .map(|(i, a)| {
                // The root (right after --root) may start with ~ for the remote home.
                if i > 0 && args[i - 1] == "--root" {
                    quote_path(a)
                } else {
                    quote(a)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Connects to `dest`, starts the agent on `agent.root` there, and returns the
    /// endpoint with notes for the user (a learned host key, an installed agent).
    pub fn connect(
        dest: &Hop,
        opts: &SshOptions,
        agent: &AgentOptions,
    ) -> Result<(RemoteEndpoint, Vec<String>)> {
        let mut notes = Vec::new();
        let session: Arc<dyn Shell> = match &opts.rsh {
            Some(command) => Arc::new(SystemSsh::new(command, dest, opts)),
            None => {
                let route = config::resolve(dest, opts)?;
                match route
                    .target
                    .control_path
                    .as_deref()
                    .filter(|p| is_socket(p))
                {
                    // An open ssh master connection (ControlPath): ssh would ride it (it may
                    // be the only way in, logged in once with a password or a token), so
                    // tandem rides it through the system ssh.
                    Some(socket) => {
                        notes.push(format!(
                            "riding the open ssh connection at '{}' (ControlPath in the ssh \
                             config) through the system ssh",
                            socket.display()
                        ));
                        Arc::new(SystemSsh::riding(socket, dest, opts))
                    }
                    None => {
                        let mut session = Session::connect(&route, opts.cipher)?;
                        notes = std::mem::take(&mut session.notes);
                        Arc::new(session)
                    }
                }
            }
        };
        // Relays for a given number of extra streams start beside the agent: by the time it
        // says where to join, they are running, and data spreads over all streams from the
        // start. With `auto`, they start once a round trip has been timed.
        let given = opts.threads.count.map_or(0, |n| n.saturating_sub(1));
        let mut relays = start_relays(&session, opts, given);
        let agent_path = opts.agent_path.as_deref();
        let io =
            bootstrap::start_agent(session.as_ref(), agent_path, &agent_args(agent), &mut notes)?;
        let guard = Connection {
            _session: session.clone(),
            agent: io.state.clone(),
        };
        let mut ep = RemoteEndpoint::new(
            io.reader,
            io.writer,
            agent.label.clone(),
            agent.link(),
            Some(Box::new(guard)),
        )?;
        let extra = match opts.threads.count {
            Some(_) => given,
            None => {
                let rtt = ep.round_trip()?.min(ep.round_trip()?);
                let streams = auto_streams(rtt);
                if streams > 1 {
                    notes.push(format!(
                        "a long link ({:.0} ms round trip): file data over {streams} channels \
                         (--transfer-threads 1 for one)",
                        rtt.as_secs_f64() * 1000.0
                    ));
                }
                relays = start_relays(&session, opts, streams - 1);
                streams - 1
            }
        };
        if extra > 0 {
            let plan = StreamPlan {
                large_above: opts.threads.large_above,
            };
            let agent_path = opts.agent_path.clone();
            let joiner = Box::new(move |name: String, token: Vec<u8>| {
                std::thread::scope(|scope| {
                    let joins: Vec<_> = relays
                        .into_iter()
                        .map(|relay| {
                            let (session, agent_path) = (&session, agent_path.as_deref());
                            let (name, token) = (&name, &token);
                            scope.spawn(move || {
                                // A relay that found no agent (it was being uploaded) starts again.
                                let relay = match relay.join() {
                                    Ok(Ok(r)) => r,
                                    _ => bootstrap::start_relay(session.as_ref(), agent_path)?,
                                };
                                bootstrap::join_relay(relay, name, token, session.label())
                            })
                        })
                        .collect();
                    joins
                        .into_iter()
                        .map(|j| match j.join() {
                            Ok(Ok(w)) => Ok(Box::new(w) as Box<dyn std::io::Write + Send>),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("a transfer stream could not be opened".to_string()),
                        })
                        .collect()
                })
            });
            ep.invite_streams(extra, plan, joiner)?;
        }
        Ok((ep, notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_link_gets_one_channel_more_per_4_ms_of_round_trip() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(auto_streams(std::time::Duration::from_micros(100)), 1);
        assert_eq!(auto_streams(ms(3)), 1);
        assert_eq!(auto_streams(ms(5)), 2);
        assert_eq!(auto_streams(ms(52)), 13);
        assert_eq!(auto_streams(ms(400)), 16);
    }

    #[test]
    fn passwords_and_other_schemes_are_refused_without_repeating_the_password() {
        for given in [
            "dnats://gazelle:password@host",
            "ssh://gazelle:password@host:22",
            "gazelle:password@host",
        ] {
            let e = Hop::parse(given).unwrap_err();
            assert!(!e.contains("password@"), "{e}");
            assert!(e.contains("gazelle:***@host"), "{e}");
        }
        assert!(Hop::parse("dnats://host")
            .unwrap_err()
            .contains("'dnats://'"));
    }

    #[test]
    fn jump_hosts_parse_like_openssh() {
        let h = |u: Option<&str>, host: &str, p: Option<u16>| Hop {
            user: u.map(Into::into),
            host: host.into(),
            port: p,
        };
        assert_eq!(
            Hop::parse("ssh://me@jump:2222").unwrap(),
            h(Some("me"), "jump", Some(2222))
        );
        assert_eq!(Hop::parse("jump").unwrap(), h(None, "jump", None));
        assert_eq!(
            Hop::parse("a@b@jump:22").unwrap(),
            h(Some("a@b"), "jump", Some(22))
        );
        assert_eq!(
            Hop::parse("[::1]:2200").unwrap(),
            h(None, "::1", Some(2200))
        );
        assert!(Hop::parse("jump:99999").is_err());
        assert!(Hop::parse("@jump").is_err());
        assert!(Hop::parse("").is_err());
    }

    #[test]
    fn cipher_names() {
        assert_eq!(
            Cipher::parse("aes128-gcm@openssh.com").unwrap(),
            Cipher::Aes128Gcm
        );
        assert_eq!(Cipher::parse("none").unwrap(), Cipher::Fastest);
        assert!(Cipher::parse("des").is_err());
    }
}
