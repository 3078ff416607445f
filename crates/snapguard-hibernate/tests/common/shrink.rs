//! Shrinking an image to the blocks a probe reads, in the `sparse` format
//! (shared by `examples/mkcorpus.rs` and `tests/corpus.rs`).

use snapguard_hibernate::{probe, sparse, IoError, ReadAt, SCRATCH_LEN};

struct Recorder<'a> {
    data: &'a [u8],
    ranges: Vec<(u64, usize)>,
}

impl ReadAt for Recorder<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let err = IoError {
            offset,
            len: buf.len(),
        };
        let s = usize::try_from(offset).map_err(|_| err)?;
        buf.copy_from_slice(self.data.get(s..s + buf.len()).ok_or(err)?);
        self.ranges.push((offset, buf.len()));
        Ok(())
    }
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

/// The sparse encoding of the bytes of `data` that a probe reads.
pub(crate) fn shrink(data: &[u8]) -> Vec<u8> {
    let mut rec = Recorder {
        data,
        ranges: vec![],
    };
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let _ = probe(&mut rec, &mut scratch);
    let mut out = sparse::MAGIC.to_vec();
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    rec.ranges.sort();
    rec.ranges.dedup();
    for (off, len) in rec.ranges {
        let mut o = off as usize;
        let end = o + len;
        while o < end {
            let n = (end - o).min(u16::MAX as usize);
            out.extend_from_slice(&(o as u32).to_le_bytes());
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.extend_from_slice(&data[o..o + n]);
            o += n;
        }
    }
    out
}
