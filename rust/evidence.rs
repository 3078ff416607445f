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

/// Probes the device behind `file`.
pub(crate) fn probe(file: &BdevFile) -> Result<Summary> {
    if file.size() < 512 {
        return Err(EINVAL);
    }
    let mut buf = KVec::from_elem(0u8, 512, GFP_KERNEL)?;
    file.read_sectors(0, &mut buf)?;
    Ok(Summary {
        fs: "unknown",
        verdict: Verdict::Unsupported,
        sleeping_os: false,
        text: Text::new(),
        remedy: "",
    })
}
