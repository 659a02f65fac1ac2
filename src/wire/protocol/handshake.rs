//! The opening of the stream: magic bytes and the protocol version, each way.
//!
//! The agent speaks first. Anything before its magic (a login banner, an `echo` in a shell
//! startup file) is reported to the user instead of being parsed as protocol.

use std::io::{self, Read, Write};

/// Starts with NUL so no printable banner can look like it.
pub const MAGIC: &[u8; 8] = b"\0TANDEM\x01";
/// Bumped on any incompatible change to the messages.
pub const PROTOCOL_VERSION: u32 = 7;
/// How much unexpected output is read before giving up on finding the magic.
const MAX_NOISE: usize = 4096;

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Something other than the agent wrote to the stream first.
    #[error("the remote side printed text before the tandem agent started: {0:?}; remove output from the remote shell's startup files (e.g. .bashrc) for non-interactive sessions")]
    Noise(String),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: this side speaks version {ours}, the other side version {theirs}; install the same tandem version on both sides")]
    Version {
        /// Our version.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The stream ended before a greeting arrived.
    #[error("the other side closed the connection before greeting{0}")]
    Closed(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Sends our greeting.
pub fn send_hello(w: &mut impl Write) -> io::Result<()> {
    w.write_all(MAGIC)?;
    w.write_all(&PROTOCOL_VERSION.to_be_bytes())?;
    w.flush()
}

/// Reads the peer's greeting and checks its version.
pub fn read_hello(r: &mut impl Read) -> Result<(), HandshakeError> {
    let mut seen: Vec<u8> = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte until the magic shows up: the greeting is tiny and this keeps any
    // protocol bytes after it in the stream.
    loop {
        if seen.ends_with(MAGIC) {
            break;
        }
        match r.read(&mut byte) {
            Ok(0) => {
                let shown = String::from_utf8_lossy(&seen).trim().to_string();
                let tail = if shown.is_empty() {
                    String::new()
                } else {
                    format!(" (it printed {shown:?})")
                };
                return Err(HandshakeError::Closed(tail));
            }
            Ok(_) => seen.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        if seen.len() > MAX_NOISE {
            return Err(HandshakeError::Noise(
                String::from_utf8_lossy(&seen[..200]).into_owned(),
            ));
        }
    }
    if seen.len() > MAGIC.len() {
        let noise = &seen[..seen.len() - MAGIC.len()];
        return Err(HandshakeError::Noise(
            String::from_utf8_lossy(noise).trim().to_string(),
        ));
    }
    let mut v = [0u8; 4];
    r.read_exact(&mut v)
        .map_err(|_| HandshakeError::Closed(" (greeting cut short)".into()))?;
    let theirs = u32::from_be_bytes(v);
    if theirs != PROTOCOL_VERSION {
        return Err(HandshakeError::Version {
            ours: PROTOCOL_VERSION,
            theirs,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(prefix: &[u8], version: u32) -> Vec<u8> {
        let mut v = prefix.to_vec();
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&version.to_be_bytes());
        v
    }

    #[test]
    fn greeting_banner_and_version() {
        assert!(read_hello(&mut &hello(b"", PROTOCOL_VERSION)[..]).is_ok());
        let e = read_hello(&mut &hello(b"Welcome to host!\n", PROTOCOL_VERSION)[..]).unwrap_err();
        assert!(e.to_string().contains("Welcome to host!"), "{e}");
        let e = read_hello(&mut &hello(b"", 99)[..]).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("version {PROTOCOL_VERSION}"))
                && e.to_string().contains("version 99"),
            "{e}"
        );
        let e = read_hello(&mut &b"bash: tandem-agent: command not found\n"[..]).unwrap_err();
        assert!(e.to_string().contains("command not found"), "{e}");
        assert!(read_hello(&mut &vec![b'x'; 10_000][..]).is_err());
    }
}
