//! `RelPath`: a validated path relative to a sync root.
//!
//! Names are bytes, not `String`: Linux allows any byte but `/` and NUL in a name, and a
//! synchronizer that cannot carry a newline or invalid UTF-8 loses files. Every path that
//! comes from a scan, a baseline or the wire is checked here before it can touch a disk.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use triomphe::ThinArc;

/// Longest name Linux allows in one component.
pub const MAX_NAME: usize = 255;
/// Longest relative path we accept (Linux `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// A non-empty, `/`-separated path below a root: no leading `/`, no empty, `.` or `..`
/// components, no NUL, each component at most 255 bytes.
// Shared, not owned: the trees of a run (baseline, both sides, the plan, the next
// baseline) hold millions of the same paths, and a clone costs no copy of the bytes (see
// `tree::SharedPaths`). A thin pointer to a counted slice: 8 bytes in every key of every
// tree, where a `Vec` takes 24 and an `Arc<[u8]>` 16 (and a weak count no one uses).
#[derive(Clone)]
pub struct RelPath(ThinArc<(), u8>);

/// Why a byte string is not a valid [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path has no bytes.
    #[error("empty path")]
    Empty,
    /// The path starts with `/`.
    #[error("absolute path '{0}'")]
    Absolute(String),
    /// The path contains a NUL byte.
    #[error("path '{0}' contains a NUL byte")]
    Nul(String),
    /// A component is empty, `.` or `..`.
    #[error("path '{0}' has an empty, '.' or '..' component")]
    BadComponent(String),
    /// A component or the whole path is too long.
    #[error("path '{0}' is too long")]
    TooLong(String),
}

impl RelPath {
    /// Validates raw bytes as a relative path.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, PathError> {
        let bytes = bytes.into();
        validate(&bytes)?;
        Ok(RelPath::shared(&bytes))
    }

    /// Bytes already known to be a valid path, in a block of their own.
    fn shared(bytes: &[u8]) -> RelPath {
        RelPath(ThinArc::from_header_and_slice((), bytes))
    }

    /// The raw bytes of the path.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0.slice
    }

    /// True if both are one and the same copy of the bytes (shared, not only equal).
    pub fn same_bytes(&self, other: &RelPath) -> bool {
        self.0.ptr() == other.0.ptr()
    }

    /// The path as an `OsStr`, for calls into the operating system.
    pub fn as_os_str(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(self.as_bytes())
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.as_bytes().split(|&b| b == b'/')
    }

    /// The last component.
    pub fn name(&self) -> &[u8] {
        match self.as_bytes().iter().rposition(|&b| b == b'/') {
            Some(i) => &self.as_bytes()[i + 1..],
            None => self.as_bytes(),
        }
    }

    /// The parent path, or `None` for a top-level name.
    pub fn parent(&self) -> Option<RelPath> {
        self.parent_bytes().map(RelPath::shared)
    }

    /// The bytes of [`RelPath::parent`], without making a path of them.
    pub fn parent_bytes(&self) -> Option<&[u8]> {
        self.as_bytes()
            .iter()
            .rposition(|&b| b == b'/')
            .map(|i| &self.as_bytes()[..i])
    }

    /// This path with one more component appended; `name` must be a valid component.
    pub fn join(&self, name: &[u8]) -> Result<RelPath, PathError> {
        let mut v = Vec::with_capacity(self.as_bytes().len() + 1 + name.len());
        v.extend_from_slice(self.as_bytes());
        v.push(b'/');
        v.extend_from_slice(name);
        RelPath::new(v)
    }

    /// A top-level path of one component.
    pub fn from_name(name: &[u8]) -> Result<RelPath, PathError> {
        if name.contains(&b'/') {
            return Err(PathError::BadComponent(escape(name)));
        }
        RelPath::new(name.to_vec())
    }

    /// The same path with a suffix added to its last component (e.g. a conflict copy's name).
    pub fn with_suffix(&self, suffix: &str) -> Result<RelPath, PathError> {
        let mut v = self.as_bytes().to_vec();
        v.extend_from_slice(suffix.as_bytes());
        RelPath::new(v)
    }

    /// True if `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        self.as_bytes().starts_with(other.as_bytes())
            && (self.as_bytes().len() == other.as_bytes().len()
                || self.as_bytes()[other.as_bytes().len()] == b'/')
    }

    /// Replaces the leading `from` (which must be a prefix) with `to`.
    pub fn rebase(&self, from: &RelPath, to: &RelPath) -> RelPath {
        debug_assert!(self.starts_with(from));
        let mut v = to.as_bytes().to_vec();
        v.extend_from_slice(&self.as_bytes()[from.as_bytes().len()..]);
        RelPath::shared(&v)
    }

    /// The path escaped for display: printable UTF-8 as is, anything else as `\xNN`.
    pub fn escaped(&self) -> String {
        escape(self.as_bytes())
    }
}

fn validate(bytes: &[u8]) -> Result<(), PathError> {
    if bytes.is_empty() {
        return Err(PathError::Empty);
    }
    if bytes.len() > MAX_PATH {
        return Err(PathError::TooLong(escape(&bytes[..64])));
    }
    if bytes[0] == b'/' {
        return Err(PathError::Absolute(escape(bytes)));
    }
    if bytes.contains(&0) {
        return Err(PathError::Nul(escape(bytes)));
    }
    for c in bytes.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." || c == b".." {
            return Err(PathError::BadComponent(escape(bytes)));
        }
        if c.len() > MAX_NAME {
            return Err(PathError::TooLong(escape(bytes)));
        }
    }
    Ok(())
}

/// Escapes bytes for a terminal or a JSON string: valid, printable UTF-8 passes through;
/// control characters, backslashes and invalid bytes become `\xNN` so nothing is lost.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch.is_control() || ch == '\\' {
                let mut buf = [0u8; 4];
                for b in ch.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(ch);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Tree order: component by component, so a directory is followed directly by its
/// contents and parents always sort before their children. Computed in one pass over the
/// bytes with `/` ranked below every other byte, which gives the same order (a path holds
/// no NUL, so `/` can take its place) without splitting either path.
impl Ord for RelPath {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.as_bytes(), other.as_bytes());
        let n = a.len().min(b.len());
        match a[..n].iter().zip(&b[..n]).position(|(x, y)| x != y) {
            None => a.len().cmp(&b.len()),
            Some(i) => {
                let rank = |c: u8| if c == b'/' { 0 } else { c };
                rank(a[i]).cmp(&rank(b[i]))
            }
        }
    }
}

impl PartialOrd for RelPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for RelPath {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for RelPath {}

impl std::hash::Hash for RelPath {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_bytes().hash(h);
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.escaped())
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.escaped())
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::Bytes::new(self.as_bytes()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?.into_vec();
        RelPath::new(bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> RelPath {
        RelPath::new(s.to_vec()).unwrap()
    }

    #[test]
    fn rejects_escapes_and_malformed_paths() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"..",
            b"a/../b",
            b"a//b",
            b"a/./b",
            b"a/",
            b"a\0b",
        ] {
            assert!(RelPath::new(bad.to_vec()).is_err(), "{bad:?} accepted");
        }
        assert!(RelPath::new(vec![b'x'; 256]).is_err());
        assert!(RelPath::new(vec![b'x'; 255]).is_ok());
    }

    #[test]
    fn any_linux_name_round_trips_through_msgpack() {
        let odd = p(b"dir/new\nline/\xff\xfe-latin1-\xe9/tab\there");
        let bytes = rmp_serde::to_vec(&odd).unwrap();
        let back: RelPath = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, odd);
        assert_eq!(
            back.escaped(),
            "dir/new\\x0aline/\\xff\\xfe-latin1-\\xe9/tab\\x09here"
        );
    }

    #[test]
    fn tree_order_puts_children_right_after_parent() {
        let mut v = vec![p(b"a-b"), p(b"a/b"), p(b"a"), p(b"a/b/c"), p(b"b")];
        v.sort();
        assert_eq!(v, vec![p(b"a"), p(b"a/b"), p(b"a/b/c"), p(b"a-b"), p(b"b")]);
    }

    proptest::proptest! {
        #[test]
        fn fast_order_equals_component_order(a in "[a/.-]{1,12}", b in "[a/.-]{1,12}") {
            if let (Ok(a), Ok(b)) = (RelPath::new(a.into_bytes()), RelPath::new(b.into_bytes())) {
                proptest::prop_assert_eq!(a.cmp(&b), a.components().cmp(b.components()));
            }
        }
    }

    #[test]
    fn parent_name_and_prefix() {
        let x = p(b"a/bc/d");
        assert_eq!(x.parent(), Some(p(b"a/bc")));
        assert_eq!(x.name(), b"d");
        assert!(x.starts_with(&p(b"a/bc")));
        assert!(!x.starts_with(&p(b"a/b")));
        assert_eq!(x.rebase(&p(b"a"), &p(b"z/y")), p(b"z/y/bc/d"));
    }
}
