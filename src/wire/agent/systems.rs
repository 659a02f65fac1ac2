//! The host systems tandem builds agents for, and which build runs on a host: the client
//! picks what to upload from it, and an agent found on a host checks it before it serves.

/// One agent build: an executable for one OS and architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentBuild {
    /// The architecture in the uploadable file's name (`tandem-agent-ARCH-OS`).
    pub arch: &'static str,
    /// The host's `uname -s`.
    pub os: &'static str,
    /// The Rust target it is built for (`scripts/build-agent.sh`, `scripts/build-macos.sh`).
    pub triple: &'static str,
    /// What kind of executable it is, to tell it from others beside the client.
    pub binary: Binary,
    /// What `std::env::consts::ARCH` is in that build.
    rust_arch: &'static str,
    /// The `uname -m` of kernels that run it, natively first.
    machines: &'static [&'static str],
    /// How messages name the system it serves.
    pub label: &'static str,
}

/// The executable format of a build, as its first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// A static little-endian ELF executable (no interpreter: it runs on any Linux of its
    /// architecture, whatever its C library).
    Elf {
        /// The ELF class: 1 for 32-bit, 2 for 64-bit.
        class: u8,
        /// The ELF `e_machine`.
        machine: u16,
    },
    /// A 64-bit Mach-O executable of one CPU type (not a universal binary).
    MachO {
        /// The Mach-O `cputype`.
        cpu: u32,
    },
}

impl AgentBuild {
    /// The file name of this build beside the client.
    pub fn file_name(&self) -> String {
        let os = match self.os {
            "Darwin" => "macos",
            _ => "linux",
        };
        format!("tandem-agent-{}-{os}", self.arch)
    }

    /// The width of its userland: 32 or 64 bits.
    fn bits(&self) -> u32 {
        match self.binary {
            Binary::Elf { class: 1, .. } => 32,
            _ => 64,
        }
    }

    /// True for a build of the system this program runs on.
    fn is_this_system(&self) -> bool {
        let os = match std::env::consts::OS {
            "macos" => "Darwin",
            _ => "Linux",
        };
        self.rust_arch == std::env::consts::ARCH && self.os == os
    }
}

/// Every agent build tandem makes, in the order messages list them.
pub const BUILDS: [AgentBuild; 5] = [
    AgentBuild {
        arch: "x86_64",
        os: "Linux",
        triple: "x86_64-unknown-linux-musl",
        binary: Binary::Elf {
            class: 2,
            machine: 62,
        },
        rust_arch: "x86_64",
        machines: &["x86_64", "amd64"],
        label: "Linux x86_64",
    },
    AgentBuild {
        arch: "aarch64",
        os: "Linux",
        triple: "aarch64-unknown-linux-musl",
        binary: Binary::Elf {
            class: 2,
            machine: 183,
        },
        rust_arch: "aarch64",
        machines: &["aarch64", "arm64"],
        label: "Linux aarch64",
    },
    // ARMv7 with hard float: every Raspberry Pi since the 2, 32-bit Raspberry Pi OS on
    // 64-bit kernels included (not the ARMv6 Pi 1 and Zero).
    AgentBuild {
        arch: "armv7",
        os: "Linux",
        triple: "armv7-unknown-linux-gnueabihf",
        binary: Binary::Elf {
            class: 1,
            machine: 40,
        },
        rust_arch: "arm",
        machines: &["armv7l", "armv8l", "aarch64", "arm64"],
        label: "Linux armv7 (32-bit ARM)",
    },
    // macOS builds are dynamic, as every macOS program is (libSystem is the system's
    // interface); built by scripts/build-macos.sh, where zig is at hand.
    AgentBuild {
        arch: "aarch64",
        os: "Darwin",
        triple: "aarch64-apple-darwin",
        binary: Binary::MachO { cpu: 0x0100_000c },
        rust_arch: "aarch64",
        machines: &["arm64"],
        label: "macOS arm64 (Apple silicon)",
    },
    // Apple silicon runs it too, under Rosetta 2 where that is installed.
    AgentBuild {
        arch: "x86_64",
        os: "Darwin",
        triple: "x86_64-apple-darwin",
        binary: Binary::MachO { cpu: 0x0100_0007 },
        rust_arch: "x86_64",
        machines: &["x86_64", "arm64"],
        label: "macOS x86_64 (Intel)",
    },
];

/// What a host says about itself: `uname -s`, `uname -m` and `getconf LONG_BIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSystem {
    /// The kernel (`Linux`, `Darwin`, ...).
    pub os: String,
    /// The kernel's machine (`x86_64`, `aarch64`, `armv7l`, ...).
    pub machine: String,
    /// The width of the userland's `long`: 32 on a 32-bit userland over a 64-bit kernel.
    pub long_bit: Option<u32>,
}

impl HostSystem {
    /// Parses `OS MACHINE [LONG_BIT]` as the bootstrap script prints it.
    pub fn parse(line: &str) -> HostSystem {
        let mut words = line.split_whitespace();
        let os = words.next().unwrap_or("unknown").to_string();
        let machine = words.next().unwrap_or("unknown").to_string();
        let long_bit = words.next().and_then(|w| w.parse().ok());
        HostSystem {
            os,
            machine,
            long_bit,
        }
    }

    /// The builds that run on this host, best first. A 32-bit userland on a 64-bit ARM
    /// kernel gets the 32-bit agent first: it runs wherever the host's own programs run,
    /// while a 64-bit one needs the kernel's 64-bit user space too.
    pub fn builds(&self) -> Vec<&'static AgentBuild> {
        let mut fit: Vec<&AgentBuild> = BUILDS
            .iter()
            .filter(|b| b.os == self.os && b.machines.contains(&self.machine.as_str()))
            .collect();
        let userland = self.long_bit.unwrap_or(64);
        // Stable: among builds of the userland's width, the native one first.
        fit.sort_by_key(|b| (b.bits() != userland, b.machines[0] != self.machine));
        fit
    }
}

impl std::fmt::Display for HostSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.os, self.machine)?;
        if self.long_bit == Some(32) && self.machine.contains("64") {
            write!(f, " with a 32-bit userland")?;
        }
        Ok(())
    }
}

/// Whether this agent runs natively on a kernel whose `uname -m` is `machine`. An agent
/// built for another machine (left in a cache, or run by an emulator) is not used: the
/// client replaces it with the right one.
pub fn this_build_runs_on(machine: &str) -> bool {
    BUILDS
        .iter()
        .filter(|b| b.is_this_system())
        .any(|b| b.machines.contains(&machine))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archs(line: &str) -> Vec<&'static str> {
        HostSystem::parse(line)
            .builds()
            .iter()
            .map(|b| b.arch)
            .collect()
    }

    #[test]
    fn each_host_gets_the_builds_that_run_there_best_first() {
        let table = [
            ("Linux x86_64 64", vec!["x86_64"]),
            ("Linux amd64", vec!["x86_64"]),
            ("Linux aarch64 64", vec!["aarch64", "armv7"]),
            ("Linux aarch64", vec!["aarch64", "armv7"]),
            // Raspberry Pi OS (32-bit) on its 64-bit kernel.
            ("Linux aarch64 32", vec!["armv7", "aarch64"]),
            ("Linux armv7l 32", vec!["armv7"]),
            ("Linux armv8l 32", vec!["armv7"]),
            ("Linux armv6l 32", vec![]),
            ("Linux i686 32", vec![]),
            ("Darwin arm64 64", vec!["aarch64", "x86_64"]),
            ("Darwin x86_64 64", vec!["x86_64"]),
            ("Darwin arm64", vec!["aarch64", "x86_64"]),
            ("FreeBSD amd64 64", vec![]),
            ("", vec![]),
        ];
        for (line, want) in table {
            assert_eq!(archs(line), want, "{line:?}");
        }
    }

    #[test]
    fn hosts_are_named_with_their_userland() {
        assert_eq!(
            HostSystem::parse("Linux aarch64 32").to_string(),
            "Linux aarch64 with a 32-bit userland"
        );
        assert_eq!(
            HostSystem::parse("Linux x86_64 64").to_string(),
            "Linux x86_64"
        );
    }

    #[test]
    fn this_build_refuses_other_machines() {
        let own = match std::env::consts::ARCH {
            "x86_64" => "x86_64",
            "aarch64" => "aarch64",
            _ => "armv7l",
        };
        assert!(this_build_runs_on(own));
        assert!(!this_build_runs_on("mips"));
        if own == "x86_64" {
            assert!(!this_build_runs_on("aarch64"));
        }
    }
}
