//! Table lines, messages and status lines of the snapguard device-mapper
//! targets (`snapguard-pool`, `snapguard`): the `no_std` parser and
//! formatter that the kernel module compiles in unchanged (see
//! `Documentation/snapshot-target.rst` and `Documentation/shared-code.rst`).
//!
//! The source lives in `rust/shared/dmtarget/`; this crate only gives it a
//! crate root so that cargo can test and fuzz it on the host.
#![no_std]

#[path = "../../../rust/shared/dmtarget/mod.rs"]
mod dmtarget;
pub use dmtarget::*;

/// Splits a table or message line into words as device-mapper does for the
/// simple case (white space separated, no backslash escapes), for tests and
/// fuzzing: returns the number of words written to `out`, or `None` if
/// there are more than `out` can hold.
pub fn split_words<'a>(line: &'a [u8], out: &mut [&'a [u8]]) -> Option<usize> {
    let mut n = 0usize;
    for w in line
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        *out.get_mut(n)? = w;
        n = n.checked_add(1)?;
    }
    Some(n)
}

mod fuzz;
pub use fuzz::fuzz_one;
