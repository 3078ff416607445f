//! The fuzzing oracle, shared by `fuzz/dmtarget` and the corpus replay
//! test: parsing arbitrary words never panics, and whatever parses prints
//! back to a line that parses to the same value.

use core::fmt::{self, Write};

use crate::{parse_message, parse_pool_table, parse_volume_table, split_words};
use crate::{PoolStatus, VolumeStatus};

/// Printed lines are at most 2 bytes longer than the input line (a table
/// line without features gains ` 0`; numbers and keywords never grow).
const BUF: usize = 4096;
/// Longer inputs are skipped.
const MAX_LINE: usize = BUF - 16;

/// A fixed buffer for printed lines.
struct Buf {
    data: [u8; BUF],
    len: usize,
}

impl Buf {
    fn new() -> Self {
        Buf {
            data: [0; BUF],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.data.get(..self.len).unwrap_or(&[])
    }
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.data
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Which parser a fuzz input exercises (its first byte, modulo 5).
const KINDS: u8 = 5;

/// Runs one fuzz input: the first byte picks the parser (pool table,
/// volume table, message, pool status, volume status), the rest is the
/// line. Panics if a parsed value does not round-trip.
pub fn fuzz_one(data: &[u8]) {
    let Some((&kind, line)) = data.split_first() else {
        return;
    };
    if line.len() > MAX_LINE {
        return;
    }
    let mut argv: [&[u8]; 64] = [&[]; 64];
    let Some(n) = split_words(line, &mut argv) else {
        return;
    };
    let argv = argv.get(..n).unwrap_or(&[]);
    let mut out = Buf::new();
    let mut again: [&[u8]; 64] = [&[]; 64];
    match kind % KINDS {
        0 => {
            if let Ok(t) = parse_pool_table(argv) {
                t.write_table(&mut out).expect("pool table fits");
                let m = split_words(out.bytes(), &mut again).expect("words fit");
                let back = parse_pool_table(again.get(..m).unwrap_or(&[]));
                assert_eq!(back, Ok(t), "pool table round trip");
            }
        }
        1 => {
            if let Ok(t) = parse_volume_table(argv) {
                t.write_table(&mut out).expect("volume table fits");
                let m = split_words(out.bytes(), &mut again).expect("words fit");
                let back = parse_volume_table(again.get(..m).unwrap_or(&[]));
                assert_eq!(back, Ok(t), "volume table round trip");
            }
        }
        2 => {
            if let Ok(msg) = parse_message(argv) {
                write!(out, "{msg}").expect("message fits");
                let m = split_words(out.bytes(), &mut again).expect("words fit");
                let back = parse_message(again.get(..m).unwrap_or(&[]));
                assert_eq!(back, Ok(msg), "message round trip");
            }
        }
        k => {
            let Ok(s) = core::str::from_utf8(line) else {
                return;
            };
            if k == 3 {
                if let Ok(st) = PoolStatus::parse(s) {
                    st.write(&mut out).expect("status fits");
                    let back = core::str::from_utf8(out.bytes()).expect("utf-8");
                    assert_eq!(PoolStatus::parse(back), Ok(st), "pool status round trip");
                }
            } else if let Ok(st) = VolumeStatus::parse(s) {
                st.write(&mut out).expect("status fits");
                let back = core::str::from_utf8(out.bytes()).expect("utf-8");
                assert_eq!(
                    VolumeStatus::parse(back),
                    Ok(st),
                    "volume status round trip"
                );
            }
        }
    }
}
