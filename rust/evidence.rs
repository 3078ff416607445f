// SPDX-License-Identifier: GPL-2.0

//! Runs the shared hibernation detector on an open block device.

use crate::bdev::BdevFile;
use crate::text::Text;
use kernel::prelude::*;

/// The detector's verdict on a volume.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(dead_code)] // TEMP until the detector is wired
pub(crate) enum Verdict {
    /// Safe to write.
    Clean,
    /// A sleeping OS owns it.
    Hibernated,
    /// Not cleanly unmounted.
    Unclean,
    /// Claims a known file system but cannot be parsed.
    Corrupt,
    /// Not a file system snapguard knows.
    Unsupported,
}

impl Verdict {
    /// Lower-case name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Hibernated => "hibernated",
            Verdict::Unclean => "unclean",
            Verdict::Corrupt => "corrupt",
            Verdict::Unsupported => "unsupported",
        }
    }
}

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

/// Probes the device behind `file`.
pub(crate) fn probe(file: &BdevFile) -> Result<Summary> {
    let mut r = DevReader::new(file)?;
    let mut buf = [0u8; 16];
    r.read_at(3, &mut buf)?;
    Ok(Summary {
        fs: "unknown",
        verdict: Verdict::Unsupported,
        sleeping_os: false,
        text: Text::new(),
        remedy: "",
    })
}
