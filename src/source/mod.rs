//! Getting pinned inputs: git checkouts through gix, downloads, mirrors, the host policy, and
//! the content-addressed store they all land in.

pub mod deb;
pub mod download;
pub mod export;
pub mod extract;
pub mod fetch;
pub mod get;
pub mod git;
#[cfg(feature = "https")]
pub mod https_git;
pub mod mirror;
pub mod policy;
pub mod report;
pub mod store;
