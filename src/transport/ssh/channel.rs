//! One SSH channel as a blocking byte stream: the rest of the program reads and writes
//! it like a pipe to a child process.
//!
//! Two tasks per channel. The reading task always drains the channel (one channel left
//! unread stalls the whole connection), keeping stdout for the reader, stderr and the exit
//! status for error messages. The writing task sends what the writer hands it, waiting for
//! the server's window, and sends EOF when the writer is dropped.

use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::mpsc;

/// Stderr kept for messages (the tail).
const STDERR_KEPT: usize = 8 << 10;
/// Stdout packets buffered for the reader before the channel waits.
const READ_AHEAD: usize = 256;
/// Writes buffered for the channel before the writer waits.
const WRITE_AHEAD: usize = 4;

#[derive(Default)]
struct Status {
    stderr: Vec<u8>,
    exit_status: Option<u32>,
    exit_signal: Option<String>,
    /// The server closed the channel (the command ended).
    closed: bool,
    /// The connection ended under the channel.
    lost: bool,
}

/// What is known about the command at the other end of a channel.
#[derive(Default)]
pub struct ChannelState {
    status: Mutex<Status>,
    ended: Condvar,
}

impl ChannelState {
    fn with<T>(&self, f: impl FnOnce(&mut Status) -> T) -> T {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Keeps what the command wrote to stderr (its tail).
    fn add_stderr(&self, data: &[u8]) {
        self.with(|s| {
            s.stderr.extend_from_slice(data);
            let extra = s.stderr.len().saturating_sub(STDERR_KEPT);
            s.stderr.drain(..extra);
        })
    }

    /// The last lines the command wrote to stderr.
    pub fn stderr(&self) -> String {
        self.with(|s| String::from_utf8_lossy(&s.stderr).trim().to_string())
    }

    /// The command's exit status, once known.
    pub fn exit_status(&self) -> Option<u32> {
        self.with(|s| s.exit_status)
    }

    /// Waits until the channel is over (closed or lost), at most `limit`.
    pub fn wait_ended(&self, limit: Duration) -> bool {
        let s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let (s, _) = self
            .ended
            .wait_timeout_while(s, limit, |s| !s.closed && !s.lost)
            .unwrap_or_else(|p| p.into_inner());
        s.closed || s.lost
    }

    /// Why the command's output ended, if it did not end cleanly.
    fn abnormal_end(&self, what: &str) -> Option<io::Error> {
        self.with(|s| {
            let tail = if s.stderr.is_empty() {
                String::new()
            } else {
                format!("; it said: {}", String::from_utf8_lossy(&s.stderr).trim())
            };
            if s.lost && s.exit_status == Some(255) {
                // The system's ssh (--rsh) exits 255 when it cannot connect or lost the link.
                return Some(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("ssh failed (exit status 255) for {what}{tail}"),
                ));
            }
            if s.lost {
                return Some(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the SSH connection was lost while {what} was running{tail}"),
                ));
            }
            s.exit_signal
                .as_ref()
                .map(|sig| io::Error::other(format!("{what} was killed by signal {sig}{tail}")))
        })
    }
}

/// The reading end of a channel: the command's stdout.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
    state: Arc<ChannelState>,
    what: String,
}

impl ChannelReader {
    /// Puts bytes back in front of the stream (read too far while looking for a greeting).
    pub fn unread(&mut self, bytes: &[u8]) {
        let mut v = bytes.to_vec();
        v.extend_from_slice(&self.buf);
        self.buf = Bytes::from(v);
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.buf = b,
                None => {
                    return match self.state.abnormal_end(&self.what) {
                        Some(e) => Err(e),
                        None => Ok(0),
                    }
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

/// The writing end of a channel: the command's stdin. Dropping it sends EOF.
pub struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    state: Arc<ChannelState>,
    what: String,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx.blocking_send(buf.to_vec()).map_err(|_| {
            self.state.abnormal_end(&self.what).unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("{} closed its input", self.what),
                )
            })
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A channel running a command, as blocking reader and writer.
pub struct ChannelIo {
    /// The command's stdout.
    pub reader: ChannelReader,
    /// The command's stdin.
    pub writer: ChannelWriter,
    /// Its stderr and exit status.
    pub state: Arc<ChannelState>,
}

impl ChannelIo {
    /// The reader and writer over the queues the moving tasks (or threads) serve.
    fn assemble(
        rx: mpsc::Receiver<Bytes>,
        tx: mpsc::Sender<Vec<u8>>,
        state: Arc<ChannelState>,
        what: &str,
    ) -> ChannelIo {
        ChannelIo {
            reader: ChannelReader {
                rx,
                buf: Bytes::new(),
                state: state.clone(),
                what: what.to_string(),
            },
            writer: ChannelWriter {
                tx,
                state: state.clone(),
                what: what.to_string(),
            },
            state,
        }
    }

    /// Starts the tasks that move a channel's data; `what` names the command in messages.
    pub fn spawn(rt: &tokio::runtime::Handle, channel: Channel<Msg>, what: &str) -> ChannelIo {
        let (rd, wr) = channel.split();
        let state = Arc::new(ChannelState::default());
        let (to_reader, rx) = mpsc::channel(READ_AHEAD);
        let (over, ended) = tokio::sync::watch::channel(false);
        rt.spawn(drain(rd, to_reader, state.clone(), over));
        let (tx, from_writer) = mpsc::channel(WRITE_AHEAD);
        rt.spawn(feed(wr, from_writer, ended));
        ChannelIo::assemble(rx, tx, state, what)
    }
}

impl ChannelIo {
    /// A local process (the system's `ssh`, for `--rsh`) as a channel: its stdout for the
    /// reader, its stdin for the writer, its stderr and exit status kept as a channel's
    /// are. Threads move the data, so no runtime is needed.
    pub fn process(mut child: std::process::Child, what: &str) -> ChannelIo {
        let state = Arc::new(ChannelState::default());
        let (to_reader, rx) = mpsc::channel(READ_AHEAD);
        let (tx, mut from_writer) = mpsc::channel::<Vec<u8>>(WRITE_AHEAD);
        if let Some(mut out) = child.stdout.take() {
            let state = state.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n @ 1..) = out.read(&mut buf) {
                    // A reader that went away must not block the process: keep draining.
                    let _ = to_reader.blocking_send(Bytes::copy_from_slice(&buf[..n]));
                }
                // The reader hears of the end once the exit status says how it ended.
                state.wait_ended(Duration::from_secs(5));
                drop(to_reader);
            });
        }
        let (stderr_done, stderr_read) = std::sync::mpsc::channel::<()>();
        if let Some(mut err) = child.stderr.take() {
            let state = state.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = err.read(&mut buf) {
                    state.add_stderr(&buf[..n]);
                }
                drop(stderr_done);
            });
        } else {
            drop(stderr_done);
        }
        if let Some(mut input) = child.stdin.take() {
            std::thread::spawn(move || {
                while let Some(v) = from_writer.blocking_recv() {
                    if input.write_all(&v).is_err() {
                        break;
                    }
                }
                // Dropping stdin is the EOF.
            });
        }
        let waited = state.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            // What ssh said on its way out belongs in the message about how it ended. A
            // process it left behind (a ControlMaster) may hold stderr open: wait a little.
            let _ = stderr_read.recv_timeout(Duration::from_secs(1));
            waited.with(|s| match status {
                Ok(st) => {
                    use std::os::unix::process::ExitStatusExt;
                    s.exit_status = st.code().map(|c| c as u32);
                    s.exit_signal = st.signal().map(|sig| format!("{sig}"));
                    // ssh exits 255 when the connection failed or was lost.
                    s.lost = st.code() == Some(255);
                    s.closed = !s.lost;
                }
                Err(_) => s.lost = true,
            });
            waited.ended.notify_all();
        });
        ChannelIo::assemble(rx, tx, state, what)
    }
}

async fn drain(
    mut rd: ChannelReadHalf,
    to_reader: mpsc::Sender<Bytes>,
    state: Arc<ChannelState>,
    over: tokio::sync::watch::Sender<bool>,
) {
    let mut closed = false;
    while let Some(msg) = rd.wait().await {
        match msg {
            // A reader that went away must not stall the connection: keep draining.
            ChannelMsg::Data { data } => {
                let _ = to_reader.send(data).await;
            }
            ChannelMsg::ExtendedData { data, .. } => state.add_stderr(&data),
            ChannelMsg::ExitStatus { exit_status } => {
                state.with(|s| s.exit_status = Some(exit_status))
            }
            ChannelMsg::ExitSignal {
                signal_name,
                error_message,
                ..
            } => state.with(|s| {
                s.exit_signal = Some(
                    format!("{signal_name:?} {error_message}")
                        .trim()
                        .to_string(),
                )
            }),
            ChannelMsg::Close => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    state.with(|s| {
        s.closed = closed;
        s.lost = !closed;
    });
    state.ended.notify_all();
    let _ = over.send(true);
}

/// Sends what the writer hands over. Stops when the channel is over: a dead connection
/// never opens its window again, and the writer must hear of it rather than wait.
async fn feed(
    wr: ChannelWriteHalf<Msg>,
    mut from_writer: mpsc::Receiver<Vec<u8>>,
    mut ended: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            v = from_writer.recv() => v,
            _ = ended.wait_for(|over| *over) => return,
        };
        let Some(v) = next else { break };
        tokio::select! {
            r = wr.data_bytes(Bytes::from(v)) => if r.is_err() { return },
            _ = ended.wait_for(|over| *over) => return,
        }
    }
    let _ = wr.eof().await;
}
