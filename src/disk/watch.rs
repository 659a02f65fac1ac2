//! Watching a tree for changes (continuous mode). The watcher is only a hint of where to
//! look: events are never applied, they name paths to rescan, so an event missed or seen
//! twice costs a rescan, never data. Symlinks are never followed.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};

use crate::core::path::RelPath;
use crate::disk::fsops::{PART_PREFIX, TEMP_PREFIX};

/// Where to look again after changes below a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hint {
    /// These paths changed; `true` covers everything below the path too (a directory
    /// created, moved or removed), `false` the entry itself.
    Paths(Vec<(RelPath, bool)>),
    /// The watcher lost track (queue overflow, watch limit, error): rescan everything.
    Rescan(String),
    /// The watching side is gone (its connection ended).
    Gone(String),
}

/// Receives hints, on the watcher's own thread.
pub type Sink = Box<dyn FnMut(Hint) + Send>;

/// How long a burst of events is gathered into one hint.
const GATHER: Duration = Duration::from_millis(50);
/// Beyond this many paths in one burst, a full rescan is cheaper than naming them.
const MAX_PATHS: usize = 100_000;

/// A running watch; dropping it stops it.
pub struct TreeWatcher {
    _watcher: Arc<Mutex<notify::RecommendedWatcher>>,
}

impl std::fmt::Debug for TreeWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TreeWatcher")
    }
}

/// Watches everything below `root`, reporting to `sink` in bursts. A watch limit reached
/// while setting up is not an error: the sink hears a `Rescan` with the reason, once.
pub fn start(root: &Path, mut sink: Sink) -> Result<TreeWatcher, String> {
    let (tx, rx) = mpsc::channel();
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = notify::RecommendedWatcher::new(tx, config)
        .map_err(|e| format!("cannot watch '{}': {e}", root.display()))?;
    match watcher.watch(root, RecursiveMode::Recursive) {
        Ok(()) => {}
        Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
            sink(Hint::Rescan(LIMIT.into()))
        }
        Err(e) => return Err(format!("cannot watch '{}': {e}", root.display())),
    }
    let root = root.to_path_buf();
    let watcher = Arc::new(Mutex::new(watcher));
    // Weak: the thread ends when the watch is dropped, which closes its channel.
    let rewatch = Arc::downgrade(&watcher);
    std::thread::Builder::new()
        .name("tandem watch".into())
        .spawn(move || gather(rx, &root, &rewatch, sink))
        .map_err(|e| format!("cannot start the watcher thread: {e}"))?;
    Ok(TreeWatcher { _watcher: watcher })
}

/// Before a side is rescanned because the watcher lost track, every directory in it is
/// watched again: the events that would have added watches on directories created
/// meanwhile (a queue overflow) are lost with the rest.
fn watch_again(watcher: &Weak<Mutex<notify::RecommendedWatcher>>, root: &Path, burst: &mut Burst) {
    let Some(w) = watcher.upgrade() else {
        return;
    };
    let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
    // The walk stops at a directory removed while it runs (the churn that overflowed the
    // queue may go on): a few more walks take in what lies after it.
    for _ in 0..3 {
        match w.watch(root, RecursiveMode::Recursive) {
            Ok(()) => return,
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                burst.rescan = Some(LIMIT.into());
                return;
            }
            // A root gone or unreadable: the rescan says so.
            Err(_) if !root.is_dir() => return,
            Err(_) => {}
        }
    }
}

const LIMIT: &str = "the inotify watch limit is reached (sysctl fs.inotify.max_user_watches); \
                     changes below some directories are found by periodic full rescans";

/// Turns raw events into hints, a burst at a time, until the watcher is dropped.
fn gather(
    rx: Receiver<notify::Result<notify::Event>>,
    root: &Path,
    rewatch: &Weak<Mutex<notify::RecommendedWatcher>>,
    mut sink: Sink,
) {
    while let Ok(first) = rx.recv() {
        let mut burst = Burst::default();
        burst.add(first, root);
        let until = Instant::now() + GATHER;
        let mut closed = false;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(ev) => burst.add(ev, root),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if burst.rescan.as_deref().is_some_and(|why| why != LIMIT) {
            watch_again(rewatch, root, &mut burst);
        }
        if let Some(h) = burst.hint() {
            sink(h);
        }
        if closed {
            return;
        }
    }
}

#[derive(Default)]
struct Burst {
    paths: BTreeMap<RelPath, bool>,
    rescan: Option<String>,
}

impl Burst {
    fn add(&mut self, ev: notify::Result<notify::Event>, root: &Path) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                self.rescan = Some(LIMIT.into());
                return;
            }
            Err(e) => {
                self.rescan = Some(format!("the watcher reported an error ({e})"));
                return;
            }
        };
        if ev.need_rescan() {
            self.rescan = Some("the inotify event queue overflowed".into());
            return;
        }
        let deep = match ev.kind {
            EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_)) => true,
            EventKind::Modify(_) | EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
            // Reads (ours included) change nothing.
            EventKind::Access(_) | EventKind::Other | EventKind::Any => return,
        };
        for p in &ev.paths {
            match relative(root, p) {
                Some(Some(rel)) => {
                    *self.paths.entry(rel).or_default() |= deep;
                }
                Some(None) if deep => {
                    self.rescan = Some("the root directory was moved or removed".into())
                }
                _ => {}
            }
        }
        if self.paths.len() > MAX_PATHS {
            self.rescan = Some("too many changes at once to name".into());
        }
    }

    fn hint(self) -> Option<Hint> {
        if let Some(why) = self.rescan {
            return Some(Hint::Rescan(why));
        }
        (!self.paths.is_empty()).then(|| Hint::Paths(self.paths.into_iter().collect()))
    }
}

/// The path below `root` (`Some(None)` for the root itself); `None` for what the sync never
/// looks at (its own temp files, paths outside the root).
fn relative(root: &Path, p: &Path) -> Option<Option<RelPath>> {
    let rel = p.strip_prefix(root).ok()?;
    let bytes = rel.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Some(None);
    }
    let rel = RelPath::new(bytes.to_vec()).ok()?;
    let name = rel.name();
    if name.starts_with(TEMP_PREFIX)
        || name.starts_with(PART_PREFIX)
        || name == crate::disk::xattrs::metafile::NAME
    {
        return None;
    }
    Some(Some(rel))
}

/// The root as the watcher should be given it: absolute, so event paths strip cleanly.
pub fn watch_root(root: &Path) -> PathBuf {
    std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_names_changed_paths_once_and_skips_temp_files() {
        let root = Path::new("/r");
        let mut b = Burst::default();
        let ev = |kind, p: &str| Ok(notify::Event::new(kind).add_path(PathBuf::from(p)));
        b.add(
            ev(
                EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
                "/r/a",
            ),
            root,
        );
        b.add(
            ev(EventKind::Create(notify::event::CreateKind::Folder), "/r/d"),
            root,
        );
        b.add(
            ev(
                EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::Any)),
                "/r/d",
            ),
            root,
        );
        b.add(
            ev(EventKind::Access(AccessKind::Open(AccessMode::Any)), "/r/x"),
            root,
        );
        let temp = format!("/r/{}f", String::from_utf8_lossy(TEMP_PREFIX));
        b.add(
            ev(EventKind::Create(notify::event::CreateKind::File), &temp),
            root,
        );
        let p = |s: &str| RelPath::new(s.as_bytes().to_vec()).unwrap();
        assert_eq!(
            b.hint(),
            Some(Hint::Paths(vec![(p("a"), false), (p("d"), true)]))
        );
    }

    #[test]
    fn an_overflow_asks_for_a_full_rescan() {
        let mut b = Burst::default();
        b.add(
            Ok(notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan)),
            Path::new("/r"),
        );
        assert!(matches!(b.hint(), Some(Hint::Rescan(_))));
    }
}
