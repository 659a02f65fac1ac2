//! `-e` is two flags: filesync's `-e` (`--everything`, no value) and rsync's `-e COMMAND`
//! (`--rsh`). It is read as rsync's when the next argument is a command: not an option,
//! and its first word a program that runs here (on PATH, or a path to an executable).
//! `tandem -e -s SRC -d DST` stays filesync's; `tandem -e ssh ...` and
//! `tandem -e 'ssh -F ~/.ssh/work' ...` are rsync's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The command line with `-e COMMAND` spelled `--rsh COMMAND`.
pub fn rewrite(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "--" {
            out.push(a);
            out.extend(it);
            break;
        }
        let takes_command = a == "-e"
            && it
                .peek()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('-') && is_command(n));
        if takes_command {
            out.push("--rsh".into());
        } else {
            out.push(a);
        }
    }
    out
}

/// Whether `text`'s first word names a program that runs here.
fn is_command(text: &str) -> bool {
    let Some(first) = text.split_whitespace().next() else {
        return false;
    };
    if first.contains('/') {
        let path = match first.strip_prefix("~/") {
            Some(rest) => dirs::home_dir().map_or_else(|| PathBuf::from(first), |h| h.join(rest)),
            None => PathBuf::from(first),
        };
        return executable(&path);
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| executable(&d.join(first))))
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Vec<String> {
        rewrite(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn a_command_after_e_makes_it_rsh_anything_else_keeps_everything() {
        assert_eq!(
            run(&["tandem", "-e", "sh -x", "-K", "push"]),
            ["tandem", "--rsh", "sh -x", "-K", "push"]
        );
        assert_eq!(
            run(&["tandem", "-e", "/bin/sh"]),
            ["tandem", "--rsh", "/bin/sh"]
        );
        assert_eq!(
            run(&["tandem", "-e", "-s", "a"]),
            ["tandem", "-e", "-s", "a"]
        );
        assert_eq!(
            run(&["tandem", "-s", "a", "-d", "b", "-e", "no-such-program-here"])
                .last()
                .unwrap(),
            "no-such-program-here"
        );
        assert_eq!(run(&["tandem", "-e"]), ["tandem", "-e"]);
        assert_eq!(
            run(&["tandem", "--", "-e", "sh"]),
            ["tandem", "--", "-e", "sh"]
        );
    }
}
