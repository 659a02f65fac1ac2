//! A TCP proxy on loopback that cuts the connection once a set number of bytes has passed:
//! the network failing at an exact point of a run, the same point every time.
//!
//! Bytes are counted in both directions together and across every connection the proxy
//! accepts, in the order the proxy forwards them: a run may open more than one connection,
//! and the budget then names a point of the whole run, not of one connection. Once the
//! budget is spent, every open connection is shut down both ways, and connections accepted
//! later are closed at once: the network stays down for the rest of the run, as it would
//! if a cable were pulled. Exactly `budget` bytes pass; the cut comes when one more byte
//! wants to.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running proxy; stopped, with every thread joined, when dropped.
pub struct CutProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// A budget of `NEVER` is never spent: the proxy measures a clean run.
pub const NEVER: u64 = u64::MAX;

struct Shared {
    budget: u64,
    state: Mutex<State>,
    // Signalled when a pump finishes writing what it reserved, so the cut can wait for
    // bytes already counted as passed to be on their way.
    written: Condvar,
    stop: AtomicBool,
}

#[derive(Default)]
struct State {
    passed: u64,
    cut: bool,
    connections: usize,
    // Pumps between reserving bytes and having written them.
    writing: usize,
    // Both sockets of every connection, to shut down at the cut or on drop.
    sockets: Vec<TcpStream>,
    pumps: Vec<JoinHandle<()>>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards to `target_port` on 127.0.0.1,
    /// cutting once `budget` bytes have passed.
    pub fn start(target_port: u16, budget: u64) -> CutProxy {
        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            budget,
            state: Mutex::default(),
            written: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || accept(listener, target, s));
        CutProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes forwarded so far, both directions, every connection.
    pub fn passed(&self) -> u64 {
        self.shared.state.lock().unwrap().passed
    }

    /// Whether the budget was spent and the connections cut.
    pub fn was_cut(&self) -> bool {
        self.shared.state.lock().unwrap().cut
    }

    /// Connections accepted and forwarded (not counting those refused after the cut).
    pub fn connections(&self) -> usize {
        self.shared.state.lock().unwrap().connections
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, blocked in accept(), to see the stop flag; once it is gone
        // no connection is added, and shutting down the ones there ends every pump.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        shut_all(&self.shared.state.lock().unwrap().sockets);
        let pumps = std::mem::take(&mut self.shared.state.lock().unwrap().pumps);
        for p in pumps {
            let _ = p.join();
        }
    }
}

fn accept(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else { continue };
        let mut st = shared.state.lock().unwrap();
        if st.cut {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(target) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        st.connections += 1;
        for (from, to) in [
            (client.try_clone().unwrap(), server.try_clone().unwrap()),
            (server.try_clone().unwrap(), client.try_clone().unwrap()),
        ] {
            let s = shared.clone();
            st.pumps
                .push(std::thread::spawn(move || pump(from, to, &s)));
        }
        st.sockets.push(client);
        st.sockets.push(server);
    }
}

/// Forwards one direction of one connection until either end closes or the cut.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                // Passes the end on, so the other side sees this one close.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let Some(allowed) = reserve(shared, n) else {
            return;
        };
        let sent = to.write_all(&buf[..allowed]);
        finish_writing(shared);
        if allowed < n {
            cut(shared);
            return;
        }
        if sent.is_err() {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Counts up to `n` more bytes as passed; how many may go, or None after the cut.
fn reserve(shared: &Shared, n: usize) -> Option<usize> {
    let mut st = shared.state.lock().unwrap();
    if st.cut {
        return None;
    }
    let allowed = (n as u64).min(shared.budget - st.passed) as usize;
    st.passed += allowed as u64;
    st.writing += 1;
    if allowed < n {
        // No one reserves after this: what passed is exactly the budget.
        st.cut = true;
    }
    Some(allowed)
}

fn finish_writing(shared: &Shared) {
    shared.state.lock().unwrap().writing -= 1;
    shared.written.notify_all();
}

/// Shuts every connection down, once the bytes counted before the cut are written (or
/// after a moment, if a peer has stopped reading them).
fn cut(shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut st = shared.state.lock().unwrap();
    while st.writing > 0 && Instant::now() < deadline {
        st = shared
            .written
            .wait_timeout(st, Duration::from_millis(50))
            .unwrap()
            .0;
    }
    shut_all(&st.sockets);
}

fn shut_all(sockets: &[TcpStream]) {
    for s in sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
}

#[test]
fn passes_exactly_the_budget_then_cuts_both_ways() {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = echo.accept().unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got.len()
    });
    let proxy = CutProxy::start(echo_port, 1000);
    let mut c = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    // More than the budget: the write may fail part-way once the proxy cuts.
    let _ = c.write_all(&vec![7u8; 5000]);
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert_eq!(server.join().unwrap(), 1000, "the server got more or less");
    assert!(proxy.was_cut());
    assert_eq!(proxy.passed(), 1000);
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn a_budget_never_spent_forwards_everything_and_counts_both_ways() {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = echo.accept().unwrap();
        let mut buf = vec![0u8; 3000];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf[..2000]).unwrap();
    });
    let proxy = CutProxy::start(echo_port, NEVER);
    let mut c = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    c.write_all(&[1u8; 3000]).unwrap();
    let mut back = vec![0u8; 2000];
    c.read_exact(&mut back).unwrap();
    server.join().unwrap();
    drop(c);
    assert!(!proxy.was_cut());
    assert_eq!(proxy.passed(), 5000);
}
