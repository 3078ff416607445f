//! Snapshot pool metadata core: the `no_std` shared-extent pointer tables
//! that the snapguard kernel module compiles in unchanged (see
//! `Documentation/shared-code.rst`).
//!
//! The source lives in `rust/shared/pool/`; this crate only gives it a crate
//! root so that cargo can test, fuzz and reuse it on the host.
#![no_std]

#[path = "../../../rust/shared/pool/mod.rs"]
mod pool;
pub use pool::*;
