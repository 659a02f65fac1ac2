//! Hostile peers: garbage, truncated and oversized frames, escaping paths and lying sizes,
//! sent to the real agent binary and to the client. Each must give a clear error, never a
//! panic, and write nothing outside (or, for rejected data, inside) the root.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use tandem::core::tree::{Digest, Entry, EntryKind, Meta, Stamp};
use tandem::disk::compress::Compression;
use tandem::disk::delta::DeltaOp;
use tandem::endpoint::{Chunk, Endpoint, RemoteEndpoint};
use tandem::error::Error;
use tandem::wire::protocol::frame::{read_frame, write_frame, Kind};
use tandem::wire::protocol::handshake::{MAGIC, PROTOCOL_VERSION};
use tandem::wire::protocol::{decode, encode, Request, Response};

use crate::util::*;

fn hello() -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    v
}

fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_frame(&mut v, kind, payload).unwrap();
    v
}

fn message(req: &Request) -> Vec<u8> {
    let (kind, payload) = encode(req, 0).unwrap();
    frame(kind, &payload)
}

/// Replaces the first occurrence of `from` in an encoded message (to smuggle in bytes
/// that no `RelPath` could hold).
fn patched(req: &Request, from: &[u8], to: &[u8]) -> Vec<u8> {
    let (_, mut payload) = encode(req, 0).unwrap();
    let at = payload
        .windows(from.len())
        .position(|w| w == from)
        .expect("marker in message");
    payload.splice(at..at + from.len(), to.iter().copied());
    frame(Kind::Message, &payload)
}

struct AgentRun {
    code: i32,
    frames: Vec<(Kind, Vec<u8>)>,
    stderr: String,
}

/// Feeds `input` to a real agent serving `root`, then closes its input.
fn feed_agent(root: &std::path::Path, input: &[u8]) -> AgentRun {
    let mut child = Command::new(agent_path())
        .args(["--root"])
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    writer.join().unwrap();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    assert!(out.starts_with(&hello()), "agent did not greet: {out:?}");
    let mut rest = &out[hello().len()..];
    // Compressed frames are decoded in order, in the stream's one context.
    let mut context = tandem::disk::compress::Decompressor::default();
    let mut frames = Vec::new();
    while let Ok(Some(f)) = read_frame(&mut rest) {
        frames.push(tandem::wire::protocol::inflate(f, &mut context).unwrap());
    }
    AgentRun {
        code,
        frames,
        stderr: err,
    }
}

fn fatal(run: &AgentRun) -> String {
    assert_ne!(run.code, 0, "agent accepted it");
    assert_ne!(run.code, 101, "agent panicked: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let (kind, payload) = run.frames.last().expect("a fatal frame");
    assert_eq!(*kind, Kind::Fatal, "last frame is not fatal");
    String::from_utf8_lossy(&payload[1..]).into_owned()
}

fn file_entry(size: u64) -> Entry {
    Entry::of(
        Meta {
            kind: EntryKind::File,
            size,
            mtime_ns: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            digest: None,
            extra: None,
        },
        Stamp::default(),
    )
}

fn rel(s: &str) -> tandem::core::path::RelPath {
    tandem::core::path::RelPath::new(s.as_bytes().to_vec()).unwrap()
}

#[test]
fn agent_rejects_garbage_and_bad_frames_without_panicking() {
    let f = fixture();
    // Not a greeting at all.
    let r = feed_agent(&f.b, b"GET / HTTP/1.1\r\n\r\n");
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("printed text") || r.stderr.contains("closed"),
        "{}",
        r.stderr
    );
    // A length far beyond the limit.
    let mut input = hello();
    input.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0]);
    assert!(fatal(&feed_agent(&f.b, &input)).contains("exceeds"));
    // A frame cut short.
    let mut input = hello();
    input.extend_from_slice(&frame(Kind::Message, &[0x91; 100])[..20]);
    assert!(fatal(&feed_agent(&f.b, &input)).contains("middle of a frame"));
    // A well-framed message that is not MessagePack of any request.
    let mut input = hello();
    input.extend_from_slice(&frame(Kind::Message, b"\xc1\xc1 not msgpack"));
    assert!(fatal(&feed_agent(&f.b, &input)).contains("rejected"));
    // A zip bomb: a compressed frame that inflates past the limit.
    let bomb = zstd::bulk::compress(&vec![0u8; 40 << 20], 1).unwrap();
    let mut input = hello();
    input.extend_from_slice(&frame(Kind::Compressed, &bomb));
    assert!(fatal(&feed_agent(&f.b, &input)).contains("exceeds the"));
    assert!(names(&f.b).is_empty());
}

#[test]
fn agent_rejects_paths_that_escape_or_are_malformed() {
    let f = fixture();
    let outside = f.tmp.path().join("escaped");
    let begin = |path: &str| Request::Receive {
        chunks: vec![Chunk::Begin {
            id: 1,
            path: rel(path),
            expect: None,
            meta: file_entry(3),
            delta: false,
        }],
    };
    for (marker, evil) in [
        (&b"zz/escaped"[..], &b"../escaped"[..]),
        (b"zz/escaped", b"/t/escaped"),
        (b"zz/escaped", b"zz\0escaped"),
        (b"zz/escaped", b"zz//scaped"),
    ] {
        let mut input = hello();
        input.extend_from_slice(&patched(&begin("zz/escaped"), marker, evil));
        let msg = fatal(&feed_agent(&f.b, &input));
        assert!(msg.contains("path"), "{msg}");
    }
    // A symlink target with a NUL, and an impossible mode.
    let mut e = file_entry(0);
    e.kind = EntryKind::Symlink;
    e.set_target(b"ab".to_vec());
    let req = Request::Apply {
        changes: vec![tandem::endpoint::Change::MakeNode {
            path: rel("l"),
            expect: None,
            source: e,
        }],
    };
    let mut input = hello();
    input.extend_from_slice(&patched(&req, b"ab", b"a\0"));
    assert!(fatal(&feed_agent(&f.b, &input)).contains("symlink target"));
    assert!(!outside.exists());
    assert!(names(&f.b).is_empty(), "{:?}", names(&f.b));
}

#[test]
fn agent_refuses_a_client_that_lies_about_sizes_and_hashes() {
    let f = fixture();
    write(f.b.join("old"), "0123456789");
    let data = |id, b: &[u8]| Chunk::Data {
        id,
        ops: vec![DeltaOp::Literal(b.to_vec())],
    };
    let end = |id, b: &[u8]| Chunk::End {
        id,
        digest: Digest::of(b),
    };
    let begin = |id, path: &str, size| Chunk::Begin {
        id,
        path: rel(path),
        expect: None,
        meta: file_entry(size),
        delta: false,
    };
    let old = std::fs::metadata(f.b.join("old")).unwrap();
    let _ = old;
    let chunks = vec![
        // More data than announced.
        begin(1, "too-long", 3),
        data(1, b"abcdefgh"),
        end(1, b"abcdefgh"),
        // Less data than announced.
        begin(2, "too-short", 100),
        data(2, b"abc"),
        end(2, b"abc"),
        // A hash that does not match.
        begin(3, "bad-hash", 3),
        data(3, b"abc"),
        end(3, b"xyz"),
        // A copy from an old version that is not there.
        begin(4, "no-basis", 3),
        Chunk::Data {
            id: 4,
            ops: vec![DeltaOp::Copy { offset: 0, len: 3 }],
        },
        end(4, b"012"),
        // And one honest file, which must land.
        begin(5, "honest", 3),
        data(5, b"abc"),
        end(5, b"abc"),
    ];
    let mut input = hello();
    input.extend_from_slice(&message(&Request::Receive { chunks }));
    input.extend_from_slice(&message(&Request::Commit));
    let r = feed_agent(&f.b, &input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Outcomes come as files settle, in no set order: each names its transfer.
    let mut outcomes: Vec<(u64, bool)> = r
        .frames
        .iter()
        .filter_map(|(k, p)| match decode::<Response>(*k, p).ok()? {
            Response::Received(v) => Some(
                v.into_iter()
                    .map(|(id, r)| (id, r.is_ok()))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        vec![(1, false), (2, false), (3, false), (4, false), (5, true)]
    );
    assert_eq!(
        names(&f.b),
        ["honest", "old"],
        "rejected data was committed or left behind"
    );
    // A chunk for a transfer that never began ends the session.
    let mut input = hello();
    input.extend_from_slice(&message(&Request::Receive {
        chunks: vec![data(9, b"x")],
    }));
    assert!(fatal(&feed_agent(&f.b, &input)).contains("unknown transfer"));
    // A copy that reaches past the end of a real old version.
    let expect = tandem::endpoint::LocalEndpoint::open(&f.b, "t".into(), false)
        .unwrap()
        .scan(&Default::default(), Default::default())
        .unwrap()
        .tree
        .get(&rel("old"))
        .cloned();
    let chunks = vec![
        Chunk::Begin {
            id: 6,
            path: rel("old"),
            expect,
            meta: file_entry(20),
            delta: true,
        },
        Chunk::Data {
            id: 6,
            ops: vec![DeltaOp::Copy { offset: 5, len: 15 }],
        },
        end(6, b"56789"),
    ];
    let mut input = hello();
    input.extend_from_slice(&message(&Request::Receive { chunks }));
    let r = feed_agent(&f.b, &input);
    assert_eq!(r.code, 0);
    assert_eq!(read(f.b.join("old")), "0123456789");
}

/// Plays a hostile agent on one end of a socket pair; returns the client's endpoint.
fn hostile_agent(
    script: impl FnOnce(&mut std::os::unix::net::UnixStream) + Send + 'static,
) -> Result<RemoteEndpoint, Error> {
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    std::thread::spawn(move || script(&mut theirs));
    let w = ours.try_clone().unwrap();
    RemoteEndpoint::new(
        ours,
        w,
        "remote 'hostile'".into(),
        Compression::None.into(),
        None,
    )
}

fn skip_client_hello(s: &mut std::os::unix::net::UnixStream) {
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
}

#[test]
fn client_reports_a_banner_and_a_version_mismatch() {
    let e = hostile_agent(|s| {
        s.write_all(b"Last login: Mon Nov 23 from 10.0.0.1\n")
            .unwrap();
        s.write_all(&hello()).unwrap();
    })
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("Last login") && e.to_string().contains("startup files"),
        "{e}"
    );
    assert_eq!(e.exit_bit().0, 64);
    let e = hostile_agent(|s| {
        s.write_all(MAGIC).unwrap();
        s.write_all(&99u32.to_be_bytes()).unwrap();
    })
    .err()
    .unwrap();
    assert!(
        e.to_string().contains(&format!(
            "version {}",
            tandem::wire::protocol::handshake::PROTOCOL_VERSION
        )) && e.to_string().contains("version 99"),
        "{e}"
    );
}

#[test]
fn client_rejects_a_lying_agent() {
    // A scan answer with a path that escapes.
    let mut ep = hostile_agent(|s| {
        s.write_all(&hello()).unwrap();
        skip_client_hello(s);
        let _ = read_frame(s);
        let part = Response::ScanPart {
            entries: vec![(rel("zz/x"), file_entry(1))],
            problems: vec![],
        };
        let (_, mut p) = encode(&part, 0).unwrap();
        let at = p.windows(4).position(|w| w == b"zz/x").unwrap();
        p[at..at + 4].copy_from_slice(b"../x");
        write_frame(s, Kind::Message, &p).unwrap();
    })
    .unwrap();
    let e = ep
        .scan(&Default::default(), Default::default())
        .unwrap_err();
    assert!(e.to_string().contains("invalid message"), "{e}");
    // An oversized frame.
    let mut ep = hostile_agent(|s| {
        s.write_all(&hello()).unwrap();
        skip_client_hello(s);
        let _ = read_frame(s);
        s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0]).unwrap();
    })
    .unwrap();
    assert!(ep
        .scan(&Default::default(), Default::default())
        .unwrap_err()
        .to_string()
        .contains("exceeds"));
    // A connection that drops mid-frame.
    let mut ep = hostile_agent(|s| {
        s.write_all(&hello()).unwrap();
        skip_client_hello(s);
        let _ = read_frame(s);
        s.write_all(&[0, 0, 1, 0, 0, 1, 2]).unwrap();
    })
    .unwrap();
    assert!(ep
        .scan(&Default::default(), Default::default())
        .unwrap_err()
        .to_string()
        .contains("middle of a frame"));
    // File chunks nobody asked for.
    let mut ep = hostile_agent(|s| {
        s.write_all(&hello()).unwrap();
        skip_client_hello(s);
        let _ = read_frame(s);
        let chunks = Response::Chunks(vec![Chunk::Abort {
            id: 999,
            error: tandem::error::WireError::Other {
                message: "x".into(),
                bit: 128,
            },
        }]);
        let (k, p) = encode(&chunks, 0).unwrap();
        write_frame(s, k, &p).unwrap();
    })
    .unwrap();
    let req = tandem::endpoint::SendRequest {
        id: 1,
        path: rel("a"),
        expect: file_entry(1),
        target: rel("a"),
        target_expect: None,
        signature: None,
        refined: None,
    };
    let e = ep.send(&[req], &mut |_| Ok(())).unwrap_err();
    assert!(e.to_string().contains("not asked for"), "{e}");
}

#[test]
fn sender_lying_about_size_is_caught_by_the_local_receiver() {
    let f = fixture();
    let mut local = tandem::endpoint::LocalEndpoint::open(&f.a, "local".into(), false).unwrap();
    // The "remote" sender claims 3 bytes and sends 10.
    let chunks = [
        Chunk::Begin {
            id: 1,
            path: rel("x"),
            expect: None,
            meta: file_entry(3),
            delta: false,
        },
        Chunk::Data {
            id: 1,
            ops: vec![DeltaOp::Literal(b"0123456789".to_vec())],
        },
        Chunk::End {
            id: 1,
            digest: Digest::of(b"0123456789"),
        },
    ];
    for c in chunks {
        local.receive(c).unwrap();
    }
    let done = local.received(true).unwrap();
    assert!(
        done[0]
            .1
            .as_ref()
            .is_err_and(|e| e.to_string().contains("more than the announced")),
        "{done:?}"
    );
    assert!(names(&f.a).is_empty());
}

#[test]
fn huge_copy_lengths_do_not_overflow_the_receiver() {
    let f = fixture();
    write(f.a.join("old"), "0123456789");
    let mut local = tandem::endpoint::LocalEndpoint::open(&f.a, "local".into(), false).unwrap();
    let expect = local
        .scan(&Default::default(), Default::default())
        .unwrap()
        .tree
        .get(&rel("old"))
        .cloned();
    let chunks = [
        Chunk::Begin {
            id: 1,
            path: rel("old"),
            expect,
            meta: file_entry(10),
            delta: true,
        },
        Chunk::Data {
            id: 1,
            ops: vec![
                DeltaOp::Literal(b"ab".to_vec()),
                DeltaOp::Copy {
                    offset: 1,
                    len: u64::MAX,
                },
            ],
        },
        Chunk::End {
            id: 1,
            digest: Digest::of(b"x"),
        },
    ];
    for c in chunks {
        local.receive(c).unwrap();
    }
    let done = local.received(true).unwrap();
    assert!(done[0].1.is_err(), "{done:?}");
    assert_eq!(read(f.a.join("old")), "0123456789");
}
