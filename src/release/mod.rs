//! Kata's release tarballs: the built components laid out as Kata's release scripts lay them out,
//! written deterministically.

pub mod inputs;
pub mod layout;
pub mod tarball;
