//! `tandem-agent` as a program: its arguments parsed, `--version`, `--version-for`,
//! `--check-self`, the relay for extra streams (`--join`), then the serve loop on stdin
//! and stdout.

use super::*;

/// Asks the kernel to kill this agent when the client that started it dies, so a killed
/// run leaves no agent behind still writing into the tree (pipe transport).
pub(super) fn die_with_parent() -> Result<(), String> {
    crate::disk::sys::die_with_parent()
}

/// The line `tandem-agent --version` prints; the SSH bootstrap looks for exactly this.
pub fn version_line() -> String {
    format!(
        "tandem-agent {} (protocol {})",
        env!("CARGO_PKG_VERSION"),
        crate::wire::protocol::handshake::PROTOCOL_VERSION
    )
}

/// `--check-self HASH`: true if this executable's BLAKE3 is HASH (an uploaded agent
/// verifies itself before it is renamed into the cache).
pub(super) fn check_self(expected: &str) -> Result<(), String> {
    let exe = crate::disk::sys::own_executable().map_err(|e| format!("cannot read myself: {e}"))?;
    let actual = blake3::hash(&exe).to_hex();
    if actual.as_str() == expected {
        Ok(())
    } else {
        Err(format!(
            "corrupt upload: BLAKE3 {actual}, expected {expected}"
        ))
    }
}

/// Makes stdin's pipe (from sshd) hold a megabyte instead of 64 KiB: sshd hands out more
/// window only as it writes into the pipe, so a small one slows a long link. Not a pipe,
/// or not allowed: nothing changes.
pub(super) fn widen_input_pipe() {
    crate::disk::sys::widen_pipe(std::io::stdin(), 1 << 20);
}

/// Ctrl-C at a terminal interrupts the whole process group, this agent included: the client
/// then finishes its cycle and closes the connection, which is how the agent stops.
pub(super) fn ignore_interrupts() {
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, seen);
}

/// `tandem-agent`'s main: parses arguments, serves stdin/stdout, returns the exit code.
pub fn main_with_args(args: &[String]) -> u8 {
    let small_job = |r: Result<(), String>| match r {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("tandem-agent: {why}");
            128
        }
    };
    match args {
        [v] if v == "--version" || v == "-V" => {
            println!("{}", version_line());
            return 0;
        }
        // The bootstrap's test: this version, and built for the host's machine.
        [flag, machine] if flag == "--version-for" => {
            if systems::this_build_runs_on(machine) {
                println!("{}", version_line());
                return 0;
            }
            eprintln!(
                "tandem-agent: built for {}, not for this {machine} machine",
                std::env::consts::ARCH
            );
            return 1;
        }
        [flag] if flag == "--source-id" => {
            println!("{}", crate::SOURCE_ID);
            return 0;
        }
        [flag] if flag == "--join" => return small_job(streams::join()),
        [flag, hash] if flag == "--check-self" => return small_job(check_self(hash)),
        _ => {}
    }
    let opts = match AgentOptions::parse(args) {
        Ok(o) => o,
        Err(why) => {
            eprintln!("tandem-agent: {why}\nusage: tandem-agent --root DIR [--label TEXT] [--preserve-owner] [--no-hard-links] [--acls none|native|metafile] [--keep-dir DIR] [--log DIR[:MB]] [--background] [--compress zstd[:LEVEL[,BULK]]|none]");
            return 32;
        }
    };
    if opts.background {
        crate::disk::sys::lower_priority();
    }
    widen_input_pipe();
    ignore_interrupts();
    match serve(std::io::stdin(), std::io::stdout(), &opts) {
        Ok(()) => 0,
        Err(Stopped { error, told_client }) => {
            if !told_client {
                eprintln!("tandem-agent: {error}");
            }
            error.exit_bit().0.max(1)
        }
    }
}
