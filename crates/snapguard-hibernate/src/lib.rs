//! Hibernation evidence detector: the `no_std` core that the snapguard kernel
//! module compiles in unchanged (see `Documentation/shared-code.rst`).
//!
//! The source lives in `rust/shared/hibernate/`; this crate only gives it a
//! crate root so that cargo can test, fuzz and reuse it on the host.
#![no_std]

#[path = "../../../rust/shared/hibernate/mod.rs"]
mod hibernate;
pub use hibernate::*;
