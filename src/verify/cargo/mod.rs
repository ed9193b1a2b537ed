//! Rust crates: registry archives, vendored trees, git and path packages.

pub mod registry;
pub mod vendor;
