//! A compact test-device format for the fuzzer and the regression corpus.
//!
//! An input that starts with `SGSP` is a sparse device: a u32 (LE) device
//! size in bytes, then records of u32 offset, u16 length and that many
//! bytes; everything else reads as zero and later records win. Any other
//! input is the device itself, byte for byte. Real images shrink to the few
//! blocks a probe reads (see `examples/mkcorpus.rs`), so the fuzzer mutates
//! exactly those.

use crate::{IoError, ReadAt};

/// Magic of the sparse format.
pub const MAGIC: &[u8; 4] = b"SGSP";

/// A device decoded from fuzz or corpus input.
#[derive(Clone, Copy, Debug)]
pub struct SparseDev<'a> {
    input: &'a [u8],
    sparse: bool,
    len: u64,
}

impl<'a> SparseDev<'a> {
    /// The device an input describes.
    pub fn new(input: &'a [u8]) -> Self {
        match input
            .strip_prefix(MAGIC.as_slice())
            .and_then(|r| r.get(..4))
        {
            Some(l) => {
                let len = u64::from(u32::from_le_bytes([l[0], l[1], l[2], l[3]]));
                SparseDev {
                    input,
                    sparse: true,
                    len,
                }
            }
            None => SparseDev {
                input,
                sparse: false,
                len: input.len() as u64,
            },
        }
    }

    /// Calls `f(offset, bytes)` for each record of a sparse input.
    fn records(&self, mut f: impl FnMut(u64, &[u8])) {
        let mut rest = self.input.get(8..).unwrap_or(&[]);
        while rest.len() >= 6 {
            let off = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
            let n = usize::from(u16::from_le_bytes([rest[4], rest[5]]));
            let data = rest.get(6..).unwrap_or(&[]);
            let data = data.get(..n).unwrap_or(data);
            f(off, data);
            rest = rest.get(6 + data.len()..).unwrap_or(&[]);
        }
    }
}

impl ReadAt for SparseDev<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let err = IoError {
            offset,
            len: buf.len(),
        };
        let end = offset.checked_add(buf.len() as u64).ok_or(err)?;
        if end > self.len {
            return Err(err);
        }
        if !self.sparse {
            let s = usize::try_from(offset).map_err(|_| err)?;
            buf.copy_from_slice(self.input.get(s..s + buf.len()).ok_or(err)?);
            return Ok(());
        }
        buf.fill(0);
        self.records(|off, data| {
            let rec_end = off + data.len() as u64;
            let lo = off.max(offset);
            let hi = rec_end.min(end);
            if lo < hi {
                let src = &data[(lo - off) as usize..(hi - off) as usize];
                buf[(lo - offset) as usize..(hi - offset) as usize].copy_from_slice(src);
            }
        });
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}
