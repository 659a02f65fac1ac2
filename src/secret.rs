//! Secrets in what is shown: a password written into a host or URL is never repeated in
//! a message, a log line or a JSON event.

/// `s` with the password of any `USER:PASSWORD@` in it replaced by `***`, for messages.
pub fn masked(s: &str) -> String {
    let Some((before, after)) = s.rsplit_once('@') else {
        return s.to_string();
    };
    let start = before.rfind("://").map_or(0, |i| i + 3);
    match before[start..].split_once(':') {
        Some((user, _)) => format!("{}{user}:***@{after}", &before[..start]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_password_is_hidden() {
        assert_eq!(masked("ssh://u:p@h"), "ssh://u:***@h");
        assert_eq!(
            masked("dnats://gazelle:pw@host:1"),
            "dnats://gazelle:***@host:1"
        );
        assert_eq!(masked("u@h:1"), "u@h:1");
        assert_eq!(masked("--proxy=u:pw@h"), "--proxy=u:***@h");
        assert_eq!(masked("/a/b"), "/a/b");
    }
}
