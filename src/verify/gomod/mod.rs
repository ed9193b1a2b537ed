//! Go modules: go.sum `h1:` hashes, module zips and directories, module caches and proxies,
//! and vendored trees.

pub mod dirhash;
pub mod gosum;
pub mod modcache;
pub mod vendor;
