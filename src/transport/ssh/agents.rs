//! The agents this client can upload: where each build is found beside the client, and
//! the check that a file found there is a static executable of that build.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::wire::agent::systems::{AgentBuild, BUILDS};

/// Finds the static agent `build` beside this executable: `tandem-agent-ARCH-linux` (an
/// install, or a release build of a checkout), `../lib/tandem/` (an install's prefix),
/// `tandem-agent` itself if it is that build, or the output of `scripts/build-agent.sh`
/// in cargo's target tree.
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
        .find(|p| is_static_build(p, build).unwrap_or(false))
}

/// The builds this client has an agent for: the systems it can serve.
pub fn available() -> Vec<&'static AgentBuild> {
    BUILDS.iter().filter(|b| local_agent(b).is_some()).collect()
}

/// True if `path` is a static ELF executable of `build` (no interpreter: it runs on any
/// Linux of that architecture, whatever its C library).
fn is_static_build(path: &Path, build: &AgentBuild) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head)?;
    // Little-endian ELF of the build's class and machine.
    if &head[..4] != b"\x7fELF" || head[4] != build.elf_class || head[5] != 1 {
        return Ok(false);
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as u64;
    let u32_at = |o: usize| u32::from_le_bytes(head[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().expect("8 bytes"));
    if u16_at(18) != build.elf_machine as u64 {
        return Ok(false);
    }
    let (phoff, phentsize, phnum) = match build.elf_class {
        1 => (u32_at(28) as u64, u16_at(42), u16_at(44)),
        _ => (u64_at(32), u16_at(54), u16_at(56)),
    };
    let mut table = vec![0u8; (phentsize * phnum) as usize];
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
    fn a_dynamic_executable_is_not_uploaded() {
        // This test binary links glibc dynamically.
        let me = std::env::current_exe().unwrap();
        for build in &BUILDS {
            assert!(!is_static_build(&me, build).unwrap());
            assert!(!is_static_build(Path::new("/etc/hostname"), build).unwrap_or(false));
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
                "tandem-agent-armv7-linux"
            ]
        );
    }
}
