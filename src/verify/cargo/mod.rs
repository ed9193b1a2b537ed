//! Rust crates: registry archives, vendored trees, git and path packages.

pub mod offline;
pub mod registry;
pub mod resolve;
pub mod vendor;
