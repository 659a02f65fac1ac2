//! The agents this client can upload: where each build is found beside the client, and
//! the check that a file found there is a static executable of that build.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::wire::agent::systems::{AgentBuild, Binary, BUILDS};

/// Finds the agent `build` beside this executable: `tandem-agent-ARCH-OS` (an install, or
/// a release build of a checkout), `../lib/tandem/` (an install's prefix), `tandem-agent`
/// itself if it is that build, or the output of `scripts/build-agent.sh` (or
/// `scripts/build-macos.sh`) in cargo's target tree.
pub fn local_agent(build: &AgentBuild) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let name = build.file_name();
    let mut candidates = vec![
        dir.join(&name),
        dir.join("../lib/tandem").join(&name),
        dir.join("tandem-agent"),
    ];
    // In a cargo target tree (target/debug/tandem): target/TRIPLE/PROFILE/tandem-agent.
    if let Some(target) = dir.parent() {
        for profile in ["agent", "release", "debug"] {
            candidates.push(target.join(build.triple).join(profile).join("tandem-agent"));
        }
    }
    candidates
        .into_iter()
        .find(|p| is_build(p, build).unwrap_or(false))
}

/// The builds this client has an agent for: the systems it can serve.
pub fn available() -> Vec<&'static AgentBuild> {
    BUILDS.iter().filter(|b| local_agent(b).is_some()).collect()
}

/// True if `path` is an executable of `build`: for Linux a static ELF one (no interpreter:
/// it runs on any Linux of that architecture, whatever its C library), for macOS a Mach-O
/// one of the build's CPU.
fn is_build(path: &Path, build: &AgentBuild) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head)?;
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(head[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().expect("8 bytes"));
    let (class, machine) = match build.binary {
        Binary::MachO { cpu } => {
            const MH_MAGIC_64: u32 = 0xfeed_facf;
            const MH_EXECUTE: u32 = 2;
            return Ok(u32_at(0) == MH_MAGIC_64 && u32_at(4) == cpu && u32_at(12) == MH_EXECUTE);
        }
        Binary::Elf { class, machine } => (class, machine),
    };
    // Little-endian ELF of the build's class and machine.
    if &head[..4] != b"\x7fELF" || head[4] != class || head[5] != 1 || u16_at(18) != machine {
        return Ok(false);
    }
    let (phoff, phentsize, phnum) = match class {
        1 => (u64::from(u32_at(28)), u16_at(42), u16_at(44)),
        _ => (u64_at(32), u16_at(54), u16_at(56)),
    };
    let mut table = vec![0u8; usize::from(phentsize) * usize::from(phnum)];
    f.seek(SeekFrom::Start(phoff))?;
    f.read_exact(&mut table)?;
    const PT_INTERP: u32 = 3;
    let interp = table
        .chunks(phentsize.max(4) as usize)
        .any(|ph| ph.len() >= 4 && u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) == PT_INTERP);
    Ok(!interp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_linux_executable_is_not_uploaded() {
        // This test binary links glibc dynamically.
        let me = std::env::current_exe().unwrap();
        for build in &BUILDS {
            assert!(!is_build(&me, build).unwrap());
            assert!(!is_build(Path::new("/etc/hostname"), build).unwrap_or(false));
        }
    }

    #[test]
    fn file_names_follow_the_architecture() {
        let names: Vec<String> = BUILDS.iter().map(AgentBuild::file_name).collect();
        assert_eq!(
            names,
            [
                "tandem-agent-x86_64-linux",
                "tandem-agent-aarch64-linux",
                "tandem-agent-armv7-linux",
                "tandem-agent-aarch64-macos",
                "tandem-agent-x86_64-macos"
            ]
        );
    }
}

#[cfg(test)]
mod macho_tests {
    use super::*;

    /// The head of a 64-bit Mach-O file of `cpu` and `filetype`.
    fn macho(dir: &Path, cpu: u32, filetype: u32) -> PathBuf {
        let mut head = vec![0u8; 64];
        head[..4].copy_from_slice(&0xfeed_facfu32.to_le_bytes());
        head[4..8].copy_from_slice(&cpu.to_le_bytes());
        head[12..16].copy_from_slice(&filetype.to_le_bytes());
        let path = dir.join(format!("{cpu:x}-{filetype}"));
        std::fs::write(&path, head).unwrap();
        path
    }

    #[test]
    fn a_macos_agent_is_told_by_its_cpu_and_being_an_executable() {
        let dir = tempfile::tempdir().unwrap();
        let by_triple = |t: &str| BUILDS.iter().find(|b| b.triple == t).unwrap();
        let arm = by_triple("aarch64-apple-darwin");
        let intel = by_triple("x86_64-apple-darwin");
        let arm_exe = macho(dir.path(), 0x0100_000c, 2);
        assert!(is_build(&arm_exe, arm).unwrap());
        assert!(!is_build(&arm_exe, intel).unwrap());
        assert!(is_build(&macho(dir.path(), 0x0100_0007, 2), intel).unwrap());
        // A dynamic library of the right CPU is no agent; nor is a Linux build.
        assert!(!is_build(&macho(dir.path(), 0x0100_000c, 6), arm).unwrap());
        assert!(!is_build(&arm_exe, by_triple("aarch64-unknown-linux-musl")).unwrap());
    }
}
