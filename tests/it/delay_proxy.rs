//! A TCP proxy on loopback that holds every byte back for a set time in each direction: a
//! long link (round trip twice the delay) without a kernel that can emulate one. Only the
//! delay is added; bytes flow as fast as they come, each chunk leaving `delay` after it
//! arrived.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running proxy; its threads end when the connections they serve close.
pub struct DelayProxy {
    port: u16,
}

impl DelayProxy {
    /// Listens on a free loopback port, forwarding to `target_port` on 127.0.0.1 with
    /// `delay` added each way.
    pub fn start(target_port: u16, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || delayed(from, to, delay));
                }
            }
        });
        DelayProxy { port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// One direction: a reader stamps each chunk as it comes, a writer sends it when due.
fn delayed(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}
