//! The plan as shell-like commands (`cp`, `rm`, `mkdir`, `chmod`, `mv`, `ln -s`), the way
//! filesync describes its reconciliation.

use crate::core::path::RelPath;
use crate::core::plan::{Action, Op};
use crate::core::tree::{Entry, EntryKind};

/// Quotes bytes for a POSIX shell: plain words as they are, everything else in single
/// quotes, and bytes a terminal should not see as `$'\xNN'`.
pub fn shell_quote(bytes: &[u8]) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b);
    if !bytes.is_empty() && bytes.iter().all(|&b| plain(b)) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let printable = std::str::from_utf8(bytes).is_ok_and(|s| !s.chars().any(char::is_control));
    if printable {
        return format!(
            "'{}'",
            String::from_utf8_lossy(bytes).replace('\'', r"'\''")
        );
    }
    let mut s = String::from("$'");
    for &b in bytes {
        match b {
            b'\'' | b'\\' => s.push_str(&format!("\\{}", b as char)),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('\'');
    s
}

fn full(root: &str, path: &RelPath) -> String {
    let mut b = root.trim_end_matches('/').as_bytes().to_vec();
    b.push(b'/');
    b.extend_from_slice(path.as_bytes());
    shell_quote(&b)
}

fn meta_commands(dst: &str, src: &Entry, now: Option<&Entry>, everything: bool) -> Vec<String> {
    let mut out = Vec::new();
    let changed = |f: fn(&Entry) -> i64| now.is_none_or(|n| f(n) != f(src));
    if everything && changed(|e| e.uid as i64) {
        out.push(format!("chown {}:{} {dst}", src.uid, src.gid));
    }
    if !src.is_symlink() && changed(|e| e.mode as i64) {
        out.push(format!("chmod {:o} {dst}", src.mode));
    }
    if now.is_none_or(|n| n.xattrs() != src.xattrs()) && src.xattrs().is_some() {
        let n = src.xattrs().map_or(0, |x| x.len());
        out.push(format!(
            "setfattr --restore=- {dst}  # {n} ACL/xattr entries"
        ));
    }
    if changed(|e| e.mtime_ns) {
        out.push(touch(dst, src.mtime_ns));
    }
    out
}

fn touch(dst: &str, mtime_ns: i64) -> String {
    let (s, ns) = (
        mtime_ns.div_euclid(1_000_000_000),
        mtime_ns.rem_euclid(1_000_000_000),
    );
    format!("touch -h -d @{s}.{ns:09} {dst}")
}

/// The commands one action stands for; `roots` are the display roots `[local, remote]`.
pub fn commands(action: &Action, roots: [&str; 2], everything: bool) -> Vec<String> {
    let (dst_root, src_root) = match action.side {
        crate::core::plan::Side::Local => (roots[0], roots[1]),
        crate::core::plan::Side::Remote => (roots[1], roots[0]),
    };
    let dst = full(dst_root, &action.path);
    match &action.op {
        Op::Copy { from, source } => match source.kind {
            EntryKind::Symlink => vec![format!("ln -sfn {} {dst}", shell_quote(source.target()))],
            EntryKind::Special => {
                let (format, rdev) = source.special();
                let kind = match format & 0o170000 {
                    0o010000 => "p".to_string(),
                    0o020000 => {
                        let (major, minor) = crate::disk::sys::device_numbers(rdev);
                        format!("c {major} {minor}")
                    }
                    0o060000 => {
                        let (major, minor) = crate::disk::sys::device_numbers(rdev);
                        format!("b {major} {minor}")
                    }
                    _ => "?".to_string(),
                };
                vec![format!("mknod -m {:o} {dst} {kind}", source.mode)]
            }
            _ => vec![format!("cp -p {} {dst}", full(src_root, from))],
        },
        Op::Link { to, .. } => vec![format!("ln -f {} {dst}", full(dst_root, to))],
        Op::Dedup {
            from,
            hardlink: true,
            ..
        } => vec![format!("ln -f {} {dst}", full(dst_root, from))],
        Op::Dedup { from, .. } => vec![format!(
            "cp -p --reflink=auto {} {dst}",
            full(dst_root, from)
        )],
        Op::Unlink { .. } => vec![format!("cp -p --remove-destination {dst} {dst}")],
        Op::Mkdir { source } => vec![format!("mkdir -m {:o} {dst}", source.mode)],
        Op::Delete if action.expect.as_deref().is_some_and(|e| e.is_dir()) => {
            vec![format!("rmdir {dst}")]
        }
        Op::Delete => vec![format!("rm {dst}")],
        Op::Rename { to, source } => {
            let to_full = full(dst_root, to);
            let mut v = vec![format!("mv {dst} {to_full}")];
            if let Some(s) = source {
                v.extend(meta_commands(
                    &to_full,
                    s,
                    action.expect.as_deref(),
                    everything,
                ));
            }
            v
        }
        Op::SetMeta { source } => meta_commands(&dst, source, action.expect.as_deref(), everything),
        Op::Restamp { mtime_ns } => vec![touch(&dst, *mtime_ns)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_a_shell_would_misread() {
        assert_eq!(shell_quote(b"/a/b.txt"), "/a/b.txt");
        assert_eq!(shell_quote(b"/a/it's here"), r"'/a/it'\''s here'");
        assert_eq!(shell_quote(b"/a/new\nline\xff"), r"$'/a/new\x0aline\xff'");
    }
}
