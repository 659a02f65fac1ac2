//! `Match` blocks of `~/.ssh/config`, which the config parser does not know: it would take
//! their settings for the `Host` block above them, and use one host's port, user or key
//! for another. They are cut out before parsing; a block that applies (or may apply) to
//! a host being connected to is refused by name, one that cannot apply is left out.

/// One `Match` block cut out of the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchBlock {
    /// Its line in the file (1-based).
    pub line: usize,
    /// Its criteria, as written: keyword and argument (empty for `all`, `final`, ...).
    pub criteria: Vec<(String, String)>,
}

/// The config text with every `Match` block blanked (lines kept, so the parser's line
/// numbers still hold), and the blocks.
pub fn cut(text: &[u8]) -> (Vec<u8>, Vec<MatchBlock>) {
    let text = String::from_utf8_lossy(text);
    let mut out = String::with_capacity(text.len());
    let mut blocks = Vec::new();
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let words = words(line);
        match words.first().map(|w| w.to_ascii_lowercase()) {
            Some(k) if k == "match" => {
                inside = true;
                blocks.push(MatchBlock {
                    line: i + 1,
                    criteria: criteria(&words[1..]),
                });
            }
            Some(k) if k == "host" => inside = false,
            _ => {}
        }
        if !inside {
            out.push_str(line);
        }
        out.push('\n');
    }
    (out.into_bytes(), blocks)
}

/// A line's words: split on blanks and `=`, double quotes grouping, `#` ending it.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.trim().chars() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted && word.is_empty() => break,
            c if !quoted && (c.is_whitespace() || (c == '=' && out.is_empty())) => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Criteria without an argument; every other one takes the next word.
const BARE: [&str; 3] = ["all", "canonical", "final"];

fn criteria(words: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let k = w.to_ascii_lowercase();
        let negated = k.trim_start_matches('!');
        let arg = if BARE.contains(&negated) {
            String::new()
        } else {
            it.next().cloned().unwrap_or_default()
        };
        out.push((k, arg));
    }
    out
}

/// Who is being connected to, as a `Match` block would test it.
pub struct Connection<'a> {
    /// The name as typed.
    pub alias: &'a str,
    /// HostName, or the alias.
    pub host: &'a str,
    /// The login name.
    pub user: &'a str,
    /// The local user.
    pub local_user: &'a str,
}

impl MatchBlock {
    /// False only when the block certainly does not apply: every criterion is one tandem
    /// can test, and one of them fails. (`exec`, `tagged` and the rest count as applying.)
    pub fn may_apply(&self, c: &Connection<'_>) -> bool {
        self.criteria.iter().all(|(k, arg)| {
            let (negated, k) = match k.strip_prefix('!') {
                Some(k) => (true, k),
                None => (false, k.as_str()),
            };
            let holds = match k {
                "all" | "final" => Some(true),
                // tandem never canonicalizes a host name.
                "canonical" => Some(false),
                "host" => Some(list_matches(arg, c.host) || list_matches(arg, c.alias)),
                "originalhost" => Some(list_matches(arg, c.alias)),
                "user" => Some(list_matches(arg, c.user)),
                "localuser" => Some(list_matches(arg, c.local_user)),
                _ => None,
            };
            match holds {
                Some(h) => h != negated,
                None => true,
            }
        })
    }
}

/// An ssh_config(5) pattern list: comma-separated, `*` and `?` wildcards, a `!` pattern
/// that matches ruling the name out.
pub fn list_matches(list: &str, name: &str) -> bool {
    let mut any = false;
    for p in list.split(',').filter(|p| !p.is_empty()) {
        match p.strip_prefix('!') {
            Some(p) if wildcard(p.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => any |= wildcard(p.as_bytes(), name.as_bytes()),
        }
    }
    any
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_blocks_are_cut_out_and_tested_like_ssh() {
        let text = b"Host other\n  Port 3222\nMatch host matched\n  Port 3122\nHost *\n  User me\n";
        let (rest, blocks) = cut(text);
        assert_eq!(
            String::from_utf8(rest).unwrap(),
            "Host other\n  Port 3222\n\n\nHost *\n  User me\n"
        );
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].line, 3);
        let to = |host| Connection {
            alias: host,
            host,
            user: "me",
            local_user: "me",
        };
        assert!(!blocks[0].may_apply(&to("other")));
        assert!(blocks[0].may_apply(&to("matched")));
        let (_, b) = cut(b"Match exec \"true\" host x\n");
        assert!(b[0].may_apply(&to("x")) && !b[0].may_apply(&to("y")));
        let (_, b) = cut(b"Match all\n");
        assert!(b[0].may_apply(&to("any")));
        let (_, b) = cut(b"Match !localuser me\n");
        assert!(!b[0].may_apply(&to("any")));
        assert!(list_matches("*.example,!bad.example", "a.example"));
        assert!(!list_matches("*.example,!bad.example", "bad.example"));
        assert!(list_matches("h?st", "HOST") && !list_matches("h?st", "hoost"));
    }
}
