//! Gives the library a fingerprint of the sources it was built from (`tandem::SOURCE_ID`),
//! so a test can tell whether an agent binary is the current one by what it is, not by
//! when it was built (cargo relinks the client with other features than a plain build).

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
