//! Frames: `u32` big-endian length (kind byte + payload), a kind byte, the payload.
//! Lengths are checked before anything is allocated.

use std::io::{self, Read, Write};

/// Largest frame payload accepted, before and after decompression.
pub const MAX_FRAME: usize = 32 << 20;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A MessagePack message.
    Message = 0,
    /// A MessagePack message compressed in the stream's fine context.
    Compressed = 1,
    /// A log line from the agent (UTF-8).
    Log = 2,
    /// A fatal error from the agent (UTF-8); the agent exits after it.
    Fatal = 3,
    /// A MessagePack message compressed in the stream's bulk context.
    CompressedBulk = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Message,
            1 => Kind::Compressed,
            2 => Kind::Log,
            3 => Kind::Fatal,
            4 => Kind::CompressedBulk,
            _ => return None,
        })
    }
}

/// A frame as read: its kind and payload.
pub type Frame = (Kind, Vec<u8>);

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The length field is out of bounds.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(u64),
    /// The kind byte is unknown.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A zero-length frame (no kind byte).
    #[error("empty frame")]
    Empty,
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Writes one frame; returns the bytes written.
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<usize> {
    if payload.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let len = (payload.len() + 1) as u32;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&len.to_be_bytes());
    head[4] = kind as u8;
    w.write_all(&head)?;
    w.write_all(payload)?;
    Ok(payload.len() + 5)
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, FrameError> {
    let mut len = [0u8; 4];
    if !read_start(r, &mut len)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(len) as u64;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FRAME as u64 + 1 {
        return Err(FrameError::TooLarge(len));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).map_err(mid_frame)?;
    let kind = Kind::from_byte(kind[0]).ok_or(FrameError::UnknownKind(kind[0]))?;
    // Read into spare capacity: a zeroed buffer would be written twice (a memset of every
    // byte of file data the agent receives).
    let want = len - 1;
    let mut payload = Vec::with_capacity(want as usize);
    match r.take(want).read_to_end(&mut payload) {
        Ok(n) if n as u64 == want => Ok(Some((kind, payload))),
        Ok(_) => Err(FrameError::Truncated),
        Err(e) => Err(mid_frame(e)),
    }
}

/// A read that failed inside a frame: the stream's end is a truncated frame; any other
/// error is the transport's, kept (a lost SSH connection says so, and is exit 64).
fn mid_frame(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

/// Writes a frame preceded by its sequence number (once extra streams are on, every frame
/// from the client carries one); returns the bytes written.
pub fn write_seq_frame(
    w: &mut impl Write,
    seq: u64,
    kind: Kind,
    payload: &[u8],
) -> io::Result<usize> {
    w.write_all(&seq.to_be_bytes())?;
    Ok(8 + write_frame(w, kind, payload)?)
}

/// Reads a sequence number and its frame; `Ok(None)` on a clean end of stream.
pub fn read_seq_frame(r: &mut impl Read) -> Result<Option<(u64, Frame)>, FrameError> {
    let mut seq = [0u8; 8];
    if !read_start(r, &mut seq)? {
        return Ok(None);
    }
    match read_frame(r)? {
        Some(frame) => Ok(Some((u64::from_be_bytes(seq), frame))),
        None => Err(FrameError::Truncated),
    }
}

/// Fills `buf`, the first bytes of a frame; false on a clean end of stream before them.
fn read_start(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            write_frame(&mut out, Kind::Message, p).unwrap();
        }
        out
    }

    #[test]
    fn frames_read_back_whole_and_no_byte_of_the_next_is_taken() {
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let bytes = stream(&[b"", b"x", &big, b"last"]);
        let mut r = &bytes[..];
        for want in [&b""[..], b"x", &big, b"last"] {
            let (kind, payload) = read_frame(&mut r).unwrap().unwrap();
            assert_eq!(kind, Kind::Message);
            assert_eq!(payload, want);
            assert_eq!(payload.capacity(), want.len(), "sized once, exactly");
        }
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn a_frame_cut_anywhere_is_truncated_and_cut_before_it_is_the_end() {
        let bytes = stream(&[b"payload"]);
        assert!(read_frame(&mut &bytes[..0]).unwrap().is_none());
        for cut in 1..bytes.len() {
            let r = read_frame(&mut &bytes[..cut]);
            assert!(
                matches!(r, Err(FrameError::Truncated)),
                "cut at {cut}: {r:?}"
            );
        }
    }
}
