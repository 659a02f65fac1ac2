//! ssh_config(5) files read as OpenSSH reads them, for one connection: the user's file,
//! then the system's; `Include` (globs, relative to `~/.ssh` or `/etc/ssh`); `Host`
//! patterns with `*`, `?` and `!`; `Match` blocks evaluated in order against what is known
//! so far (`host`, `originalhost`, `user`, `localuser`, `exec`, `tagged`, `all`, `final`,
//! `canonical`), with a second pass when a `Match final` asks for one. What comes out is
//! the list of settings that apply, in file order: the first value of each wins.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::pattern;
use super::tokens::Tokens;
use crate::error::{Error, Result};

/// How deep `Include` may nest, as in OpenSSH.
const MAX_DEPTH: usize = 16;

/// One setting line that applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// The keyword, lower case.
    pub key: String,
    /// Its arguments, unquoted.
    pub args: Vec<String>,
    /// The rest of the line as written (ProxyCommand and the other commands are run as
    /// written, quotes and all).
    pub raw: String,
    /// Where it is: `file line N`.
    pub place: String,
}

impl Directive {
    /// The first argument ("" if none).
    pub fn value(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }

    /// An error about this line's value: what is wrong and where.
    pub fn bad(&self, why: &str) -> Error {
        Error::Usage(format!(
            "{} ({}): {why}; fix the line or give the setting on the command line",
            self.place, self.key
        ))
    }
}

/// The settings that apply to one connection, in the order OpenSSH reads them.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    list: Vec<Directive>,
}

impl Settings {
    /// The first (winning) line of `key`.
    pub fn first(&self, key: &str) -> Option<&Directive> {
        self.list.iter().find(|d| d.key == key)
    }

    /// Every line of `key`, for the settings that add up (IdentityFile, CertificateFile).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Directive> + 'a {
        self.list.iter().filter(move |d| d.key == key)
    }

    /// Which of `keys` comes first (ProxyCommand and ProxyJump: the first one set wins).
    pub fn first_of(&self, keys: &[&str]) -> Option<&Directive> {
        self.list.iter().find(|d| keys.contains(&d.key.as_str()))
    }
}

/// The connection being configured, as known before the files are read.
#[derive(Clone, Debug)]
pub struct Query<'a> {
    /// The name as typed (a `Host` alias, perhaps).
    pub original: &'a str,
    /// The login name from the command line.
    pub user: Option<&'a str>,
    /// The port from the command line.
    pub port: Option<u16>,
    /// The local home directory.
    pub home: &'a Path,
    /// The local user.
    pub local_user: &'a str,
}

/// The files to read: the user's (`~/.ssh/config`) and the system's (`/etc/ssh/ssh_config`).
#[derive(Clone, Debug)]
pub struct Files {
    /// The user's file; relative `Include`s are in `~/.ssh`.
    pub user: PathBuf,
    /// The system's file; relative `Include`s are in `/etc/ssh`.
    pub system: PathBuf,
}

impl Files {
    /// The files OpenSSH reads for a user with this home directory.
    pub fn standard(home: &Path) -> Files {
        Files {
            user: home.join(".ssh/config"),
            system: PathBuf::from("/etc/ssh/ssh_config"),
        }
    }
}

/// Reads the settings that apply to `q`.
pub fn read(files: &Files, q: &Query) -> Result<Settings> {
    let mut r = Reader {
        q,
        final_pass: false,
        wants_final: false,
        out: Vec::new(),
    };
    r.both(files)?;
    if r.wants_final {
        // As OpenSSH: read everything again with `final` true; what the first pass set
        // stays first, so it still wins.
        r.final_pass = true;
        r.both(files)?;
    }
    Ok(Settings { list: r.out })
}

struct Reader<'a> {
    q: &'a Query<'a>,
    final_pass: bool,
    wants_final: bool,
    out: Vec<Directive>,
}

/// One `Match` criterion: keyword (lower case, `!` kept) and its argument.
type Criterion = (String, Option<String>);

impl Reader<'_> {
    fn both(&mut self, files: &Files) -> Result<()> {
        let user_dir = self.q.home.join(".ssh");
        self.file(&files.user, &user_dir, false, 0)?;
        let system_dir = files
            .system
            .parent()
            .map_or_else(|| PathBuf::from("/etc/ssh"), Path::to_path_buf);
        self.file(&files.system, &system_dir, false, 0)
    }

    /// One file; with `never`, nothing in it applies (it is included from a block that
    /// does not), though it is still read, as OpenSSH does.
    fn file(&mut self, path: &Path, dir: &Path, never: bool, depth: usize) -> Result<()> {
        let text = match std::fs::read(path) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::Unreachable(format!(
                    "cannot read '{}': {e}",
                    path.display()
                )))
            }
        };
        let mut active = !never;
        for (i, line) in text.lines().enumerate() {
            let place = format!("'{}' line {}", path.display(), i + 1);
            let Some((key, raw)) = split_keyword(line) else {
                continue;
            };
            let args = words(raw)
                .map_err(|why| Error::Usage(format!("{place}: {why}; fix the line in the file")))?;
            match key.as_str() {
                "host" => active = !never && self.host_applies(&args),
                "match" => active = !never && self.match_applies(&args, &place)?,
                "include" => {
                    for file in included(&args, dir, self.q.home, &place)? {
                        if depth + 1 > MAX_DEPTH {
                            return Err(Error::Usage(format!(
                                "{place}: Include nests deeper than {MAX_DEPTH} files (a loop?)"
                            )));
                        }
                        self.file(&file, dir, never || !active, depth + 1)?;
                    }
                }
                _ if active => self.out.push(Directive {
                    key,
                    args,
                    raw: raw.trim().to_string(),
                    place,
                }),
                _ => {}
            }
        }
        Ok(())
    }

    fn first(&self, key: &str) -> Option<&Directive> {
        self.out.iter().find(|d| d.key == key)
    }

    /// The login name as known so far.
    fn user(&self) -> String {
        match self.q.user {
            Some(u) => u.to_string(),
            None => self
                .first("user")
                .map_or_else(|| self.q.local_user.to_string(), |d| d.value().to_string()),
        }
    }

    /// The host as known so far: HostName (its `%h` expanded), or the name as typed.
    fn host(&self) -> String {
        match self.first("hostname") {
            Some(d) => d.value().replace("%h", self.q.original).replace("%%", "%"),
            None => self.q.original.to_string(),
        }
    }

    fn port(&self) -> u16 {
        self.q
            .port
            .or_else(|| self.first("port").and_then(|d| d.value().parse().ok()))
            .unwrap_or(22)
    }

    /// `Host` patterns match the name as typed (HostName, in the final pass).
    fn host_applies(&self, patterns: &[String]) -> bool {
        let host = if self.final_pass {
            self.host()
        } else {
            self.q.original.to_string()
        };
        pattern::list(patterns.iter().map(String::as_str), &host, true)
    }

    fn match_applies(&mut self, args: &[String], place: &str) -> Result<bool> {
        let criteria = criteria(args, place)?;
        let mut result = true;
        for (keyword, arg) in &criteria {
            let (negated, keyword) = match keyword.strip_prefix('!') {
                Some(k) => (true, k),
                None => (false, keyword.as_str()),
            };
            let arg = arg.as_deref().unwrap_or_default();
            let holds = match keyword {
                "all" => true,
                "final" => {
                    self.wants_final = true;
                    self.final_pass
                }
                "canonical" => self.final_pass,
                "host" => pattern::comma_list(arg, &self.host(), true),
                "originalhost" => pattern::comma_list(arg, self.q.original, true),
                "user" => pattern::comma_list(arg, &self.user(), false),
                "localuser" => pattern::comma_list(arg, self.q.local_user, false),
                "tagged" => {
                    let tag = self.first("tag").map_or("", Directive::value);
                    pattern::comma_list(arg, tag, false)
                }
                // As OpenSSH: a command is not run once the block has failed.
                "exec" if !result => false,
                "exec" => self.exec(arg, place)?,
                other => {
                    return Err(Error::Usage(format!(
                        "{place}: 'Match {other}' is not a criterion tandem evaluates, and a \
                         Match block decides which settings apply; run tandem through the \
                         system ssh with -e ssh, or use Host blocks"
                    )))
                }
            };
            result &= holds != negated;
        }
        Ok(result)
    }

    /// `Match exec`: true when the command (tokens expanded) exits 0.
    fn exec(&self, command: &str, place: &str) -> Result<bool> {
        let (host, user) = (self.host(), self.user());
        let tokens = Tokens {
            home: self.q.home,
            local_user: self.q.local_user,
            user: &user,
            host: &host,
            original: self.q.original,
            port: self.port(),
            host_key_alias: None,
            jump: "",
        };
        let command = tokens.expand(command);
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| {
                Error::Usage(format!("{place}: cannot run 'Match exec {command}': {e}"))
            })?;
        Ok(status.success())
    }
}

/// A `Match` line's criteria: each keyword with its argument (`all`, `final` and
/// `canonical` take none).
fn criteria(args: &[String], place: &str) -> Result<Vec<Criterion>> {
    if args.is_empty() {
        return Err(Error::Usage(format!(
            "{place}: Match without criteria; write e.g. 'Match host NAME' or 'Match all'"
        )));
    }
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(w) = it.next() {
        let k = w.to_ascii_lowercase();
        let bare = matches!(k.trim_start_matches('!'), "all" | "final" | "canonical");
        let arg =
            if bare {
                None
            } else {
                Some(it.next().cloned().ok_or_else(|| {
                    Error::Usage(format!("{place}: 'Match {k}' needs an argument"))
                })?)
            };
        out.push((k, arg));
    }
    Ok(out)
}

/// The files an `Include` names, in order: globs expanded (sorted, as glob(3) does),
/// `~/` the home directory, relative names in `dir`.
fn included(args: &[String], dir: &Path, home: &Path, place: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        let path = match arg.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None if arg.starts_with('/') => PathBuf::from(arg),
            None => dir.join(arg),
        };
        let pattern = path.to_string_lossy().into_owned();
        let found = glob::glob(&pattern)
            .map_err(|e| Error::Usage(format!("{place}: bad Include pattern '{arg}': {e}")))?;
        let mut files: Vec<PathBuf> = found.filter_map(std::result::Result::ok).collect();
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// A line's keyword (lower case) and the rest: `Key value`, `Key=value` or `Key = value`;
/// `None` for blank lines and comments.
fn split_keyword(line: &str) -> Option<(String, &str)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    Some((key.to_ascii_lowercase(), rest.trim_start()))
}

/// Arguments as OpenSSH splits them: on blanks, `"` or `'` grouping, `\` escaping a
/// quote or itself, a word starting with `#` ending the line.
fn words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            _ => {}
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match (c, quote) {
                (c, None) if c.is_whitespace() => break,
                ('\\', _) => {
                    chars.next();
                    match chars.peek() {
                        Some(&n) if n == '\\' || n == '"' || n == '\'' => {
                            word.push(n);
                            chars.next();
                        }
                        _ => word.push('\\'),
                    }
                    continue;
                }
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, _) => word.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            return Err("unclosed quote".into());
        }
        out.push(word);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setup {
        dir: tempfile::TempDir,
    }

    impl Setup {
        fn new(config: &str) -> Setup {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join(".ssh")).unwrap();
            std::fs::write(dir.path().join(".ssh/config"), config).unwrap();
            Setup { dir }
        }

        fn write(&self, name: &str, text: &str) {
            let p = self.dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }

        fn read(&self, host: &str, user: Option<&str>) -> Result<Settings> {
            let files = Files {
                user: self.dir.path().join(".ssh/config"),
                system: self.dir.path().join("etc/ssh_config"),
            };
            read(
                &files,
                &Query {
                    original: host,
                    user,
                    port: None,
                    home: self.dir.path(),
                    local_user: "me",
                },
            )
        }

        fn value(&self, host: &str, key: &str) -> Option<String> {
            let s = self.read(host, None).unwrap();
            s.first(key).map(|d| d.value().to_string())
        }
    }

    #[test]
    fn the_first_value_wins_and_match_blocks_apply_only_where_they_match() {
        let s = Setup::new(
            "Port 1000\nHost other\n  Port 3222\nMatch host matched\n  Port 3122\nHost *\n  Port 22\n  User fallback\n",
        );
        assert_eq!(s.value("other", "port").as_deref(), Some("1000"));
        let s = Setup::new(
            "Host other\n  Port 3222\nMatch host matched\n  Port 3122\nHost *\n  Port 22\n",
        );
        assert_eq!(s.value("other", "port").as_deref(), Some("3222"));
        assert_eq!(s.value("matched", "port").as_deref(), Some("3122"));
        assert_eq!(s.value("third", "port").as_deref(), Some("22"));
    }

    #[test]
    fn match_host_sees_the_hostname_set_above_it_and_user_the_login_so_far() {
        let s = Setup::new(
            "Host alias\n  HostName real.example\nMatch host real.example user bk\n  Port 7\nMatch originalhost alias !user bk\n  Port 8\n",
        );
        let port = |user| {
            s.read("alias", user)
                .unwrap()
                .first("port")
                .map(|d| d.value().to_string())
        };
        assert_eq!(port(Some("bk")).as_deref(), Some("7"));
        assert_eq!(port(Some("other")).as_deref(), Some("8"));
        assert_eq!(port(None).as_deref(), Some("8"));
    }

    #[test]
    fn match_exec_runs_its_command_with_tokens_and_stops_after_a_failed_criterion() {
        let s = Setup::new("");
        let mark = s.dir.path().join("ran");
        s.write(
            ".ssh/config",
            &format!(
                "Match host nomatch exec \"touch {m}-never\"\n  Port 1\nMatch exec \"test %h = yes && touch {m}\"\n  Port 2\nMatch exec false\n  Port 3\n",
                m = mark.display()
            ),
        );
        assert_eq!(s.value("yes", "port").as_deref(), Some("2"));
        assert!(mark.exists());
        assert!(!s.dir.path().join("ran-never").exists());
        assert_eq!(s.value("no", "port"), None);
    }

    #[test]
    fn includes_are_globbed_relative_to_dot_ssh_and_only_under_an_applying_block() {
        let s = Setup::new(
            "Include conf.d/*.conf\nHost web\n  Include web.conf\nHost *\n  User last\n",
        );
        s.write(".ssh/conf.d/b.conf", "Host db\n  Port 6\n");
        s.write(
            ".ssh/conf.d/a.conf",
            "Host db\n  Port 5\nMatch all\n  User from_a\n",
        );
        s.write(".ssh/web.conf", "IdentityFile ~/.ssh/web\n");
        assert_eq!(s.value("db", "port").as_deref(), Some("5"));
        assert_eq!(s.value("db", "user").as_deref(), Some("from_a"));
        assert_eq!(
            s.value("web", "identityfile").as_deref(),
            Some("~/.ssh/web")
        );
        assert_eq!(s.value("db", "identityfile"), None);
        // A Match in an included file does not change what applies after the Include.
        assert_eq!(s.value("web", "user").as_deref(), Some("from_a"));
    }

    #[test]
    fn the_system_file_comes_after_the_users_and_match_final_reads_again() {
        let s = Setup::new("Host h\n  HostName real\nMatch final host real\n  Port 9\n");
        s.write("etc/ssh_config", "Host *\n  Port 22\n  User sys\n");
        assert_eq!(s.value("h", "user").as_deref(), Some("sys"));
        // The final pass runs Match final; its Port comes after the first pass's lines.
        let all: Vec<String> = s
            .read("h", None)
            .unwrap()
            .all("port")
            .map(|d| d.value().to_string())
            .collect();
        assert_eq!(all, ["22", "9", "22"]);
    }

    #[test]
    fn host_patterns_negation_and_line_syntax() {
        let s = Setup::new(
            "Host web? !web9\n  Port=2200\nHost *\n\tIdentityFile \"~/my keys/id\" # comment\n  ProxyCommand sh -c \"nc %h %p\"\n",
        );
        assert_eq!(s.value("web1", "port").as_deref(), Some("2200"));
        assert_eq!(s.value("web9", "port"), None);
        assert_eq!(s.value("web10", "port"), None);
        let got = s.read("x", None).unwrap();
        assert_eq!(got.first("identityfile").unwrap().value(), "~/my keys/id");
        assert_eq!(got.first("proxycommand").unwrap().raw, "sh -c \"nc %h %p\"");
        assert!(got.first("identityfile").unwrap().place.ends_with("line 4"));
    }

    #[test]
    fn what_cannot_be_evaluated_is_refused_by_name() {
        let s = Setup::new("Match localnetwork 10.0.0.0/8\n  Port 1\n");
        let e = s.read("x", None).unwrap_err().to_string();
        assert!(
            e.contains("'Match localnetwork'") && e.contains("-e ssh"),
            "{e}"
        );
        let s = Setup::new("Match host\n");
        assert!(s
            .read("x", None)
            .unwrap_err()
            .to_string()
            .contains("needs an argument"));
        let s = Setup::new("Host x\n  User \"unclosed\n");
        assert!(s
            .read("x", None)
            .unwrap_err()
            .to_string()
            .contains("unclosed quote"));
    }
}
