//! Opening, checking, walking and changing arbitrary (corrupted) pool
//! metadata never panics nor loops (see `snapguard_pool::host::fuzz_one`
//! for the input format). Seeds: `snapguard_pool::host::fuzz_seeds` and the
//! finds in `crates/snapguard-pool/tests/corpus/` (see `tools/fuzz.sh`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = snapguard_pool::host::fuzz_one(data);
});
