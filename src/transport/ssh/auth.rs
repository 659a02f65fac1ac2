//! Logging in, in OpenSSH's order: each named key (`-i`, IdentityFile), then the keys of
//! ssh-agent, then the default `~/.ssh/id_*` keys, then keyboard-interactive and password —
//! those two only when a person is at a terminal. Off a terminal nothing waits for input.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{MethodKind, MethodSet};

use super::config::Target;
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

/// Logs in to `t` on `h`, or fails with every method that was tried and why.
pub async fn authenticate(h: &mut Handle<Client>, t: &Target) -> Result<()> {
    let tty = interactive();
    let mut tried = Tried::default();
    let rsa_hash: Option<HashAlg> = h.best_supported_rsa_hash().await.ok().flatten().flatten();
    let home = dirs::home_dir().unwrap_or_default();
    let defaults: Vec<PathBuf> = if t.default_identities {
        DEFAULT_KEYS
            .iter()
            .map(|k| home.join(".ssh").join(k))
            .collect()
    } else {
        Vec::new()
    };

    for path in &t.identities {
        if try_key_file(h, t, path, tty, rsa_hash, &mut tried, true).await {
            return Ok(());
        }
    }
    if try_agent(h, t, rsa_hash, &mut tried).await {
        return Ok(());
    }
    for path in defaults.iter().filter(|p| p.exists()) {
        if try_key_file(h, t, path, tty, rsa_hash, &mut tried, false).await {
            return Ok(());
        }
    }
    if tty && try_interactive(h, t, &mut tried).await {
        return Ok(());
    }
    if !tty {
        tried.note("no password or keyboard-interactive login (no terminal to ask)");
    }
    Err(refused(t, &tried))
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
        "cannot log in to {}: permission denied. Tried: {tried_list}{accepts}. Give the right key with -i, load it into ssh-agent, or add your public key to ~/.ssh/authorized_keys on the host",
        t.label()
    ))
}

async fn try_key_file(
    h: &mut Handle<Client>,
    t: &Target,
    path: &Path,
    tty: bool,
    rsa_hash: Option<HashAlg>,
    tried: &mut Tried,
    named: bool,
) -> bool {
    if tried.closed(MethodKind::PublicKey) {
        return false;
    }
    let key = match load_key(path, tty).await {
        Ok(k) => k,
        Err(why) => {
            // A default key that is missing is no news; a named one is.
            if named || !why.starts_with("no such") {
                tried.note(format!("key '{}': {why}", shown(path)));
            }
            return false;
        }
    };
    let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
    match h.authenticate_publickey(&t.user, key).await.map(outcome) {
        Ok(Outcome::Success) => true,
        Ok(Outcome::Failure(rest)) => {
            tried.note(format!("key '{}': refused by the server", shown(path)));
            tried.failed(rest);
            false
        }
        Err(e) => {
            tried.note(format!("key '{}': {e}", shown(path)));
            false
        }
    }
}

async fn try_agent(
    h: &mut Handle<Client>,
    t: &Target,
    rsa_hash: Option<HashAlg>,
    tried: &mut Tried,
) -> bool {
    // An empty SSH_AUTH_SOCK means no agent, as in OpenSSH.
    let Some(sock) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) else {
        return false;
    };
    if tried.closed(MethodKind::PublicKey) {
        return false;
    }
    let sock = PathBuf::from(sock);
    let mut agent = match AgentClient::connect_uds(&sock).await {
        Ok(a) => a,
        Err(e) => {
            tried.note(format!(
                "ssh-agent at '{}': cannot connect ({e})",
                shown(&sock)
            ));
            return false;
        }
    };
    let ids = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            tried.note(format!("ssh-agent: cannot list keys ({e})"));
            return false;
        }
    };
    let keys: Vec<_> = ids
        .into_iter()
        .filter_map(|id| match id {
            AgentIdentity::PublicKey { key, .. } => Some(key),
            AgentIdentity::Certificate { .. } => None,
        })
        .collect();
    if keys.is_empty() {
        tried.note("ssh-agent: holds no keys");
        return false;
    }
    let count = keys.len();
    for key in keys {
        match h
            .authenticate_publickey_with(&t.user, key, rsa_hash, &mut agent)
            .await
        {
            Ok(r) => match outcome(r) {
                Outcome::Success => return true,
                Outcome::Failure(rest) => tried.failed(rest),
            },
            Err(e) => {
                tried.note(format!("ssh-agent: {e}"));
                return false;
            }
        }
    }
    tried.note(format!(
        "ssh-agent: {count} key(s), all refused by the server"
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
