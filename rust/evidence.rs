// SPDX-License-Identifier: GPL-2.0

//! Runs the shared hibernation detector on an open block device.

use crate::bdev::BdevFile;
use crate::text::Text;
use kernel::prelude::*;

pub(crate) use crate::hibernate::Verdict;
use crate::hibernate::{self, IoError, ReadAt};
use core::fmt::Write;

/// What the guard keeps of one probe.
#[derive(Clone)]
pub(crate) struct Summary {
    /// File system kind (`ntfs`, `fat32`, `swap`...).
    pub(crate) fs: &'static str,
    /// Verdict.
    pub(crate) verdict: Verdict,
    /// Whether the evidence says a sleeping OS owns this device.
    pub(crate) sleeping_os: bool,
    /// The evidence, one item after the other with byte offsets.
    pub(crate) text: Text<384>,
    /// What the user should do.
    pub(crate) remedy: &'static str,
}

/// Byte-granular reads over a block device, through a kmalloc'ed bounce
/// buffer (the block layer reads whole 512-byte sectors).
struct DevReader<'a> {
    file: &'a BdevFile,
    size: u64,
    bounce: KVec<u8>,
}

/// Bounce buffer size: the largest single device read.
const BOUNCE: usize = 64 * 1024;

impl<'a> DevReader<'a> {
    fn new(file: &'a BdevFile) -> Result<Self> {
        Ok(DevReader { file, size: file.size(), bounce: KVec::from_elem(0u8, BOUNCE, GFP_KERNEL)? })
    }

    /// Reads `buf.len()` bytes at byte `offset`; fails past the end.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result {
        let len = u64::try_from(buf.len()).map_err(|_| EINVAL)?;
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.size {
            return Err(EINVAL);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let sector = pos / 512;
            let skip = (pos % 512) as usize;
            let want = (buf.len() - done + skip).min(BOUNCE);
            // Whole sectors, not past the device end.
            let mut span = want.div_ceil(512) * 512;
            let dev_left = self.size.saturating_sub(sector * 512);
            if (span as u64) > dev_left {
                span = (dev_left / 512 * 512) as usize;
            }
            if span <= skip {
                return Err(EIO);
            }
            self.bounce.resize(span, 0, GFP_KERNEL)?;
            self.file.read_sectors(sector, &mut self.bounce)?;
            let n = (span - skip).min(buf.len() - done);
            let src = self.bounce.get(skip..skip + n).ok_or(EIO)?;
            buf.get_mut(done..done + n).ok_or(EIO)?.copy_from_slice(src);
            done += n;
        }
        Ok(())
    }
}

impl ReadAt for DevReader<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        DevReader::read_at(self, offset, buf).map_err(|_| IoError { offset, len: buf.len() })
    }

    fn len(&self) -> u64 {
        self.size
    }
}

/// Probes the device behind `file` with the shared detector.
pub(crate) fn probe(file: &BdevFile) -> Result<Summary> {
    let mut r = DevReader::new(file)?;
    let mut scratch = KVec::from_elem(0u8, hibernate::SCRATCH_LEN, GFP_KERNEL)?;
    let rep = match hibernate::probe(&mut r, &mut scratch) {
        Ok(rep) => rep,
        Err(hibernate::ProbeError::Io(_)) => return Err(EIO),
        Err(hibernate::ProbeError::ScratchTooSmall) => return Err(EINVAL),
    };
    let mut text = Text::new();
    for (i, e) in rep.evidence().iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let _ = write!(text, "{sep}{} at {:#x}: {}", e.kind().as_str(), e.offset(), e.detail());
    }
    Ok(Summary {
        fs: rep.fs().as_str(),
        verdict: rep.verdict(),
        sleeping_os: rep.sleeping_os(),
        text,
        remedy: rep.remedy(),
    })
}
