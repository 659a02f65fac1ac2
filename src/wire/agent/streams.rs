//! Extra input streams into one agent (`--transfer-threads`).
//!
//! An SSH channel can carry only as much as the server's window per round trip (sshd:
//! 2 MiB), so a long fat link needs several channels. Each extra channel runs
//! `tandem-agent --join`, a relay that greets, reads the name of this agent's listening
//! socket from its stdin, connects and copies the rest of its stdin there (the client
//! starts relays while the agent itself starts, and names the socket once it is invited).
//! Once streams are on, every frame the client sends, on any stream, carries a sequence
//! number, and the agent handles frames strictly in that order: the streams merge back
//! into the one conversation the protocol already is. Answers always go out on the first
//! stream.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::sync::{Arc, Condvar, Mutex};

use crate::disk::compress::Decompressor;
pub use crate::wire::protocol::frame::Frame;
use crate::wire::protocol::frame::{read_seq_frame, FrameError};
use crate::wire::protocol::handshake::send_hello;
use crate::wire::protocol::inflate;

/// Frame bytes buffered out of order before stream readers wait (the frame the merge
/// needs next is always taken, so waiting never deadlocks).
const MERGE_BYTES: usize = 64 << 20;
/// Length of the secret a joining stream must present.
pub const TOKEN_LEN: usize = 16;

#[derive(Default)]
struct MergeState {
    next: u64,
    pending: BTreeMap<u64, Frame>,
    bytes: usize,
    open: usize,
    failed: Option<String>,
}

/// Frames from several streams, handed out in sequence order.
#[derive(Default)]
pub struct Merge {
    state: Mutex<MergeState>,
    changed: Condvar,
}

impl Merge {
    fn lock(&self) -> std::sync::MutexGuard<'_, MergeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a frame; waits while too much is buffered, unless it is the one needed next.
    fn push(&self, seq: u64, frame: Frame) -> Result<(), ()> {
        let mut s = self.lock();
        while seq != s.next && s.bytes > MERGE_BYTES && s.failed.is_none() {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.failed.is_some() {
            return Err(());
        }
        if seq < s.next || s.pending.contains_key(&seq) {
            s.failed = Some(format!("frame {seq} arrived twice"));
            self.changed.notify_all();
            return Err(());
        }
        s.bytes += frame.1.len();
        s.pending.insert(seq, frame);
        self.changed.notify_all();
        Ok(())
    }

    /// The next frame in order; `Ok(None)` once every stream has ended with nothing left.
    pub fn pop(&self) -> Result<Option<Frame>, String> {
        let mut s = self.lock();
        loop {
            if let Some(why) = &s.failed {
                return Err(why.clone());
            }
            let next = s.next;
            if let Some(frame) = s.pending.remove(&next) {
                s.next += 1;
                s.bytes -= frame.1.len();
                self.changed.notify_all();
                return Ok(Some(frame));
            }
            if s.open == 0 {
                return Ok(None);
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn opened(&self) {
        self.lock().open += 1;
    }

    fn ended(&self, error: Option<String>) {
        let mut s = self.lock();
        s.open -= 1;
        if s.failed.is_none() {
            s.failed = error;
        }
        self.changed.notify_all();
    }

    /// Reads sequenced frames from `input` into the merge until it ends, decompressing
    /// them in the stream's `context` (what it saw before, if it was read from already).
    pub fn feed(self: &Arc<Self>, input: impl Read + Send + 'static, mut context: Decompressor) {
        self.opened();
        let merge = self.clone();
        std::thread::spawn(move || {
            let mut input = BufReader::with_capacity(1 << 20, input);
            let error = loop {
                match read_seq_frame(&mut input) {
                    Ok(Some((seq, frame))) => {
                        let frame = match inflate(frame, &mut context) {
                            Ok(f) => f,
                            Err(why) => break Some(format!("bad frame from the client: {why}")),
                        };
                        if merge.push(seq, frame).is_err() {
                            break None;
                        }
                    }
                    Ok(None) => break None,
                    Err(FrameError::Io(e)) => break Some(format!("a transfer stream broke: {e}")),
                    Err(e) => break Some(format!("bad frame from the client: {e}")),
                }
            };
            merge.ended(error);
        });
    }
}

/// What the client needs to join streams: the socket's name and the secret.
pub struct Invitation {
    /// The socket's address (an abstract name on Linux, a path on macOS).
    pub name: String,
    /// The secret each joining stream sends first.
    pub token: [u8; TOKEN_LEN],
}

/// Listens for up to `count` joining streams, feeding each into `merge` once it has shown
/// the token.
pub fn listen(count: u32, merge: &Arc<Merge>) -> std::io::Result<Invitation> {
    let mut token = [0u8; TOKEN_LEN];
    getrandom(&mut token)?;
    let name = format!(
        "tandem-{}-{}",
        std::process::id(),
        token[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let listener = crate::disk::sys::listen_local(&name)?;
    let name = listener.address().to_string();
    let merge = merge.clone();
    // The listener goes when all joined (on macOS that removes its socket file).
    std::thread::spawn(move || {
        let mut joined = 0;
        while joined < count {
            let Ok(mut s) = listener.accept() else {
                return;
            };
            // A stranger that connects and says nothing must not hold up the others.
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
            let mut shown = [0u8; TOKEN_LEN];
            if s.read_exact(&mut shown).is_ok() && shown == token {
                let _ = s.set_read_timeout(None);
                merge.feed(s, Decompressor::default());
                joined += 1;
            }
        }
    });
    Ok(Invitation { name, token })
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// `tandem-agent --join`: greets first, so the client knows the relay (not a shell) reads
/// what it sends next; then reads the socket's name (a line) and relays the rest of stdin
/// into the agent listening there.
pub fn join() -> Result<(), String> {
    use std::io::BufRead;

    let mut out = std::io::stdout().lock();
    send_hello(&mut out).map_err(|e| format!("cannot greet the client: {e}"))?;
    out.flush().map_err(|e| e.to_string())?;
    super::widen_input_pipe();
    let mut input = std::io::stdin().lock();
    let mut line = Vec::new();
    input
        .by_ref()
        .take(NAME_MAX as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the stream's name: {e}"))?;
    let name = line
        .strip_suffix(b"\n")
        .ok_or("the client named no stream (input ended)")?;
    let shown = String::from_utf8_lossy(name).into_owned();
    let mut sock = crate::disk::sys::connect_local(name)
        .map_err(|e| format!("cannot reach the agent's stream socket '{shown}': {e}"))?;
    // The rest of what was read ahead (the token, perhaps frames) goes first.
    std::io::copy(&mut input, &mut sock).map_err(|e| format!("relay to the agent failed: {e}"))?;
    let _ = sock.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Longest socket name line a relay reads.
const NAME_MAX: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::protocol::frame::{write_seq_frame, Kind};

    fn stream(frames: &[(u64, u8)]) -> std::io::Cursor<Vec<u8>> {
        let mut buf = Vec::new();
        for &(seq, byte) in frames {
            write_seq_frame(&mut buf, seq, Kind::Message, &[byte]).unwrap();
        }
        std::io::Cursor::new(buf)
    }

    #[test]
    fn frames_from_several_streams_come_out_in_sequence() {
        let merge = Arc::new(Merge::default());
        merge.feed(stream(&[(0, 0), (3, 3), (4, 4)]), Decompressor::default());
        merge.feed(stream(&[(1, 1), (2, 2), (6, 6)]), Decompressor::default());
        merge.feed(stream(&[(5, 5)]), Decompressor::default());
        let mut got = Vec::new();
        while let Some((_, payload)) = merge.pop().unwrap() {
            got.push(payload[0]);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_duplicate_or_broken_stream_fails_the_merge() {
        let merge = Arc::new(Merge::default());
        merge.feed(stream(&[(0, 0), (0, 1)]), Decompressor::default());
        // Frame 0 may or may not be handed out before the duplicate is seen.
        assert!(merge.pop().is_err() || merge.pop().is_err());
        let merge = Arc::new(Merge::default());
        let mut cut = stream(&[(0, 0)]).into_inner();
        cut.truncate(cut.len() - 1);
        merge.feed(std::io::Cursor::new(cut), Decompressor::default());
        assert!(merge.pop().is_err());
    }
}
