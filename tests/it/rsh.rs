//! `-e/--rsh COMMAND`: the system's OpenSSH client as the transport, against the real test
//! sshd — push, pull and bidi, extra transfer streams as extra ssh processes, the agent
//! uploaded through it, and ssh's own failures reported.

use crate::sshd::{ssh_fixture, SshFixture};
use crate::util::*;

#[track_caller]
fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{r:?}");
}

/// `tandem -d a -r box:b -e 'ssh -F CONFIG' -K DIR EXTRA...`.
fn run(s: &SshFixture, dir: &str, extra: &[&str], with_agent_path: bool) -> Run {
    let config = s.system_ssh_config();
    let mut c = s.alias_command("box", dir);
    c.arg("-e").arg(format!("ssh -F {}", config.display()));
    if with_agent_path {
        c.arg("--agent-path").arg(agent_path());
    }
    c.args(extra);
    output(c.output().unwrap())
}

fn tree(root: &std::path::Path) {
    write(root.join("top.txt"), "top\n");
    write(root.join("dir/sub/deep.txt"), &"deep ".repeat(4000));
    std::os::unix::fs::symlink("dir/sub/deep.txt", root.join("link")).unwrap();
    std::fs::write(root.join("big.bin"), pseudo_random(2 << 20, 11)).unwrap();
}

#[test]
fn push_pull_and_bidi_through_the_system_ssh() {
    let s = ssh_fixture();
    tree(&s.f.a);
    ok(&run(&s, "push", &[], true));
    assert_same_tree(&s.f.a, &s.f.b);
    // Pull: a change made on the far side comes back.
    write(s.f.b.join("dir/from-remote.txt"), "remote\n");
    std::fs::write(s.f.b.join("big.bin"), pseudo_random(2 << 20, 12)).unwrap();
    ok(&run(&s, "pull", &[], true));
    assert_same_tree(&s.f.a, &s.f.b);
    // Bidi: changes on both sides meet.
    write(s.f.a.join("local-new.txt"), "local\n");
    write(s.f.b.join("remote-new.txt"), "remote\n");
    std::fs::remove_file(s.f.b.join("top.txt")).unwrap();
    ok(&run(&s, "bidi", &[], true));
    assert_same_tree(&s.f.a, &s.f.b);
    assert!(!s.f.a.join("top.txt").exists() && s.f.a.join("remote-new.txt").exists());
    // A run with nothing to do moves nothing.
    let r = run(&s, "bidi", &["--format", "json"], true);
    ok(&r);
    let summary = json_events(&r.stdout).pop().unwrap();
    assert_eq!(summary["files_transferred"], 0, "{summary}");
    assert_same_tree(&s.f.a, &s.f.b);
}

#[test]
fn extra_transfer_streams_are_extra_ssh_processes_and_the_agent_is_uploaded_through_it() {
    let s = ssh_fixture();
    std::fs::write(s.f.a.join("large.bin"), pseudo_random(16 << 20, 5)).unwrap();
    write(s.f.a.join("small.txt"), "small\n");
    // No --agent-path: the host has none, so it is uploaded over the ssh process.
    let r = run(
        &s,
        "push",
        &["--transfer-threads", "3", "--format", "json"],
        false,
    );
    ok(&r);
    assert_same_tree(&s.f.a, &s.f.b);
    let cached = s.sshd.remote_home().join(format!(
        ".cache/tandem/{}/tandem-agent",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(cached.is_file(), "no agent installed: {r:?}");
    let summary = json_events(&r.stdout).pop().unwrap();
    let streams = summary["bytes_sent_per_stream"].as_array().unwrap();
    assert_eq!(streams.len(), 3, "{summary}");
    for st in streams {
        assert!(st.as_u64().unwrap() > 1 << 20, "{summary}");
    }
}

#[test]
fn what_ssh_refuses_is_reported_with_its_words() {
    let s = ssh_fixture();
    write(s.f.a.join("f"), "never sent\n");
    let before = snapshot(&s.f.b);
    // ssh's own host key policy: an unknown key is refused (BatchMode, StrictHostKeyChecking).
    std::fs::write(s.home.join(".ssh/known_hosts"), "").unwrap();
    let r = run(&s, "push", &[], true);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("Host key verification failed"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
    // A command that is not there.
    let mut c = s.client();
    c.arg("-d")
        .arg(&s.f.a)
        .arg("-r")
        .arg(format!("box:{}", s.f.b.display()))
        .args(["--rsh", "/nonexistent/ssh", "-K", "push"]);
    let r = output(c.output().unwrap());
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("/nonexistent/ssh"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
}
