//! kata-repro: pins, fetches, verifies and records every input of a Kata Containers release.

pub mod digest;
pub mod lock;
pub mod source;
