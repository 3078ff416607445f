//! Hibernation evidence detector: the `no_std` core that the snapguard kernel
//! module compiles in unchanged (see `Documentation/shared-code.rst`).
//!
//! The source lives in `rust/shared/hibernate/`; this crate only gives it a
//! crate root so that cargo can test, fuzz and reuse it on the host, plus
//! [`sparse`], a compact device format for the fuzzer and the regression
//! corpus (host only, not part of the kernel module).
#![no_std]

#[path = "../../../rust/shared/hibernate/mod.rs"]
mod hibernate;
pub use hibernate::*;

pub mod sparse;
