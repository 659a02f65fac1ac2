//! `~/.ssh/known_hosts` as OpenSSH reads it: hashed (`|1|`) and plain host patterns,
//! `[host]:port`, comma lists with `*`/`?` wildcards and `!` negation, tab or space
//! separated fields, `@revoked` keys, `@cert-authority` lines for host certificates.
//! (russh's own helper misses most of these.)

use std::io::Write;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};
use hmac::{KeyInit, Mac};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};

use super::pattern;

/// What the recorded keys say about the key a host presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A recorded key of this host (or a valid certificate of a trusted authority).
    Known,
    /// A host certificate of a trusted authority that does not hold: why.
    BadCertificate(String),
    /// Nothing recorded for this host and key type.
    Unknown,
    /// The host has a different key of the same type on record.
    Changed {
        /// The file with the old key.
        file: PathBuf,
        /// Its line (1-based).
        line: usize,
    },
    /// The key is marked `@revoked`.
    Revoked {
        /// Where.
        file: PathBuf,
        /// Its line (1-based).
        line: usize,
    },
}

/// What a line's `@` marker makes of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    /// A host key.
    None,
    /// `@revoked`: never accepted, as a host key or as a certificate's authority.
    Revoked,
    /// `@cert-authority`: host certificates it signed are accepted for the named hosts.
    Authority,
}

#[derive(Debug)]
struct Line {
    file: PathBuf,
    number: usize,
    marker: Marker,
    hosts: String,
    key: PublicKey,
}

/// The recorded host keys of one or more files.
#[derive(Debug, Default)]
pub struct KnownHosts {
    lines: Vec<Line>,
}

/// The name a host is recorded under: `host` on port 22, `[host]:port` otherwise.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Why a host certificate is not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum CertVerdict {
    /// Signed by an authority trusted for this host, for this host, and valid now.
    Valid,
    /// No `@cert-authority` line for this host names its signer: check its key as a plain one.
    NoAuthority,
    /// Its key or its authority is `@revoked`.
    Revoked {
        /// Where.
        file: PathBuf,
        /// Its line (1-based).
        line: usize,
    },
    /// A trusted authority signed it, but it does not hold: why.
    Invalid(String),
}

/// `|1|salt|hash`: HMAC-SHA1 of the name keyed by the salt.
fn hashed_match(entry: &str, name: &str) -> Option<bool> {
    let rest = entry.strip_prefix("|1|")?;
    let (salt, hash) = rest.split_once('|')?;
    let salt = Base64::decode_vec(salt).ok()?;
    let hash = Base64::decode_vec(hash).ok()?;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt).ok()?;
    mac.update(name.as_bytes());
    Some(mac.verify_slice(&hash).is_ok())
}

/// `name` hashed as HashKnownHosts writes it: `|1|salt|HMAC-SHA1(salt, name)`.
fn hashed(name: &str, salt: &[u8; 20]) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt).expect("HMAC takes any key");
    mac.update(name.as_bytes());
    format!(
        "|1|{}|{}",
        Base64::encode_string(salt),
        Base64::encode_string(&mac.finalize().into_bytes())
    )
}

/// True if a host field (comma list, maybe negated, or one hashed entry) names `name`.
fn hosts_match(hosts: &str, name: &str) -> bool {
    if hosts.starts_with('|') {
        return hashed_match(hosts, name).unwrap_or(false);
    }
    pattern::comma_list(hosts, name, true)
}

/// The key type, with RSA's signature hash left out: the same key whatever it signs with.
fn key_type(k: &PublicKey) -> Algorithm {
    match k.algorithm() {
        Algorithm::Rsa { .. } => Algorithm::Rsa { hash: None },
        a => a,
    }
}

impl KnownHosts {
    /// Reads the files; missing files and lines that do not parse are skipped.
    pub fn load(files: &[PathBuf]) -> KnownHosts {
        let mut lines = Vec::new();
        for file in files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            for (i, raw) in text.lines().enumerate() {
                if let Some(line) = parse_line(file, i + 1, raw) {
                    lines.push(line);
                }
            }
        }
        KnownHosts { lines }
    }

    fn for_host<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
        self.lines
            .iter()
            .filter(move |l| hosts_match(&l.hosts, name))
    }

    /// The `@revoked` line of `key`, if any.
    fn revoked<'a>(&'a self, name: &'a str, key: &KeyData) -> Option<&'a Line> {
        self.for_host(name)
            .find(|l| l.marker == Marker::Revoked && l.key.key_data() == key)
    }

    /// Checks the key `host:port` presented.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = host_name(host, port);
        if let Some(l) = self.revoked(&name, key.key_data()) {
            return Verdict::Revoked {
                file: l.file.clone(),
                line: l.number,
            };
        }
        let mut verdict = Verdict::Unknown;
        for l in self.for_host(&name).filter(|l| l.marker == Marker::None) {
            if l.key.key_data() == key.key_data() {
                verdict = Verdict::Known;
            } else if key_type(&l.key) == key_type(key) && verdict == Verdict::Unknown {
                verdict = Verdict::Changed {
                    file: l.file.clone(),
                    line: l.number,
                };
            }
        }
        verdict
    }

    /// Whether an `@cert-authority` line names `host:port` (then the server is asked for a
    /// host certificate first, as OpenSSH does).
    pub fn has_authority(&self, host: &str, port: u16) -> bool {
        let name = host_name(host, port);
        let found = self.for_host(&name).any(|l| l.marker == Marker::Authority);
        found
    }

    /// Checks a host certificate `host:port` presented: its signer must be an
    /// `@cert-authority` of the host, `principal` (the host name, or HostKeyAlias) one of
    /// its principals (none: any), and `now` (Unix seconds) within its validity.
    pub fn check_certificate(
        &self,
        host: &str,
        port: u16,
        principal: &str,
        cert: &Certificate,
        now: u64,
    ) -> CertVerdict {
        let name = host_name(host, port);
        for key in [cert.public_key(), cert.signature_key()] {
            if let Some(l) = self.revoked(&name, key) {
                return CertVerdict::Revoked {
                    file: l.file.clone(),
                    line: l.number,
                };
            }
        }
        let Some(ca) = self
            .for_host(&name)
            .find(|l| l.marker == Marker::Authority && l.key.key_data() == cert.signature_key())
        else {
            return CertVerdict::NoAuthority;
        };
        if cert.cert_type() != CertType::Host {
            return CertVerdict::Invalid("it is a user certificate, not a host certificate".into());
        }
        let principals = cert.valid_principals();
        if !principals.is_empty() && !principals.iter().any(|p| p == principal) {
            return CertVerdict::Invalid(format!(
                "'{principal}' is not one of its principals ({})",
                principals.join(", ")
            ));
        }
        if now < cert.valid_after() || now >= cert.valid_before() {
            return CertVerdict::Invalid(format!(
                "it is valid from {} to {} (Unix time), not now ({now})",
                cert.valid_after(),
                cert.valid_before()
            ));
        }
        let fingerprint = ca.key.fingerprint(HashAlg::Sha256);
        match cert.validate_at(now, [&fingerprint]) {
            Ok(()) => CertVerdict::Valid,
            Err(e) => CertVerdict::Invalid(format!(
                "its signature by the authority of '{}' line {} does not hold ({e})",
                ca.file.display(),
                ca.number
            )),
        }
    }

    /// The types of the keys recorded for `host:port`, for asking the server for one of
    /// those first (as OpenSSH does), so a host with several keys is checked against the
    /// one on record.
    pub fn recorded_types(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = host_name(host, port);
        let mut out: Vec<Algorithm> = Vec::new();
        for l in self.for_host(&name).filter(|l| l.marker == Marker::None) {
            let t = key_type(&l.key);
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }
}

fn parse_line(file: &Path, number: usize, raw: &str) -> Option<Line> {
    let mut fields = raw.split([' ', '\t']).filter(|f| !f.is_empty());
    let mut first = fields.next()?;
    if first.starts_with('#') {
        return None;
    }
    let mut marker = Marker::None;
    if first.starts_with('@') {
        marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::Authority,
            _ => return None,
        };
        first = fields.next()?;
    }
    let key_type = fields.next()?;
    let key_b64 = fields.next()?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_b64}")).ok()?;
    Some(Line {
        file: file.to_path_buf(),
        number,
        marker,
        hosts: first.to_string(),
        key,
    })
}

/// Records `key` for `host:port` at the end of `file` (creating it and its directory),
/// the name hashed if `hash` (HashKnownHosts).
pub fn learn(
    file: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
    hash: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let line = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // Keep only "type base64": the comment is the server's, not ours.
    let line: Vec<&str> = line.split(' ').take(2).collect();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)?;
    // A file whose last line has no newline must not swallow ours.
    let needs_newline = std::fs::read(file)
        .map(|b| b.last().is_some_and(|&c| c != b'\n'))
        .unwrap_or(false);
    let lead = if needs_newline { "\n" } else { "" };
    let mut name = host_name(host, port);
    if hash {
        let mut salt = [0u8; 20];
        getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
        name = hashed(&name, &salt);
    }
    writeln!(f, "{lead}{name} {}", line.join(" "))?;
    f.sync_all()
}

/// `SHA256:…`, as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDAZy5ebcyxQBYDpltEg57BW10mm4zK6vO7Mce35k8Pi";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDfFZtHWkHZnDnpeyFKlgYALYhyBDBKcZUty2mRUkV4a";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn hosts(text: &str) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        std::fs::write(&f, text).unwrap();
        let kh = KnownHosts::load(&[f]);
        (dir, kh)
    }

    #[test]
    fn plain_bracketed_tabbed_and_wildcard_entries() {
        let (_d, kh) = hosts(&format!("# comment\nexample.org {ED}\n[127.0.0.1]:2222\t{ED}\n[10.0.0.*]:*,![10.0.0.9]:* {ED}\n"));
        assert_eq!(kh.check("example.org", 22, &key(ED)), Verdict::Known);
        assert_eq!(kh.check("EXAMPLE.org", 22, &key(ED)), Verdict::Known);
        assert_eq!(kh.check("example.org", 2222, &key(ED)), Verdict::Unknown);
        assert_eq!(kh.check("127.0.0.1", 2222, &key(ED)), Verdict::Known);
        assert_eq!(kh.check("10.0.0.5", 4000, &key(ED)), Verdict::Known);
        assert_eq!(kh.check("10.0.0.9", 4000, &key(ED)), Verdict::Unknown);
        assert!(matches!(
            kh.check("example.org", 22, &key(ED2)),
            Verdict::Changed { line: 2, .. }
        ));
    }

    #[test]
    fn hashed_entries_as_ssh_keygen_writes_them() {
        // The form `ssh-keygen -H` writes: base64 salt, base64 HMAC-SHA1 of the name.
        let salt = [7u8; 20];
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let entry = format!(
            "|1|{}|{} {ED}\n",
            Base64::encode_string(&salt),
            Base64::encode_string(&hash)
        );
        let (_d, kh) = hosts(&entry);
        assert_eq!(kh.check("127.0.0.1", 2222, &key(ED)), Verdict::Known);
        assert_eq!(kh.check("127.0.0.1", 2223, &key(ED)), Verdict::Unknown);
    }

    #[test]
    fn revoked_keys_are_refused_even_when_also_listed() {
        let (_d, kh) = hosts(&format!("host {ED}\n@revoked * {ED}\n"));
        assert!(matches!(
            kh.check("host", 22, &key(ED)),
            Verdict::Revoked { line: 2, .. }
        ));
    }

    #[test]
    fn learned_keys_are_known_next_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/known_hosts");
        learn(&f, "::1", 2022, &key(ED), false).unwrap();
        let kh = KnownHosts::load(std::slice::from_ref(&f));
        assert_eq!(kh.check("::1", 2022, &key(ED)), Verdict::Known);
        // HashKnownHosts: the name is not in the file, yet the key is known.
        learn(&f, "example.org", 22, &key(ED2), true).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("example.org") && text.contains("|1|"),
            "{text}"
        );
        let kh = KnownHosts::load(std::slice::from_ref(&f));
        assert_eq!(kh.check("example.org", 22, &key(ED2)), Verdict::Known);
        assert_eq!(kh.recorded_types("::1", 2022), vec![Algorithm::Ed25519]);
    }
}
