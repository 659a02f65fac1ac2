//! The dependency rules of `scripts/check-layout.sh` hold for this checkout, and each one
//! fails, naming the offending line, when it is broken on purpose (in a copy of `src/`).

use std::path::Path;
use std::process::Command;

fn check(root: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-layout.sh");
    let out = Command::new("bash").arg(script).arg(root).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the checkout's `src/` in a temp dir.
fn copy_of_src() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .arg("-r")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    dir
}

fn append(path: &Path, line: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(line);
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[test]
fn every_rule_holds_and_fails_when_broken_on_purpose() {
    let clean = copy_of_src();
    let (ok, said) = check(clean.path());
    assert!(ok, "the rules do not hold: {said}");
    for (file, line, rule) in [
        (
            "src/core/tree.rs",
            "fn sneaky() { let _ = std::fs::read(\"x\"); }",
            "the core does IO",
        ),
        (
            "src/core/plan.rs",
            "use crate::disk::scan::scan;",
            "the core does IO or uses a part",
        ),
        (
            "src/disk/delta.rs",
            "use crate::endpoint::Endpoint;",
            "disk/ reaches",
        ),
        (
            "src/endpoint/remote.rs",
            "fn shout() { eprintln!(\"hi\"); }",
            "an endpoint prints",
        ),
        (
            "src/wire/protocol.rs",
            "use russh::client;",
            "wire/ uses an SSH library",
        ),
        (
            "src/sync.rs",
            "fn pid() -> u32 { rustix::process::getpid().as_raw_nonzero().get() as u32 }",
            "a raw OS call outside disk/sys/",
        ),
        (
            "src/wire/agent/streams.rs",
            "#[cfg(target_os = \"macos\")]\nfn only_here() {}",
            "a cfg(target_os) outside disk/sys/",
        ),
    ] {
        let broken = copy_of_src();
        append(&broken.path().join(file), line);
        let (ok, said) = check(broken.path());
        assert!(!ok, "{file}: '{line}' passed the rules");
        assert!(said.contains(rule) && said.contains(file), "{file}: {said}");
    }
}
