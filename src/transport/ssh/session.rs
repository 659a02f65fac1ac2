//! One SSH connection (through jump hosts, if any), driven by its own small runtime, with
//! blocking calls for the rest of the program: connect, run a command on a new channel.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, PublicKey, PublicKeyOrCertificate};
use russh::{cipher, Preferred};

use super::channel::ChannelIo;
use super::config::{Route, Target};
use super::known_hosts::{self, CertVerdict, KnownHosts, Verdict};
use super::quick_ack::QuickAck;
use super::Cipher;
use crate::error::{Error, Result};

/// russh's receive window: what the server may send before we acknowledge (downloads).
const WINDOW: u32 = 16 << 20;
/// Largest SSH packet (russh logs an error above 65535).
const PACKET: u32 = 65535;

/// Why a host key was not accepted, kept by the handler for the error message.
#[derive(Clone, Debug)]
enum Rejection {
    Unknown(PublicKey),
    Changed(PublicKey, std::path::PathBuf, usize),
    Revoked(std::path::PathBuf, usize),
    Unrecorded(PublicKey, String),
    Certificate(String),
}

/// The russh handler: checks the host key against known_hosts.
pub struct Client {
    target: Target,
    known: KnownHosts,
    rejection: Arc<Mutex<Option<Rejection>>>,
    learned: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let verdict = self.verdict(presented);
        let reject = |r: Rejection| {
            *self.rejection.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            Ok(false)
        };
        let key = presented.public_key();
        let t = &self.target;
        let (name, port) = t.host_keys.recorded_as(&t.host, t.port);
        match verdict {
            Verdict::Known => Ok(true),
            Verdict::Revoked { file, line } => reject(Rejection::Revoked(file, line)),
            Verdict::Changed { file, line } => reject(Rejection::Changed(key, file, line)),
            Verdict::Unknown if !t.host_keys.accept_new => reject(Rejection::Unknown(key)),
            Verdict::Unknown => {
                let Some(file) = t.host_keys.files.first() else {
                    return reject(Rejection::Unrecorded(
                        key,
                        "UserKnownHostsFile is none, so there is nowhere to record it".into(),
                    ));
                };
                match known_hosts::learn(file, name, port, &key, t.host_keys.hash) {
                    Ok(()) => {
                        *self.learned.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                            "recorded the host key of {} ({} {}) in '{}'",
                            known_hosts::host_name(name, port),
                            key.algorithm(),
                            known_hosts::fingerprint(&key),
                            file.display()
                        ));
                        Ok(true)
                    }
                    Err(e) => reject(Rejection::Unrecorded(
                        key,
                        format!("cannot record it in '{}': {e}", file.display()),
                    )),
                }
            }
            Verdict::BadCertificate(why) => reject(Rejection::Certificate(why)),
        }
    }
}

impl Client {
    /// What known_hosts says of the key or certificate the host presented. A certificate
    /// whose signer no `@cert-authority` line trusts is checked as its plain key, as
    /// OpenSSH does.
    fn verdict(&self, presented: &PublicKeyOrCertificate) -> Verdict {
        let t = &self.target;
        let (name, port) = t.host_keys.recorded_as(&t.host, t.port);
        if let Some(cert) = presented.certificate() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let principal = t.host_keys.alias.as_deref().unwrap_or(&t.host);
            match self
                .known
                .check_certificate(name, port, principal, cert, now)
            {
                CertVerdict::Valid => return Verdict::Known,
                CertVerdict::Revoked { file, line } => return Verdict::Revoked { file, line },
                CertVerdict::Invalid(why) => return Verdict::BadCertificate(why),
                CertVerdict::NoAuthority => {}
            }
        }
        self.known.check(name, port, &presented.public_key())
    }
}

fn host_key_error(t: &Target, r: Rejection) -> Error {
    let (host, port) = t.host_keys.recorded_as(&t.host, t.port);
    let name = known_hosts::host_name(host, port);
    let kh = t
        .host_keys
        .files
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Error::Unreachable(match r {
        Rejection::Unknown(k) => format!(
            "the host key of {name} is not known ({} {}); refusing to connect. Check the fingerprint with the host's administrator, then run again with --accept-new-host-key to record it in '{kh}' (or add it with: ssh-keyscan -p {} {} >> '{kh}')",
            k.algorithm(), known_hosts::fingerprint(&k), t.port, t.host
        ),
        Rejection::Changed(k, file, line) => format!(
            "WARNING: THE HOST KEY OF {name} HAS CHANGED! It is now {} {}, not the key recorded at '{}' line {line}. Someone may be intercepting the connection (man in the middle), or the host was reinstalled. Refusing to connect. If the change is expected, remove the old key with: ssh-keygen -R '{name}' -f '{}'",
            k.algorithm(), known_hosts::fingerprint(&k), file.display(), file.display()
        ),
        Rejection::Revoked(file, line) => format!(
            "the host key of {name} is revoked ('{}' line {line}); refusing to connect",
            file.display()
        ),
        Rejection::Unrecorded(k, why) => format!(
            "the host key of {name} ({}) could not be recorded: {why}",
            known_hosts::fingerprint(&k)
        ),
        Rejection::Certificate(why) => format!(
            "the host certificate of {name} is not accepted: {why}; refusing to connect"
        ),
    })
}

/// Host key algorithms, recorded ones first (as OpenSSH does), so a host with several
/// keys is checked against the one on record rather than reported as unknown.
fn host_key_order(recorded: &[Algorithm]) -> Vec<Algorithm> {
    let default = Preferred::DEFAULT.key.to_vec();
    let is_recorded = |a: &Algorithm| {
        recorded.iter().any(|r| match (r, a) {
            (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
            (r, a) => r == a,
        })
    };
    let (mut first, rest): (Vec<_>, Vec<_>) = default.into_iter().partition(is_recorded);
    first.extend(rest);
    first
}

fn ciphers(choice: Option<Cipher>) -> Vec<cipher::Name> {
    let aes = aes_in_hardware();
    let fast = if aes {
        vec![
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
        ]
    } else {
        vec![
            cipher::CHACHA20_POLY1305,
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
        ]
    };
    let first = match choice {
        None | Some(Cipher::Fastest) => None,
        Some(Cipher::Aes128Gcm) => Some(cipher::AES_128_GCM),
        Some(Cipher::Aes256Gcm) => Some(cipher::AES_256_GCM),
        Some(Cipher::Chacha20Poly1305) => Some(cipher::CHACHA20_POLY1305),
    };
    let mut out: Vec<cipher::Name> = first.into_iter().collect();
    out.extend(fast.into_iter().filter(|c| Some(*c) != first));
    out.extend([cipher::AES_128_CTR, cipher::AES_256_CTR]);
    out
}

/// True when the CPU encrypts AES in hardware (then AES-GCM is the fastest cipher).
pub fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn config(t: &Target, known: &KnownHosts, cipher: Option<Cipher>) -> Arc<client::Config> {
    let (host, port) = t.host_keys.recorded_as(&t.host, t.port);
    let recorded = known.recorded_types(host, port);
    // A host an authority vouches for is asked for its certificate first, as OpenSSH does.
    let certificates = if known.has_authority(host, port) {
        Preferred::DEFAULT.key.to_vec()
    } else {
        Vec::new()
    };
    Arc::new(client::Config {
        preferred: Preferred {
            key: Cow::Owned(host_key_order(&recorded)),
            host_key_certificates: Cow::Owned(certificates),
            cipher: Cow::Owned(ciphers(cipher)),
            ..Preferred::DEFAULT
        },
        window_size: WINDOW,
        maximum_packet_size: PACKET,
        keepalive_interval: Some(t.keepalive).filter(|k| !k.is_zero()),
        keepalive_max: t.keepalive_max,
        nodelay: true,
        ..Default::default()
    })
}

/// A live connection: the runtime that drives it and the handles of every hop.
pub struct Session {
    rt: tokio::runtime::Runtime,
    handles: Vec<Handle<Client>>,
    /// A ProxyCommand carrying the first connection (killed when the session ends).
    _proxy: Option<tokio::process::Child>,
    /// What the connection did that the user should hear about (a learned host key).
    pub notes: Vec<String>,
    /// `user@host:port` of the destination.
    pub label: String,
}

fn connect_error(t: &Target, via: Option<&Target>, e: std::io::Error) -> Error {
    let what = match via {
        Some(j) => format!("{} (through jump host {})", t.label(), j.label()),
        None => t.label(),
    };
    let hint = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "; is sshd running there, and is the port right (-P)?"
        }
        std::io::ErrorKind::TimedOut => {
            "; check the network and the host name, or give more time with --connect-timeout"
        }
        _ => "",
    };
    Error::Unreachable(format!("cannot connect to {what}: {e}{hint}"))
}

/// The connect timeout ran out: `what` then the time allowed.
fn timed_out(t: &Target, what: &str) -> Error {
    let why = format!("{what} {}", humantime::format_duration(t.connect_timeout));
    connect_error(
        t,
        None,
        std::io::Error::new(std::io::ErrorKind::TimedOut, why),
    )
}

async fn tcp(t: &Target) -> Result<QuickAck> {
    let addrs: Vec<_> = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|e| {
            Error::Unreachable(format!(
                "cannot resolve host '{}': {e}; check the name (and ~/.ssh/config)",
                t.host
            ))
        })?
        .filter(|a: &std::net::SocketAddr| t.ipv4.is_none_or(|v4| a.is_ipv4() == v4))
        .collect();
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no address of the family AddressFamily asks for",
    );
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => return Ok(QuickAck::new(s)),
            Err(e) => last = e,
        }
    }
    Err(connect_error(t, None, last))
}

/// Both ends of a ProxyCommand's pipes, as one stream.
type ProxyStream = tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>;

/// Starts `t`'s ProxyCommand (`sh -c`, as ssh does), its stderr the user's.
fn proxy_command(t: &Target) -> Result<(tokio::process::Child, ProxyStream)> {
    let cmd = t.proxy_command.as_deref().unwrap_or_default();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::Unreachable(format!(
                "cannot run the ProxyCommand for '{}' ({cmd}): {e}",
                t.alias
            ))
        })?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(Error::Unreachable("the ProxyCommand has no pipes".into()));
    };
    Ok((child, tokio::io::join(stdout, stdin)))
}

/// SSH over `stream` to `t`: key exchange, host key check, login.
async fn login<S>(
    stream: S,
    t: &Target,
    cipher: Option<Cipher>,
    notes: &mut Vec<String>,
) -> Result<Handle<Client>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let known = KnownHosts::load(&t.host_keys.lookup_files());
    let cfg = config(t, &known, cipher);
    let rejection = Arc::new(Mutex::new(None));
    let learned = Arc::new(Mutex::new(None));
    let handler = Client {
        target: t.clone(),
        known,
        rejection: rejection.clone(),
        learned: learned.clone(),
    };
    let handshake = client::connect_stream(cfg, stream, handler);
    let mut h = match tokio::time::timeout(t.connect_timeout, handshake).await {
        Err(_) => return Err(timed_out(t, "no SSH greeting within")),
        Ok(Err(e)) => {
            if let Some(r) = rejection.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(host_key_error(t, r));
            }
            return Err(Error::Unreachable(format!(
                "SSH handshake with {} failed: {e}",
                t.label()
            )));
        }
        Ok(Ok(h)) => h,
    };
    if let Some(note) = learned.lock().unwrap_or_else(|p| p.into_inner()).take() {
        notes.push(note);
    }
    super::auth::authenticate(&mut h, t).await?;
    Ok(h)
}

impl Session {
    /// Connects along `route` (through each jump host in turn) and logs in everywhere.
    pub fn connect(route: &Route, cipher: Option<Cipher>) -> Result<Session> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tandem-ssh")
            .enable_all()
            .build()
            .map_err(|e| Error::Unreachable(format!("cannot start the SSH runtime: {e}")))?;
        let mut notes = Vec::new();
        let mut proxy = None;
        let handles = rt.block_on(async {
            let mut handles: Vec<Handle<Client>> = Vec::new();
            let hosts: Vec<&Target> = route.hops.iter().chain([&route.target]).collect();
            for (i, t) in hosts.iter().enumerate() {
                let h = match handles.last() {
                    None if t.proxy_command.is_some() => {
                        let (child, stream) = proxy_command(t)?;
                        proxy = Some(child);
                        login(stream, t, cipher, &mut notes)
                            .await
                            .map_err(|e| match e {
                                Error::Unreachable(m) => Error::Unreachable(format!(
                                    "{m} (connected through the ProxyCommand '{}')",
                                    t.proxy_command.as_deref().unwrap_or_default()
                                )),
                                e => e,
                            })
                    }
                    None => {
                        let stream = tokio::time::timeout(t.connect_timeout, tcp(t))
                            .await
                            .map_err(|_| timed_out(t, "timed out after"))??;
                        login(stream, t, cipher, &mut notes).await
                    }
                    Some(jump) => {
                        let via = hosts[i - 1];
                        let ch = jump
                            .channel_open_direct_tcpip(
                                t.host.clone(),
                                t.port as u32,
                                "127.0.0.1",
                                0,
                            )
                            .await
                            .map_err(|e| {
                                connect_error(t, Some(via), std::io::Error::other(e.to_string()))
                            })?;
                        login(ch.into_stream(), t, cipher, &mut notes).await
                    }
                };
                // Say which hop failed: a jump host's problem is not the destination's.
                let h = h.map_err(|e| match (e, i + 1 < hosts.len()) {
                    (Error::Unreachable(m), true) => {
                        Error::Unreachable(format!("jump host {}: {m}", t.label()))
                    }
                    (e, _) => e,
                })?;
                handles.push(h);
            }
            Ok::<_, Error>(handles)
        })?;
        Ok(Session {
            rt,
            handles,
            _proxy: proxy,
            notes,
            label: route.target.label(),
        })
    }

    fn destination(&self) -> &Handle<Client> {
        self.handles.last().expect("a session has its destination")
    }
}

impl super::bootstrap::Shell for Session {
    fn label(&self) -> &str {
        &self.label
    }

    fn exec(&self, command: &str, what: &str) -> Result<ChannelIo> {
        let h = self.destination();
        let fail = |e: &dyn std::fmt::Display| {
            Error::Unreachable(format!("cannot run {what} on {}: {e}", self.label))
        };
        let ch = self.rt.block_on(async {
            let ch = h.channel_open_session().await.map_err(|e| fail(&e))?;
            ch.exec(true, command).await.map_err(|e| fail(&e))?;
            Ok::<_, Error>(ch)
        })?;
        Ok(ChannelIo::spawn(self.rt.handle(), ch, what))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let handles = std::mem::take(&mut self.handles);
        self.rt.block_on(async {
            for h in handles.iter().rev() {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    h.disconnect(russh::Disconnect::ByApplication, "", "en"),
                )
                .await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::HashAlg;

    #[test]
    fn recorded_host_key_types_come_first() {
        let order = host_key_order(&[Algorithm::Rsa { hash: None }]);
        assert_eq!(
            order[0],
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512)
            }
        );
        assert!(order.contains(&Algorithm::Ed25519));
        assert_eq!(host_key_order(&[])[0], Algorithm::Ed25519);
    }

    #[test]
    fn connections_send_small_requests_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = Target::new("here", "127.0.0.1", port, "u");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stream = rt.block_on(tcp(&t)).unwrap();
        assert!(
            stream.get_ref().nodelay().unwrap(),
            "Nagle's algorithm is on"
        );
    }

    #[test]
    fn a_chosen_cipher_leads_and_the_rest_follow() {
        let c = ciphers(Some(Cipher::Chacha20Poly1305));
        assert_eq!(c[0], cipher::CHACHA20_POLY1305);
        assert_eq!(
            c.iter()
                .filter(|n| **n == cipher::CHACHA20_POLY1305)
                .count(),
            1
        );
        assert!(c.contains(&cipher::AES_128_GCM));
    }
}
