//! The TCP connection to an SSH server, acknowledging what it reads at once.
//!
//! sshd leaves Nagle's algorithm on for sessions without a terminal, so a small packet of
//! its waits until its previous one is acknowledged. A client that has nothing to send
//! back delays that acknowledgement by up to 40 ms, and every exchange that has sshd send
//! two small packets in a row (after login: a host-keys notice, then the channel's
//! confirmation) stalls that long. Linux drops out of quick-ack mode on its own, so it is
//! asked for again after every read; a setsockopt per read is noise beside the read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that sends its ACKs without delay and its small writes without waiting.
pub struct QuickAck(TcpStream);

impl QuickAck {
    /// Sets the stream up: no Nagle on our side (each request waits for its answer, and
    /// must not wait for an ACK first), quick ACKs for the other side's sake.
    pub fn new(stream: TcpStream) -> QuickAck {
        let _ = stream.set_nodelay(true);
        crate::disk::sys::quick_ack(&stream);
        QuickAck(stream)
    }

    /// The stream itself.
    #[cfg(test)]
    pub fn get_ref(&self) -> &TcpStream {
        &self.0
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) {
            crate::disk::sys::quick_ack(&self.0);
        }
        read
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// After a few requests and answers Linux would delay its ACKs (it takes the exchange
    /// for an interactive one); reading through `QuickAck` keeps them immediate.
    #[test]
    fn acknowledgements_stay_immediate_through_an_exchange() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut b = [0u8; 4];
            while s.read_exact(&mut b).is_ok() {
                s.write_all(b"answer").unwrap();
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut s = QuickAck::new(TcpStream::connect(addr).await.unwrap());
            assert!(s.get_ref().nodelay().unwrap());
            for _ in 0..5 {
                s.write_all(b"ask!").await.unwrap();
                let mut answer = [0u8; 6];
                s.read_exact(&mut answer).await.unwrap();
                assert_eq!(&answer, b"answer");
            }
            // Off where the OS has no quick ACKs (macOS).
            assert_eq!(
                crate::disk::sys::quick_ack_is_on(s.get_ref()),
                crate::disk::sys::QUICK_ACK
            );
        });
        server.join().unwrap();
    }
}
