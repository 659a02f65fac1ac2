//! Gives the library a fingerprint of the sources it was built from (`tandem::SOURCE_ID`),
//! so a test can tell whether an agent binary is the current one by what it is, not by
//! when it was built (cargo relinks the client with other features than a plain build).
//!
//! A release build of the client also builds the static agents it uploads, one per Linux
//! system it serves (`scripts/build-agent.sh`), and puts them beside the client: `cargo
//! build --release` alone gives a client that reaches every host kind. A toolchain that is
//! missing is a build warning naming the package; `TANDEM_AGENTS=none` skips the agents.

use std::hash::Hasher;
use std::path::Path;

fn main() {
    let mut files = Vec::new();
    for dir in ["src", "agent/src"] {
        println!("cargo:rerun-if-changed={dir}");
        collect(Path::new(dir), &mut files);
    }
    println!("cargo:rerun-if-changed=Cargo.toml");
    files.push("Cargo.toml".into());
    files.sort();
    // SipHash with fixed keys: the same sources give the same id for every target and
    // profile built by one toolchain, which is all the comparison needs.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    for f in &files {
        h.write(f.to_string_lossy().as_bytes());
        h.write(&std::fs::read(f).unwrap_or_default());
    }
    println!("cargo:rustc-env=TANDEM_SOURCE_ID={:016x}", h.finish());
    build_agents();
    link_macos_frameworks_without_sdk();
}

/// For macOS without an Apple SDK (a cross build): chrono's time zone lookup links the
/// CoreFoundation framework, and `scripts/macos-link` describes the part of it that is
/// called (a `.tbd` stub, as an SDK has). A real SDK named by `SDKROOT` is used instead.
fn link_macos_frameworks_without_sdk() {
    println!("cargo:rerun-if-env-changed=SDKROOT");
    let macos = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "macos");
    if macos && std::env::var_os("SDKROOT").is_none_or(|s| s.is_empty()) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/macos-link");
        println!("cargo:rustc-link-search=framework={}", dir.display());
    }
}

/// Runs `scripts/build-agent.sh --install BIN_DIR` for a release build of the client.
fn build_agents() {
    println!("cargo:rerun-if-env-changed=TANDEM_AGENTS");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let client = std::env::var_os("CARGO_FEATURE_CLIENT").is_some();
    if !release || !client || std::env::var("TANDEM_AGENTS").as_deref() == Ok("none") {
        return;
    }
    // OUT_DIR is TARGET_DIR/[TRIPLE/]release/build/tandem-HASH/out: the client is linked
    // three levels up.
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let Some(bin_dir) = out.ancestors().nth(3).filter(|d| d.ends_with("release")) else {
        println!(
            "cargo:warning=no agents built: unexpected build directory {}",
            out.display()
        );
        return;
    };
    // Their own target dir: this build holds the lock on its own.
    let agents_dir = bin_dir.join("agents");
    let mut run = std::process::Command::new("bash");
    run.arg("scripts/build-agent.sh")
        .arg("--install")
        .arg(bin_dir)
        .env("CARGO_TARGET_DIR", &agents_dir);
    // The settings cargo gives this build script are not the agents'.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "TARGET",
        "HOST",
    ] {
        run.env_remove(var);
    }
    match run.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            for line in String::from_utf8_lossy(&o.stderr).lines() {
                println!("cargo:warning={line}");
            }
            println!("cargo:warning=some agents were not built: this client cannot upload them (set TANDEM_AGENTS=none to build without agents)");
        }
        Err(e) => println!("cargo:warning=no agents built: cannot run scripts/build-agent.sh: {e}"),
    }
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}
