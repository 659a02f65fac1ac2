//! ssh_config(5) PATTERNS: `*` and `?` wildcards, lists where a negated (`!`) pattern
//! that matches rules the name out whatever else matches. Used by `Host`, `Match` and
//! known_hosts lines alike.

/// Whether `pattern` (with `*` and `?`) matches all of `s`; ASCII case is ignored when
/// `fold` is set (host names), kept otherwise (user names).
pub fn wildcard(pattern: &str, s: &str, fold: bool) -> bool {
    matches(pattern.as_bytes(), s.as_bytes(), fold)
}

fn matches(p: &[u8], s: &[u8], fold: bool) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| matches(rest, &s[i..], fold)),
        Some((b'?', rest)) => !s.is_empty() && matches(rest, &s[1..], fold),
        Some((c, rest)) => s.split_first().is_some_and(|(d, s)| {
            (c == d || (fold && c.eq_ignore_ascii_case(d))) && matches(rest, s, fold)
        }),
    }
}

/// Whether a list of patterns names `s`: some pattern matches and no negated one does.
pub fn list<'a>(patterns: impl IntoIterator<Item = &'a str>, s: &str, fold: bool) -> bool {
    let mut any = false;
    for p in patterns.into_iter().filter(|p| !p.is_empty()) {
        match p.strip_prefix('!') {
            Some(p) if wildcard(p, s, fold) => return false,
            Some(_) => {}
            None => any |= wildcard(p, s, fold),
        }
    }
    any
}

/// [`list`] of a comma-separated pattern list (`Match host a,b`, known_hosts).
pub fn comma_list(patterns: &str, s: &str, fold: bool) -> bool {
    list(patterns.split(','), s, fold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_negation_and_case() {
        assert!(comma_list("*.example,!bad.example", "a.example", true));
        assert!(!comma_list("*.example,!bad.example", "bad.example", true));
        assert!(!comma_list("!bad.example", "good.example", true));
        assert!(comma_list("h?st", "HOST", true) && !comma_list("h?st", "hoost", true));
        assert!(!comma_list("Me", "me", false) && comma_list("m*", "me", false));
        assert!(list(["web*", "!web9"], "web1", true) && !list(["web*", "!web9"], "web9", true));
        assert!(wildcard("*", "", true) && !wildcard("?", "", true));
    }
}
