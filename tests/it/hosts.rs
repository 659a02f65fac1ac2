//! Hosts of other machines over a real sshd: the login's `uname` (and `getconf`) say
//! aarch64 or 32-bit ARM, the client uploads the agent built for that system, and the
//! agent runs under qemu-user through binfmt_misc, as it would on the real machine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::ssh;
use crate::sshd::{ssh_fixture_on, SshFixture, Sshd};
use crate::util::*;

/// Registers qemu-user with binfmt_misc for aarch64 and 32-bit ARM (scripts/emulation.sh).
/// Missing qemu fails the test: CI installs it.
fn emulation() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let done = DONE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/emulation.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .output()
            .map_err(|e| e.to_string())?;
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    });
    if let Err(why) = done {
        panic!("no emulation for the ARM hosts: {why}");
    }
}

/// The static agent `scripts/build-agent.sh` built for `triple`.
fn built_agent(triple: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_BIN_EXE_tandem"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let path = target.join(triple).join("agent/tandem-agent");
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-agent.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A server whose logins see `uname -m` = `machine` and `getconf LONG_BIT` = `bits`.
fn host(machine: &str, bits: u32) -> SshFixture {
    host_of("Linux", machine, bits)
}

/// [`host`], with `uname -s` = `os`.
fn host_of(os: &str, machine: &str, bits: u32) -> SshFixture {
    emulation();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("fakebin");
    std::fs::create_dir(&bin).unwrap();
    let script = |name: &str, body: String| {
        std::fs::write(bin.join(name), format!("#!/bin/sh\n{body}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "uname",
        format!(
            "case \"$*\" in -m) echo {machine};; -s) echo {os};; -sm) echo '{os} {machine}';; *) exec /bin/uname \"$@\";; esac\n"
        ),
    );
    script(
        "getconf",
        format!(
            "[ \"$1\" = LONG_BIT ] && {{ echo {bits}; exit 0; }}; exec /usr/bin/getconf \"$@\"\n"
        ),
    );
    std::fs::write(
        dir.path().join("sshd_env"),
        format!("PATH={}:/usr/local/bin:/usr/bin:/bin", bin.display()),
    )
    .unwrap();
    ssh_fixture_on(Sshd::start_in(dir))
}

/// The agent in the host's cache.
fn cached_agent(s: &SshFixture) -> PathBuf {
    s.sshd
        .remote_home()
        .join(".cache/tandem")
        .join(env!("CARGO_PKG_VERSION"))
        .join("tandem-agent")
}

/// The ELF class and machine of an executable.
fn elf_kind(path: &Path) -> (u8, u16) {
    let head = std::fs::read(path).unwrap();
    assert_eq!(&head[..4], b"\x7fELF", "{} is no ELF file", path.display());
    (head[4], u16::from_le_bytes([head[18], head[19]]))
}

const AARCH64: (u8, u16) = (2, 183);
const ARM32: (u8, u16) = (1, 40);
const X86_64: (u8, u16) = (2, 62);

#[track_caller]
fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{r:?}");
}

fn run(s: &SshFixture, dir: &str, extra: &[&str]) -> Run {
    output(s.uploading_command(dir, extra).output().unwrap())
}

/// [`ssh::tree`], with a hard-linked and a sparse file too.
fn tree(root: &Path) {
    ssh::tree(root);
    std::fs::hard_link(root.join("top.txt"), root.join("dir/top-again.txt")).unwrap();
    let sparse = std::fs::File::create(root.join("sparse.img")).unwrap();
    sparse.set_len(16 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"middle", 8 << 20).unwrap();
}

/// Push, a delta back with pull, bidi, and a push cut mid-file and resumed, to a host of
/// `machine`/`bits` that must get the agent of ELF kind `kind`.
fn every_sync_works_on(machine: &str, bits: u32, kind: (u8, u16), label: &str) {
    let s = host(machine, bits);
    tree(&s.f.a);
    let r = run(&s, "push", &[]);
    ok(&r);
    assert!(
        r.stderr.contains(&format!("for {label})")),
        "the upload note names the system: {r:?}"
    );
    assert_eq!(
        elf_kind(&cached_agent(&s)),
        kind,
        "the right agent is cached"
    );
    assert_same_tree(&s.f.a, &s.f.b);

    let pull = ssh::pull_a_delta_then_bidi(&s, &|dir, extra| run(&s, dir, extra));
    assert!(
        !pull.stderr.contains("installed"),
        "the cached agent is reused: {pull:?}"
    );
    assert_eq!(read(s.f.b.join("dir/top-again.txt")), "changed locally\n");

    // A push cut mid-file resumes from what arrived.
    let size = 48 << 20;
    std::fs::write(s.f.a.join("huge"), pseudo_random(size, 9)).unwrap();
    let before_a = snapshot(&s.f.a);
    let cut = ssh::cut_mid_transfer(&s, s.uploading_command("push", &[]));
    assert_eq!(cut.code & 64, 64, "a cut is 'cannot reach': {cut:?}");
    assert!(
        !s.f.b.join("huge").exists(),
        "nothing half-written in place"
    );
    assert_unchanged(&s.f.a, &before_a);
    let r = run(&s, "push", &["--format", "json"]);
    ok(&r);
    assert_same_tree(&s.f.a, &s.f.b);
    let summary = json_events(&r.stdout).pop().unwrap();
    assert!(
        summary["bytes_saved_by_delta"].as_u64().unwrap() >= 2 << 20,
        "no resume: {summary}"
    );
    let r = run(&s, "bidi", &["--format", "json"]);
    ok(&r);
    assert!(
        json_events(&r.stdout)
            .iter()
            .all(|e| e["event"] != "file" && e["event"] != "conflict"),
        "a second run changes nothing: {r:?}"
    );
}

#[test]
fn an_aarch64_host_gets_the_aarch64_agent_and_every_sync_works() {
    every_sync_works_on("aarch64", 64, AARCH64, "Linux aarch64");
}

#[test]
fn a_32_bit_arm_host_gets_the_armv7_agent_and_every_sync_works() {
    every_sync_works_on("armv7l", 32, ARM32, "Linux armv7 (32-bit ARM)");
}

#[test]
fn a_32_bit_userland_on_a_64_bit_kernel_gets_the_32_bit_agent() {
    let s = host("aarch64", 32);
    tree(&s.f.a);
    let r = run(&s, "push", &[]);
    ok(&r);
    assert!(r.stderr.contains("with a 32-bit userland"), "{r:?}");
    assert_eq!(elf_kind(&cached_agent(&s)), ARM32);
    assert_same_tree(&s.f.a, &s.f.b);
}

#[test]
fn a_wrong_architecture_agent_in_the_cache_is_replaced_not_run() {
    let s = host("aarch64", 64);
    let cached = cached_agent(&s);
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::copy(built_agent("x86_64-unknown-linux-musl"), &cached).unwrap();
    assert_eq!(elf_kind(&cached), X86_64);
    tree(&s.f.a);
    let r = run(&s, "push", &[]);
    ok(&r);
    assert!(r.stderr.contains("installed tandem-agent"), "{r:?}");
    assert_eq!(elf_kind(&cached), AARCH64, "the x86_64 agent was replaced");
    assert_same_tree(&s.f.a, &s.f.b);
}

#[test]
fn a_host_no_agent_serves_is_told_which_systems_are_served() {
    let s = host("mips", 32);
    tree(&s.f.a);
    let r = run(&s, "push", &[]);
    assert_eq!(r.code & 64, 64, "{r:?}");
    for said in ["Linux mips", "Linux x86_64", "Linux aarch64", "Linux armv7"] {
        assert!(r.stderr.contains(said), "names {said}: {r:?}");
    }
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    assert!(names(&s.f.b).is_empty(), "nothing written");
}

/// A Mac gets the macOS agents (built by scripts/build-macos.sh), Apple silicon's first and
/// Intel's for Rosetta next. Neither runs here: each fails the check the uploaded agent
/// makes of itself, and nothing is left in the host's cache.
#[test]
fn a_mac_host_gets_the_macos_agents_offered() {
    for triple in ["aarch64-apple-darwin", "x86_64-apple-darwin"] {
        let agent = built_agent(triple);
        let head = std::fs::read(&agent).unwrap();
        assert_eq!(
            head[..4],
            0xfeed_facfu32.to_le_bytes(),
            "{triple} is Mach-O"
        );
    }
    let s = host_of("Darwin", "arm64", 64);
    tree(&s.f.a);
    let r = run(&s, "push", &[]);
    assert_eq!(r.code & 64, 64, "{r:?}");
    let arm = r.stderr.find("for macOS arm64 (Apple silicon)");
    let intel = r.stderr.find("for macOS x86_64 (Intel)");
    assert!(
        arm.is_some() && arm < intel,
        "both offered, Apple silicon's first: {r:?}"
    );
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    let cache = cached_agent(&s);
    let left: Vec<_> = std::fs::read_dir(cache.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing left in the cache: {left:?}");
    assert!(names(&s.f.b).is_empty(), "nothing written");
}
