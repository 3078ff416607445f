//! Fuzz target: the whole hibernation-evidence probe over arbitrary bytes.
//!
//! The input is a device in `snapguard_hibernate::sparse` form: either the
//! device's bytes, or (`SGSP` inputs) a size and a few blocks at offsets,
//! which lets the fuzzer mutate the MFT records, runlists, index blocks,
//! `$LogFile` pages and FATs of real images (the seed and regression
//! corpora are real fixtures shrunk to the blocks the probe reads).
//! Checked: no panic, the documented read bounds, reads stay on the device.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snapguard_hibernate::sparse::SparseDev;
use snapguard_hibernate::{
    probe, IoError, ReadAt, MAX_BYTES, MAX_EVIDENCE, MAX_READS, MAX_READ_LEN, SCRATCH_LEN,
};

struct Checked<'a> {
    dev: SparseDev<'a>,
    reads: u32,
    bytes: u64,
}

impl ReadAt for Checked<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        assert!(buf.len() <= MAX_READ_LEN);
        let end = offset
            .checked_add(buf.len() as u64)
            .expect("read range overflows");
        assert!(
            end <= self.dev.len(),
            "read past the device: {offset}+{}",
            buf.len()
        );
        self.reads += 1;
        self.bytes += buf.len() as u64;
        self.dev.read_at(offset, buf)
    }

    fn len(&self) -> u64 {
        self.dev.len()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut dev = Checked {
        dev: SparseDev::new(data),
        reads: 0,
        bytes: 0,
    };
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let rep = probe(&mut dev, &mut scratch).expect("no I/O errors on this device");
    assert!(dev.reads <= MAX_READS && dev.bytes <= MAX_BYTES);
    assert_eq!((dev.reads, dev.bytes), (rep.reads(), rep.bytes_read()));
    assert!(rep.evidence().len() <= MAX_EVIDENCE);
    for e in rep.evidence() {
        assert!(!e.detail().is_empty());
        let _ = (e.kind().as_str(), e.offset());
    }
    let _ = (
        rep.fs().as_str(),
        rep.verdict().as_str(),
        rep.remedy(),
        rep.sleeping_os(),
    );
});
