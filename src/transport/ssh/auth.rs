//! Logging in, in OpenSSH's order: each named key (`-i`, IdentityFile; its certificate
//! first, from CertificateFile or `KEY-cert.pub`), then the keys and certificates of
//! ssh-agent (only the named ones with IdentitiesOnly), then the default `~/.ssh/id_*`
//! keys, then keyboard-interactive and password — those two only when a person is at a
//! terminal and BatchMode is off. Off a terminal nothing waits for input.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::{AgentIdentity, Constraint};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{MethodKind, MethodSet};

use super::config::{AddToAgent, Target};
use super::session::Client;
use crate::error::{Error, Result};

/// Default keys, in OpenSSH's order.
const DEFAULT_KEYS: [&str; 3] = ["id_rsa", "id_ecdsa", "id_ed25519"];
/// Password prompts before giving up, as OpenSSH.
const PASSWORD_TRIES: usize = 3;

/// True when a person can answer prompts: both stdin and the controlling terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_ok()
}

/// What was tried, for the message when nothing worked.
#[derive(Default)]
struct Tried {
    attempts: Vec<String>,
    server_accepts: Option<MethodSet>,
}

impl Tried {
    fn note(&mut self, what: impl Into<String>) {
        self.attempts.push(what.into());
    }

    fn failed(&mut self, remaining: MethodSet) {
        self.server_accepts = Some(remaining);
    }

    /// The server no longer offers `m` (after a failure told us what it does offer).
    fn closed(&self, m: MethodKind) -> bool {
        self.server_accepts
            .as_ref()
            .is_some_and(|s| !s.contains(&m))
    }
}

enum Outcome {
    Success,
    Failure(MethodSet),
}

fn outcome(r: russh::client::AuthResult) -> Outcome {
    match r {
        russh::client::AuthResult::Success => Outcome::Success,
        russh::client::AuthResult::Failure {
            remaining_methods, ..
        } => Outcome::Failure(remaining_methods),
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Asks for a secret on the terminal, never echoing it.
async fn prompt(text: String) -> Option<String> {
    tokio::task::spawn_blocking(move || rpassword::prompt_password(text).ok())
        .await
        .ok()
        .flatten()
}

/// Loads a key, asking for its passphrase on a terminal; `Err` says why it cannot be used.
async fn load_key(path: &Path, tty: bool) -> std::result::Result<PrivateKey, String> {
    match russh::keys::load_secret_key(path, None) {
        Ok(k) => Ok(k),
        Err(russh::keys::Error::KeyIsEncrypted) if !tty => Err(
            "encrypted, and there is no terminal to ask for its passphrase (load it into ssh-agent with ssh-add, or use a key without a passphrase for unattended runs)".into(),
        ),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            for _ in 0..PASSWORD_TRIES {
                let Some(pass) = prompt(format!("Enter passphrase for key '{}': ", shown(path))).await else {
                    break;
                };
                match russh::keys::load_secret_key(path, Some(&pass)) {
                    Ok(k) => return Ok(k),
                    Err(_) => eprintln!("tandem: wrong passphrase for '{}'", shown(path)),
                }
            }
            Err("encrypted, and no right passphrase was given".into())
        }
        Err(russh::keys::Error::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("no such file".into())
        }
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

/// Certificates to offer with keys: CertificateFile, then `KEY-cert.pub` next to a key.
struct Certificates {
    named: Vec<Certificate>,
}

impl Certificates {
    fn load(t: &Target, tried: &mut Tried) -> Certificates {
        let mut named = Vec::new();
        for path in &t.login.certificates {
            match read_certificate(path) {
                Ok(c) => named.push(c),
                Err(why) => tried.note(format!("certificate '{}': {why}", shown(path))),
            }
        }
        Certificates { named }
    }

    /// The certificate for `key` (read from `path`), if any.
    fn for_key(&self, key: &PublicKey, path: Option<&Path>) -> Option<Certificate> {
        let beside = path.and_then(|p| {
            let mut name = p.as_os_str().to_os_string();
            name.push("-cert.pub");
            read_certificate(Path::new(&name)).ok()
        });
        self.named
            .iter()
            .find(|c| c.public_key() == key.key_data())
            .cloned()
            .or(beside.filter(|c| c.public_key() == key.key_data()))
    }
}

fn read_certificate(path: &Path) -> std::result::Result<Certificate, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    })?;
    Certificate::from_openssh(text.trim()).map_err(|e| format!("not an OpenSSH certificate: {e}"))
}

/// The public halves of the named keys (their `.pub` files), which IdentitiesOnly lets
/// ssh-agent sign for.
fn named_public_keys(t: &Target, certs: &Certificates) -> Vec<KeyData> {
    let mut out: Vec<KeyData> = t
        .login
        .identities
        .iter()
        .filter_map(|p| {
            let mut name = p.as_os_str().to_os_string();
            name.push(".pub");
            PublicKey::read_openssh_file(Path::new(&name)).ok()
        })
        .map(|k| k.key_data().clone())
        .collect();
    out.extend(certs.named.iter().map(|c| c.public_key().clone()));
    out
}

/// What logging in needs besides the handle.
struct Attempt<'a> {
    t: &'a Target,
    tty: bool,
    rsa_hash: Option<HashAlg>,
    certs: Certificates,
    tried: Tried,
}

/// Logs in to `t` on `h`, or fails with every method that was tried and why.
pub async fn authenticate(h: &mut Handle<Client>, t: &Target) -> Result<()> {
    let mut tried = Tried::default();
    let certs = Certificates::load(t, &mut tried);
    let mut a = Attempt {
        t,
        tty: interactive() && !t.login.batch,
        rsa_hash: h.best_supported_rsa_hash().await.ok().flatten().flatten(),
        certs,
        tried,
    };
    let home = dirs::home_dir().unwrap_or_default();
    let defaults: Vec<PathBuf> = if t.login.default_identities {
        DEFAULT_KEYS
            .iter()
            .map(|k| home.join(".ssh").join(k))
            .collect()
    } else {
        Vec::new()
    };

    for path in &t.login.identities {
        if let Some(key) = try_key_file(h, &mut a, path, true).await {
            add_to_agent(t, &key, path, a.tty).await;
            return Ok(());
        }
    }
    if try_agent(h, &mut a).await {
        return Ok(());
    }
    for path in defaults.iter().filter(|p| p.exists()) {
        if let Some(key) = try_key_file(h, &mut a, path, false).await {
            add_to_agent(t, &key, path, a.tty).await;
            return Ok(());
        }
    }
    if a.tty && try_interactive(h, t, &mut a.tried).await {
        return Ok(());
    }
    if !a.tty {
        a.tried.note(if t.login.batch {
            "no password or keyboard-interactive login (BatchMode)"
        } else {
            "no password or keyboard-interactive login (no terminal to ask)"
        });
    }
    // A connection lost while logging in is no key's fault: say what happened.
    if h.is_closed() {
        return Err(Error::Unreachable(format!(
            "the connection to {} was lost while logging in; check the network and try again",
            t.label()
        )));
    }
    Err(refused(t, &a.tried))
}

fn refused(t: &Target, tried: &Tried) -> Error {
    let accepts = tried
        .server_accepts
        .as_ref()
        .map(|m| {
            let names: Vec<&str> = m.iter().map(<&str>::from).collect();
            format!("; the server accepts: {}", names.join(", "))
        })
        .unwrap_or_default();
    let tried_list = if tried.attempts.is_empty() {
        "no key (none given with -i, no ssh-agent, no ~/.ssh/id_* key)".to_string()
    } else {
        tried.attempts.join("; ")
    };
    Error::Unreachable(format!(
        "cannot log in to {}: permission denied. Tried: {tried_list}{accepts}. Give the right key with -i, load it into ssh-agent, or add your public key to ~/.ssh/authorized_keys on the host (or run through the system ssh with -e ssh, for logins only it can do)",
        t.label()
    ))
}

/// Tries the key in `path` (its certificate first, if it has one); the key if it logged in.
async fn try_key_file(
    h: &mut Handle<Client>,
    a: &mut Attempt<'_>,
    path: &Path,
    named: bool,
) -> Option<Arc<PrivateKey>> {
    if a.tried.closed(MethodKind::PublicKey) {
        return None;
    }
    let key = match load_key(path, a.tty).await {
        Ok(k) => Arc::new(k),
        Err(why) => {
            // A default key that is missing is no news; a named one is.
            if named || !why.starts_with("no such") {
                a.tried.note(format!("key '{}': {why}", shown(path)));
            }
            return None;
        }
    };
    if let Some(cert) = a.certs.for_key(key.public_key(), Some(path)) {
        let id = cert.key_id().to_string();
        match h
            .authenticate_openssh_cert(&a.t.user, key.clone(), cert)
            .await
            .map(outcome)
        {
            Ok(Outcome::Success) => return Some(key),
            Ok(Outcome::Failure(rest)) => {
                a.tried.note(format!(
                    "certificate '{id}' of key '{}': refused by the server",
                    shown(path)
                ));
                a.tried.failed(rest);
            }
            Err(e) => a
                .tried
                .note(format!("certificate of key '{}': {e}", shown(path))),
        }
    }
    let with_hash = PrivateKeyWithHashAlg::new(key.clone(), a.rsa_hash);
    match h
        .authenticate_publickey(&a.t.user, with_hash)
        .await
        .map(outcome)
    {
        Ok(Outcome::Success) => Some(key),
        Ok(Outcome::Failure(rest)) => {
            a.tried
                .note(format!("key '{}': refused by the server", shown(path)));
            a.tried.failed(rest);
            None
        }
        Err(e) => {
            a.tried.note(format!("key '{}': {e}", shown(path)));
            None
        }
    }
}

/// AddKeysToAgent: hands a key that logged in to ssh-agent (asking first for `ask`).
async fn add_to_agent(t: &Target, key: &PrivateKey, path: &Path, tty: bool) {
    let AddToAgent::Yes {
        ask,
        confirm,
        lifetime,
    } = t.login.add_to_agent
    else {
        return;
    };
    let Some(sock) = &t.login.agent else { return };
    if ask {
        let question = format!("Add key '{}' to ssh-agent? (yes/no) ", shown(path));
        let answer = if tty {
            prompt_visible(question).await
        } else {
            None
        };
        if !answer.is_some_and(|a| a.trim().eq_ignore_ascii_case("yes")) {
            return;
        }
    }
    let mut constraints = Vec::new();
    if confirm {
        constraints.push(Constraint::Confirm);
    }
    if let Some(seconds) = lifetime {
        constraints.push(Constraint::KeyLifetime { seconds });
    }
    let added = match AgentClient::connect_uds(sock).await {
        Ok(mut agent) => agent
            .add_identity(key, &constraints)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = added {
        eprintln!(
            "tandem: could not add key '{}' to ssh-agent at '{}' (AddKeysToAgent): {e}",
            shown(path),
            shown(sock)
        );
    }
}

/// Asks a yes/no question on the terminal.
async fn prompt_visible(text: String) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        eprint!("{text}");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok().map(|_| line)
    })
    .await
    .ok()
    .flatten()
}

async fn try_agent(h: &mut Handle<Client>, a: &mut Attempt<'_>) -> bool {
    let Some(sock) = a.t.login.agent.clone() else {
        return false;
    };
    if a.tried.closed(MethodKind::PublicKey) {
        return false;
    }
    let mut agent = match AgentClient::connect_uds(&sock).await {
        Ok(agent) => agent,
        Err(e) => {
            a.tried.note(format!(
                "ssh-agent at '{}': cannot connect ({e})",
                shown(&sock)
            ));
            return false;
        }
    };
    let ids = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            a.tried.note(format!("ssh-agent: cannot list keys ({e})"));
            return false;
        }
    };
    // IdentitiesOnly: the agent signs only for the keys named in the config.
    let named = named_public_keys(a.t, &a.certs);
    let allowed = |k: &KeyData| !a.t.login.identities_only || named.contains(k);
    let mut offers: Vec<(PublicKey, Option<Certificate>)> = Vec::new();
    for id in ids {
        match id {
            AgentIdentity::PublicKey { key, .. } if allowed(key.key_data()) => {
                // A certificate named for this key is offered first.
                if let Some(cert) = a.certs.for_key(&key, None) {
                    offers.push((key.clone(), Some(cert)));
                }
                offers.push((key, None));
            }
            AgentIdentity::Certificate { certificate, .. } if allowed(certificate.public_key()) => {
                let key = PublicKey::new(certificate.public_key().clone(), "");
                offers.push((key, Some(certificate)));
            }
            _ => {}
        }
    }
    if offers.is_empty() {
        a.tried.note(if a.t.login.identities_only {
            "ssh-agent: holds none of the named keys (IdentitiesOnly)"
        } else {
            "ssh-agent: holds no keys"
        });
        return false;
    }
    let count = offers.len();
    for (key, cert) in offers {
        let r = match cert {
            Some(cert) => {
                h.authenticate_certificate_with(&a.t.user, cert, a.rsa_hash, &mut agent)
                    .await
            }
            None => {
                h.authenticate_publickey_with(&a.t.user, key, a.rsa_hash, &mut agent)
                    .await
            }
        };
        match r {
            Ok(r) => match outcome(r) {
                Outcome::Success => return true,
                Outcome::Failure(rest) => a.tried.failed(rest),
            },
            Err(e) => {
                a.tried.note(format!("ssh-agent: {e}"));
                return false;
            }
        }
    }
    a.tried.note(format!(
        "ssh-agent: {count} key(s) and certificate(s), all refused by the server"
    ));
    false
}

async fn try_interactive(h: &mut Handle<Client>, t: &Target, tried: &mut Tried) -> bool {
    if !tried.closed(MethodKind::KeyboardInteractive) {
        if let Ok(mut r) = h
            .authenticate_keyboard_interactive_start(&t.user, None::<String>)
            .await
        {
            loop {
                match r {
                    KeyboardInteractiveAuthResponse::Success => return true,
                    KeyboardInteractiveAuthResponse::Failure {
                        remaining_methods, ..
                    } => {
                        tried.note("keyboard-interactive: refused");
                        tried.failed(remaining_methods);
                        break;
                    }
                    KeyboardInteractiveAuthResponse::InfoRequest {
                        instructions,
                        prompts,
                        ..
                    } => {
                        if !instructions.is_empty() {
                            eprintln!("{instructions}");
                        }
                        let mut answers = Vec::with_capacity(prompts.len());
                        for p in prompts {
                            match prompt(format!("({}) {}", t.label(), p.prompt)).await {
                                Some(a) => answers.push(a),
                                None => return false,
                            }
                        }
                        match h.authenticate_keyboard_interactive_respond(answers).await {
                            Ok(next) => r = next,
                            Err(_) => break,
                        }
                    }
                }
            }
        }
    }
    for _ in 0..PASSWORD_TRIES {
        if tried.closed(MethodKind::Password) {
            break;
        }
        let Some(pass) = prompt(format!("{}'s password: ", t.label())).await else {
            break;
        };
        match h.authenticate_password(&t.user, pass).await.map(outcome) {
            Ok(Outcome::Success) => return true,
            Ok(Outcome::Failure(rest)) => {
                tried.note("password: refused");
                tried.failed(rest);
            }
            Err(_) => break,
        }
    }
    false
}
