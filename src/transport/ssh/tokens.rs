//! ssh_config(5) TOKENS: the `%` escapes OpenSSH expands in HostName, IdentityFile,
//! ProxyCommand, `Match exec` and the other settings that name files or commands.

use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

/// What the tokens stand for, for one connection.
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    /// `%d`: the local home directory (also what `~` stands for).
    pub home: &'a Path,
    /// `%u`: the local user.
    pub local_user: &'a str,
    /// `%r`: the remote login name.
    pub user: &'a str,
    /// `%h`: the host connected to (HostName).
    pub host: &'a str,
    /// `%n`: the name as typed.
    pub original: &'a str,
    /// `%p`: the port.
    pub port: u16,
    /// `%k`: HostKeyAlias, or the host as typed.
    pub host_key_alias: Option<&'a str>,
    /// `%j`: ProxyJump, or empty.
    pub jump: &'a str,
}

/// This machine's name (`%l`), as `uname -n` gives it.
pub fn local_host() -> String {
    crate::disk::sys::host_name()
}

impl Tokens<'_> {
    /// `s` with every token expanded; an unknown one is kept as written.
    pub fn expand(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => out.push_str(&self.home.to_string_lossy()),
                Some('u') => out.push_str(self.local_user),
                Some('r') => out.push_str(self.user),
                Some('h') => out.push_str(self.host),
                Some('n') => out.push_str(self.original),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('k') => out.push_str(self.host_key_alias.unwrap_or(self.original)),
                Some('j') => out.push_str(self.jump),
                Some('i') => out.push_str(&crate::disk::sys::user_id().to_string()),
                Some('l') => out.push_str(&local_host()),
                Some('L') => out.push_str(local_host().split('.').next().unwrap_or_default()),
                Some('C') => out.push_str(&self.connection_hash()),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }

    /// A path setting: `~/` is the home directory, then the tokens.
    pub fn path(&self, s: &str) -> PathBuf {
        let expanded = self.expand(s);
        match expanded.strip_prefix("~/") {
            Some(rest) => self.home.join(rest),
            None if expanded == "~" => self.home.to_path_buf(),
            None => PathBuf::from(expanded),
        }
    }

    /// `%C`: SHA-1 of `%l%h%p%r`, in hex (what ControlPath names sockets by).
    fn connection_hash(&self) -> String {
        let mut h = Sha1::new();
        h.update(format!(
            "{}{}{}{}",
            local_host(),
            self.host,
            self.port,
            self.user
        ));
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expand_as_in_ssh_config() {
        let t = Tokens {
            home: Path::new("/home/me"),
            local_user: "me",
            user: "bk",
            host: "10.0.0.1",
            original: "backup",
            port: 2222,
            host_key_alias: None,
            jump: "",
        };
        assert_eq!(
            t.expand("%r@%h:%p (%n) 100%% %q"),
            "bk@10.0.0.1:2222 (backup) 100% %q"
        );
        assert_eq!(t.path("~/.ssh/id_%u"), PathBuf::from("/home/me/.ssh/id_me"));
        assert_eq!(t.path("%d/k"), PathBuf::from("/home/me/k"));
        assert_eq!(t.expand("%C").len(), 40);
        assert_eq!(t.expand("%k"), "backup");
    }
}
