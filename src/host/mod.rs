//! The machine kata-repro runs on: its architecture and the Rust target names derived from one,
//! its distribution, and the tools and Debian packages a step takes from it.

mod tools;

pub use tools::{
    Dpkg, HostError, HostPackage, HostTool, find_on_path, host_drift, host_os, host_pins,
    resolve_host_packages, resolve_host_tools, unmet_pins,
};

/// The host's architecture as Kata and Rust name it (`x86_64`, `aarch64`, `s390x`, …).
pub fn arch() -> String {
    std::env::consts::ARCH.to_owned()
}

/// The Rust target triple of `arch` on glibc: `x86_64-unknown-linux-gnu`.
pub fn gnu_triple(arch: &str) -> String {
    format!("{arch}-unknown-linux-gnu")
}

/// The Rust target triple of `arch` on musl, the agent's: `x86_64-unknown-linux-musl`.
pub fn musl_triple(arch: &str) -> String {
    format!("{arch}-unknown-linux-musl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples_name_the_arch_and_the_libc() {
        assert_eq!(gnu_triple("s390x"), "s390x-unknown-linux-gnu");
        assert_eq!(musl_triple("aarch64"), "aarch64-unknown-linux-musl");
        assert_eq!(arch(), std::env::consts::ARCH);
    }
}
