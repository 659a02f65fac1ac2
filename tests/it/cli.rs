//! Argument handling: help, version, bad and contradictory options.

use crate::util::*;

#[test]
fn help_and_version_exit_0() {
    let f = fixture();
    let r = f.run(&["--help"]);
    assert_eq!(r.code, 0);
    for flag in [
        "--dir",
        "--remote-dir",
        "--direction",
        "--favor",
        "--keep-both",
        "--dry-run",
        "--format",
        "--exclude",
        "--halt-on-error",
    ] {
        assert!(r.stdout.contains(flag), "help lacks {flag}");
    }
    let r = f.run(&["--version"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("tandem "), "{r:?}");
}

#[test]
fn bad_arguments_are_exit_32_with_a_message() {
    let f = fixture();
    let (a, b) = (f.a.to_str().unwrap(), f.b.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--no-such-option"], "--no-such-option"),
        (vec!["-d", a, "-r", b], "-K"),
        (vec!["-d", a, "-r", b, "-K", "sideways"], "sideways"),
        (vec!["-r", b, "-K", "push"], "-d"),
        (vec!["-d", a, "-K", "push"], "-r"),
        (
            vec!["-d", a, "-r", b, "-K", "bidi", "-q", "-v"],
            "--verbose",
        ),
        (
            vec!["-d", a, "-r", b, "-K", "bidi", "-f", "sometimes"],
            "sometimes",
        ),
        (
            vec!["-d", a, "-r", b, "-K", "bidi", "-N", "../escape"],
            "session name",
        ),
        (
            vec!["-d", a, "-r", b, "-K", "bidi", "--max-delete", "lots"],
            "--max-delete",
        ),
        (
            vec![
                "-d",
                a,
                "-r",
                b,
                "-K",
                "bidi",
                "--exclude-from",
                "/nonexistent/list",
            ],
            "/nonexistent/list",
        ),
        (vec!["-d", a, "-r", "[::1", "-K", "bidi"], "IPv6"),
        (
            vec!["-d", a, "-r", b, "-K", "bidi", "--format", "xml"],
            "xml",
        ),
    ];
    for (args, needle) in cases {
        let r = f.run(&args);
        assert_eq!(r.code, 32, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains(needle),
            "{args:?} should mention {needle}: {r:?}"
        );
    }
}

#[test]
fn policy_options_outside_bidi_are_noted_not_silently_dropped() {
    let f = fixture();
    let r = f.sync("push", &["-f", "new"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("only apply to -K bidi"), "{r:?}");
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn sessions_status_and_forget() {
    let f = fixture();
    write(f.a.join("x"), "1");
    assert_eq!(f.sync("push", &["-N", "backup"]).code, 0);
    assert_same_tree(&f.a, &f.b);
    let r = f.run(&["sessions"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("backup") && r.stdout.contains(f.a.to_str().unwrap()),
        "{r:?}"
    );
    let r = f.run(&["status", "-N", "backup"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("entries:   1"), "{r:?}");
    assert_eq!(f.run(&["forget", "-N", "backup"]).code, 0);
    assert_eq!(f.run(&["status", "-N", "backup"]).code, 16);
    assert_eq!(f.run(&["forget", "-N", "backup"]).code, 16);
}

#[test]
fn default_session_name_differs_per_root_pair() {
    let f = fixture();
    write(f.a.join("x"), "1");
    assert_eq!(f.sync("push", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    let other = f.tmp.path().join("c");
    std::fs::create_dir(&other).unwrap();
    let mut c = f.sync_command();
    c.arg("-d")
        .arg(&f.a)
        .arg("-r")
        .arg(&other)
        .args(["-K", "push"]);
    assert_eq!(output(c.output().unwrap()).code, 0);
    assert_same_tree(&f.a, &other);
    assert_eq!(f.run(&["sessions"]).lines().len(), 2);
}

#[test]
fn the_agent_under_test_is_current() {
    let agent = agent_path();
    assert!(
        agent.is_file(),
        "{} is missing: run scripts/test.sh (it builds the agent first)",
        agent.display()
    );
    // What the agent is, not when it was built: cargo relinks the client for the tests
    // with other features than a plain build, so file times say nothing about staleness.
    let ask = |arg: &str| {
        let out = std::process::Command::new(&agent)
            .arg(arg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(ask("--version").starts_with("tandem-agent "));
    assert_eq!(
        ask("--source-id"),
        tandem::SOURCE_ID,
        "tandem-agent was built from other sources than these tests: run scripts/test.sh"
    );
}

#[test]
fn no_bars_or_escape_codes_when_not_on_a_terminal() {
    let f = fixture();
    std::fs::write(f.a.join("big"), vec![7u8; 3 << 20]).unwrap();
    write(f.a.join("small"), "s");
    let r = f.sync("push", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !r.stdout.contains('\x1b') && !r.stderr.contains('\x1b'),
        "escape codes: {r:?}"
    );
    assert!(
        !r.stderr.contains("total"),
        "a progress bar was drawn: {r:?}"
    );
    assert!(
        r.stdout.contains("saved by deltas") || r.stdout.contains("compression"),
        "{r:?}"
    );
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn a_lone_client_serves_the_agent_itself() {
    let f = fixture();
    let bin = f.tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_tandem"), bin.join("tandem")).unwrap();
    write(f.a.join("x"), "over the pipe");
    let mut c = std::process::Command::new(bin.join("tandem"));
    c.env("FILESYNC", &f.state)
        .env("PATH", "")
        .arg("-d")
        .arg(&f.a)
        .arg("-r")
        .arg(&f.b)
        .args(["-K", "push", "--format", "json"]);
    let r = output(spawn_fresh_copy(&mut c));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(read(f.b.join("x")), "over the pipe");
    let summary = json_events(&r.stdout).pop().unwrap();
    assert!(
        summary["bytes_sent"].as_u64().unwrap() > 0,
        "not through the protocol: {summary}"
    );
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn a_proxy_password_is_never_printed_and_other_schemes_are_refused() {
    let f = fixture();
    let logs = f.tmp.path().join("logs");
    for proxy in [
        "dnats://gazelle:s3cretpw@127.0.0.1",
        "ssh://gazelle:s3cretpw@127.0.0.1:1",
    ] {
        for format in ["human", "json"] {
            let mut c = f.command();
            c.arg("-d")
                .arg(&f.a)
                .args(["-r", "127.0.0.1:/srv", "-K", "push"]);
            c.args(["--proxy", proxy, "--format", format])
                .arg("-L")
                .arg(&logs);
            let r = output(c.output().unwrap());
            assert_eq!(r.code, 32, "{r:?}");
            let all = format!("{}{}", r.stdout, r.stderr);
            assert!(!all.contains("s3cretpw"), "the password is printed: {r:?}");
            assert!(all.contains("gazelle:***@127.0.0.1"), "{r:?}");
        }
    }
    let mut logged = String::new();
    for e in std::fs::read_dir(&logs).unwrap() {
        logged += &String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).unwrap());
    }
    assert!(logged.contains("gazelle:***@"), "nothing logged: {logged}");
    assert!(
        !logged.contains("s3cretpw"),
        "the password is logged: {logged}"
    );
}

/// Runs a just-copied executable: while another test thread forks, its child holds the
/// copy's write descriptor until it execs, and the kernel refuses to run a file open for
/// writing (ETXTBSY) — so retry for a moment.
fn spawn_fresh_copy(c: &mut std::process::Command) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match c.output() {
            Err(e) if e.raw_os_error() == Some(26) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r.unwrap(),
        }
    }
}
