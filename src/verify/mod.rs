//! Verification of everything a pinned release depends on, one module per ecosystem.

pub mod cargo;
pub mod gomod;
pub mod kernel;
pub mod release;
pub mod report;
pub mod store;
