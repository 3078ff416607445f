// SPDX-License-Identifier: GPL-2.0

//! Runs the shared hibernation detector on an open block device.

use crate::kbind::bdev::BdevFile;
use crate::kbind::text::Text;
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

/// The detector's view of an open block device.
struct DevReader<'a> {
    file: &'a BdevFile,
    size: u64,
}

impl ReadAt for DevReader<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let err = IoError { offset, len: buf.len() };
        let end = offset.checked_add(buf.len() as u64).ok_or(err)?;
        if end > self.size {
            return Err(err);
        }
        self.file.read_at(offset, buf).map_err(|_| err)
    }

    fn len(&self) -> u64 {
        self.size
    }
}

/// Probes the device behind `file` with the shared detector.
pub(crate) fn probe(file: &BdevFile) -> Result<Summary> {
    let mut r = DevReader { file, size: file.size() };
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
