//! Snapshot pool metadata core: the `no_std` shared-extent pointer tables
//! that the snapguard kernel module compiles in unchanged (see
//! `Documentation/pool-format.rst`).
//!
//! The source lives in `rust/shared/pool/`; this crate only gives it a crate
//! root so that cargo can test, fuzz and reuse it on the host. With the
//! default `std` feature it also offers [`host`]: metadata devices backed by
//! memory or a file, for tools, tests, fuzzing and benchmarks.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

#[path = "../../../rust/shared/pool/mod.rs"]
mod pool;
pub use pool::*;

#[cfg(feature = "std")]
pub mod host;
