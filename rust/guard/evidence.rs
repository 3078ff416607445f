// SPDX-License-Identifier: GPL-2.0

//! Runs the shared hibernation detector on an open block device.

use crate::kbind::bdev::BdevFile;
use crate::kbind::text::Text;
use kernel::prelude::*;

pub(crate) use crate::hibernate::Verdict;
use crate::hibernate::{self, EvidenceKind, IoError, ReadAt};
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
    /// The evidence of concern (not the informational items), one item
    /// after the other with byte offsets.
    pub(crate) text: Text<384>,
    /// What the user should do.
    pub(crate) remedy: &'static str,
}

/// A read of the device that failed.
#[derive(Clone, Copy)]
pub(crate) struct ReadFailure {
    /// Byte offset and length of the read.
    pub(crate) offset: u64,
    pub(crate) len: usize,
    /// The kernel's error.
    pub(crate) err: Error,
}

/// One probe: its outcome and a digest of everything it read.
pub(crate) struct Probe {
    /// The summary, or the read that failed.
    pub(crate) outcome: core::result::Result<Summary, ReadFailure>,
    /// 64-bit FNV-1a over the offset, length and bytes of every read (and
    /// the offset of a failed one): two probes of unchanged contents give
    /// the same digest, since the detector's reads depend only on them.
    pub(crate) digest: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
    }
    h
}

/// The detector's view of an open block device.
struct DevReader<'a> {
    file: &'a BdevFile,
    size: u64,
    digest: u64,
    failed: Option<ReadFailure>,
}

impl ReadAt for DevReader<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let err = IoError { offset, len: buf.len() };
        let end = offset.checked_add(buf.len() as u64).ok_or(err)?;
        if end > self.size {
            return Err(err);
        }
        self.digest = fnv(self.digest, &offset.to_le_bytes());
        self.digest = fnv(self.digest, &(buf.len() as u64).to_le_bytes());
        match self.file.read_at(offset, buf) {
            Ok(()) => {
                self.digest = fnv(self.digest, buf);
                Ok(())
            }
            Err(e) => {
                self.digest = fnv(self.digest, b"EIO");
                self.failed = Some(ReadFailure { offset, len: buf.len(), err: e });
                Err(err)
            }
        }
    }

    fn len(&self) -> u64 {
        self.size
    }
}

/// Runs probes with one scratch buffer (28 KiB, allocated once).
pub(crate) struct Prober {
    scratch: KVec<u8>,
}

impl Prober {
    /// Allocates the scratch buffer.
    pub(crate) fn new() -> Result<Self> {
        Ok(Prober { scratch: KVec::from_elem(0u8, hibernate::SCRATCH_LEN, GFP_KERNEL)? })
    }

    /// Probes the device behind `file` with the shared detector, fresh
    /// (through the device's page cache; nothing is cached here).
    pub(crate) fn probe(&mut self, file: &BdevFile) -> Probe {
        let mut r = DevReader { file, size: file.size(), digest: FNV_OFFSET, failed: None };
        let rep = match hibernate::probe(&mut r, &mut self.scratch) {
            Ok(rep) => rep,
            Err(hibernate::ProbeError::Io(e)) => {
                let f = r.failed.unwrap_or(ReadFailure { offset: e.offset, len: e.len, err: EIO });
                return Probe { outcome: Err(f), digest: r.digest };
            }
            Err(hibernate::ProbeError::ScratchTooSmall) => {
                // Cannot happen: the scratch has SCRATCH_LEN bytes.
                let f = ReadFailure { offset: 0, len: 0, err: EINVAL };
                return Probe { outcome: Err(f), digest: r.digest };
            }
        };
        let mut text = Text::new();
        // Only what matters for the decision: informational items ("$LogFile
        // is empty ...: clean") are not reasons and stay out of the line.
        let concern = rep.evidence().iter().filter(|e| e.kind() != EvidenceKind::Info && e.kind().verdict() != Verdict::Clean);
        for (i, e) in concern.enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            let _ = write!(text, "{sep}{} at {:#x}: {}", e.kind().as_str(), e.offset(), e.detail());
        }
        Probe {
            outcome: Ok(Summary {
                fs: rep.fs().as_str(),
                verdict: rep.verdict(),
                sleeping_os: rep.sleeping_os(),
                text,
                remedy: rep.remedy(),
            }),
            digest: r.digest,
        }
    }
}

/// Probes the device behind `file` once; a failed read is its error.
pub(crate) fn probe(file: &BdevFile) -> Result<Summary> {
    Prober::new()?.probe(file).outcome.map_err(|f| f.err)
}
