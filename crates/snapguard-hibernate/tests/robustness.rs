//! No panic, bounded reads, on garbage, truncated and mutated volumes; plus
//! the small API contracts (errors, text truncation).

mod common;

use common::{fixtures, probe_bytes, Counting};
use snapguard_hibernate::{probe, Detail, IoError, ProbeError, ReadAt, DETAIL_LEN, SCRATCH_LEN};
use std::fmt::Write;

/// xorshift64*: deterministic pseudo-random numbers, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next() as u8;
        }
    }
}

#[test]
fn random_garbage() {
    let mut rng = Rng(0x5eed);
    for i in 0..3000 {
        let mut data = vec![0u8; rng.below(80 * 1024)];
        rng.fill(&mut data);
        // Every third input gets a plausible boot sector so that the deeper
        // parsers see garbage too.
        if data.len() >= 512 {
            match i % 6 {
                0 => data[3..11].copy_from_slice(b"NTFS    "),
                2 => data[3..11].copy_from_slice(b"EXFAT   "),
                4 => {
                    data[0] = 0xEB;
                    data[2] = 0x90;
                    data[11..13].copy_from_slice(&512u16.to_le_bytes());
                    data[13] = 1 << rng.below(8);
                    data[21] = 0xF8;
                }
                _ => {}
            }
        }
        probe_bytes(&data);
    }
}

/// Real images cut at many lengths, and with random bytes changed inside
/// the blocks the probe reads.
#[test]
fn truncated_and_mutated_fixtures() {
    let all = fixtures("robustness");
    let mut rng = Rng(42);
    for f in all.iter().filter(|f| f.name != "empty") {
        let data = std::fs::read(&f.path).unwrap();
        let mut cut = 0usize;
        while cut < data.len() {
            probe_bytes(&data[..cut]);
            cut = if cut < 64 * 1024 { cut + 509 } else { cut * 2 };
        }
        // Where does the probe read? Mutate there.
        struct Rec<'a>(Counting<'a>, Vec<(u64, usize)>);
        impl ReadAt for Rec<'_> {
            fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<(), IoError> {
                self.1.push((o, b.len()));
                self.0.read_at(o, b)
            }
            fn len(&self) -> u64 {
                self.0.len()
            }
        }
        let mut rec = Rec(Counting::new(&data), vec![]);
        let mut scratch = vec![0u8; SCRATCH_LEN];
        probe(&mut rec, &mut scratch).unwrap();
        let ranges = rec.1;
        let mut m = data.clone();
        for _ in 0..150 {
            let mut changed = vec![];
            for _ in 0..1 + rng.below(8) {
                let (o, l) = ranges[rng.below(ranges.len())];
                let p = o as usize + rng.below(l);
                changed.push((p, m[p]));
                m[p] = rng.next() as u8;
            }
            probe_bytes(&m);
            for (p, v) in changed.into_iter().rev() {
                m[p] = v;
            }
        }
    }
}

#[test]
fn io_errors_are_reported() {
    struct Failing;
    impl ReadAt for Failing {
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
            Err(IoError {
                offset,
                len: buf.len(),
            })
        }
        fn len(&self) -> u64 {
            1 << 30
        }
    }
    let mut scratch = vec![0u8; SCRATCH_LEN];
    assert_eq!(
        probe(&mut Failing, &mut scratch).unwrap_err(),
        ProbeError::Io(IoError {
            offset: 0,
            len: 4096
        })
    );
    let mut small = vec![0u8; SCRATCH_LEN - 1];
    let mut dev = Counting::new(&[]);
    assert_eq!(
        probe(&mut dev, &mut small).unwrap_err(),
        ProbeError::ScratchTooSmall
    );
}

#[test]
fn detail_truncates_on_char_boundaries() {
    let mut d = Detail::new();
    for _ in 0..100 {
        write!(d, "é€x").unwrap();
    }
    let s = d.as_str();
    assert!(
        s.len() <= DETAIL_LEN && s.len() > DETAIL_LEN - 4,
        "{}",
        s.len()
    );
    assert!(s.starts_with("é€xé€x"));
}

#[test]
fn report_is_modest() {
    assert!(std::mem::size_of::<snapguard_hibernate::Report>() <= 2048);
}
