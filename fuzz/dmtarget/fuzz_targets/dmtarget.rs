//! Table lines, messages and status lines: parsing arbitrary words never
//! panics, and whatever parses prints back to the same value (see
//! `snapguard_dmtarget::fuzz_one` for the input format). Seeds: those of
//! `crates/snapguard-dmtarget/tests/corpus.rs` (see `tools/fuzz.sh`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    snapguard_dmtarget::fuzz_one(data);
});
