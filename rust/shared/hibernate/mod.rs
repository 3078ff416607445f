// SPDX-License-Identifier: GPL-2.0

//! Hibernation evidence detector.
//!
//! Given a volume through [`ReadAt`], [`probe`] tells which file system it
//! holds ([`FsKind`]), what on-disk evidence says about who owns it
//! ([`Evidence`]) and a [`Verdict`]: is it safe to write, does a hibernated
//! OS own it, was it not cleanly unmounted, or is it unparseable.
//!
//! The code is `no_std` without `alloc`, has no `unsafe`, cannot panic on any
//! input, loops a bounded number of times, and reads at most [`MAX_READS`]
//! times and [`MAX_BYTES`] bytes per probe. Its buffers come from a caller
//! supplied scratch area of [`SCRATCH_LEN`] bytes. Layouts and sources are in
//! `Documentation/hibernation-evidence.rst`.

use core::fmt;

mod fat;
mod ntfs;
mod swap;
mod text;

pub use text::{Detail, DETAIL_LEN};

/// Bytes of scratch memory [`probe`] needs (the caller allocates them).
pub const SCRATCH_LEN: usize = 28 * 1024;
/// Most device reads one probe issues; past this the volume is `corrupt`.
pub const MAX_READS: u32 = 64;
/// Most bytes one probe reads; past this the volume is `corrupt`.
pub const MAX_BYTES: u64 = 256 * 1024;
/// Largest single read a probe issues.
pub const MAX_READ_LEN: usize = 8192;
/// Most evidence items a [`Report`] keeps (later ones are counted only).
pub const MAX_EVIDENCE: usize = 8;

/// A failed read of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError {
    /// Byte offset of the failed read.
    pub offset: u64,
    /// Length of the failed read.
    pub len: usize,
}

/// Random access to the bytes of a volume.
pub trait ReadAt {
    /// Fills all of `buf` from byte `offset`. A short read, or a read past
    /// [`ReadAt::len`], is an error.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Size of the volume in bytes.
    fn len(&self) -> u64;
    /// Whether the volume has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A [`ReadAt`] over bytes in memory (tests, fuzzing, tools).
#[derive(Clone, Copy, Debug)]
pub struct SliceDev<'a>(pub &'a [u8]);

impl ReadAt for SliceDev<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let err = IoError {
            offset,
            len: buf.len(),
        };
        let start = usize::try_from(offset).map_err(|_| err)?;
        let end = start.checked_add(buf.len()).ok_or(err)?;
        let src = self.0.get(start..end).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn len(&self) -> u64 {
        u64::try_from(self.0.len()).unwrap_or(u64::MAX)
    }
}

/// The kind of file system (or swap area) found on a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    /// NTFS.
    Ntfs,
    /// FAT with 12-bit entries.
    Fat12,
    /// FAT with 16-bit entries.
    Fat16,
    /// FAT32.
    Fat32,
    /// exFAT.
    Exfat,
    /// A Linux swap area (possibly holding a hibernation image).
    Swap,
    /// Nothing snapguard knows.
    Unknown,
}

impl FsKind {
    /// Lower-case name: `ntfs`, `fat12`, `fat16`, `fat32`, `exfat`, `swap`,
    /// `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            FsKind::Ntfs => "ntfs",
            FsKind::Fat12 => "fat12",
            FsKind::Fat16 => "fat16",
            FsKind::Fat32 => "fat32",
            FsKind::Exfat => "exfat",
            FsKind::Swap => "swap",
            FsKind::Unknown => "unknown",
        }
    }
}

/// What the evidence on a volume adds up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// A known file system that was cleanly unmounted: safe to write.
    Clean,
    /// Not a file system snapguard knows.
    Unsupported,
    /// Not cleanly unmounted (dirty flags, unclean journal).
    Unclean,
    /// Claims to be a known file system but cannot be parsed.
    Corrupt,
    /// A hibernated (sleeping) OS owns the volume.
    Hibernated,
}

impl Verdict {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Unsupported => "unsupported",
            Verdict::Unclean => "unclean",
            Verdict::Corrupt => "corrupt",
            Verdict::Hibernated => "hibernated",
        }
    }

    /// Whether writing to the volume is safe as far as the detector knows
    /// (`clean` or `unsupported`).
    pub fn is_safe(self) -> bool {
        matches!(self, Verdict::Clean | Verdict::Unsupported)
    }
}

/// The kind of one piece of evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvidenceKind {
    /// Informational: how the volume looks, no concern.
    Info,
    /// NTFS `hiberfil.sys` header `hibr`/`HIBR`: a live hibernation image.
    HiberfileLive,
    /// NTFS `hiberfil.sys` header `RSTR`: a resume from it started.
    HiberfileResuming,
    /// NTFS `hiberfil.sys` shorter than 4 KiB: Windows hibernated with this
    /// volume mounted (not its system volume).
    HiberfileShort,
    /// NTFS `hiberfil.sys` with a non-zero header of no known kind.
    HiberfileUnknown,
    /// NTFS `hiberfil.sys` header `wake`/`WAKE` or zero: a spent image.
    HiberfileSpent,
    /// NTFS `$LogFile` restart page of version 2.0 (Windows Fast Startup).
    LogFileFastStartup,
    /// NTFS `$LogFile` with a client in use and no clean flag.
    LogFileUnclean,
    /// NTFS `$Volume` flag VOLUME_IS_DIRTY.
    NtfsVolumeDirty,
    /// FAT boot-sector dirty flag.
    FatDirty,
    /// FAT entry 1 clean-shutdown bit clear.
    FatUncleanShutdown,
    /// FAT entry 1 hard-error bit clear (I/O errors were seen).
    FatHardError,
    /// exFAT VolumeFlags VolumeDirty.
    ExfatDirty,
    /// exFAT VolumeFlags MediaFailure.
    ExfatMediaFailure,
    /// A Linux hibernation signature in a swap area.
    SwapHibernation,
    /// A structure that should be there could not be parsed.
    Malformed,
}

impl EvidenceKind {
    /// Lower-case name for machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Info => "info",
            EvidenceKind::HiberfileLive => "hiberfil_live",
            EvidenceKind::HiberfileResuming => "hiberfil_resuming",
            EvidenceKind::HiberfileShort => "hiberfil_short",
            EvidenceKind::HiberfileUnknown => "hiberfil_unknown",
            EvidenceKind::HiberfileSpent => "hiberfil_spent",
            EvidenceKind::LogFileFastStartup => "logfile_fast_startup",
            EvidenceKind::LogFileUnclean => "logfile_unclean",
            EvidenceKind::NtfsVolumeDirty => "ntfs_volume_dirty",
            EvidenceKind::FatDirty => "fat_dirty",
            EvidenceKind::FatUncleanShutdown => "fat_unclean_shutdown",
            EvidenceKind::FatHardError => "fat_hard_error",
            EvidenceKind::ExfatDirty => "exfat_dirty",
            EvidenceKind::ExfatMediaFailure => "exfat_media_failure",
            EvidenceKind::SwapHibernation => "swap_hibernation",
            EvidenceKind::Malformed => "malformed",
        }
    }

    /// The verdict this evidence alone leads to.
    pub fn verdict(self) -> Verdict {
        match self {
            EvidenceKind::Info | EvidenceKind::HiberfileSpent => Verdict::Clean,
            EvidenceKind::HiberfileLive
            | EvidenceKind::HiberfileResuming
            | EvidenceKind::HiberfileShort
            | EvidenceKind::HiberfileUnknown
            | EvidenceKind::LogFileFastStartup
            | EvidenceKind::SwapHibernation => Verdict::Hibernated,
            EvidenceKind::LogFileUnclean
            | EvidenceKind::NtfsVolumeDirty
            | EvidenceKind::FatDirty
            | EvidenceKind::FatUncleanShutdown
            | EvidenceKind::FatHardError
            | EvidenceKind::ExfatDirty
            | EvidenceKind::ExfatMediaFailure => Verdict::Unclean,
            EvidenceKind::Malformed => Verdict::Corrupt,
        }
    }

    /// Whether this evidence means a sleeping OS holds state for the whole
    /// device (its RAM image caches this volume), as opposed to only this
    /// volume being dirty.
    pub fn sleeping_os(self) -> bool {
        self.verdict() == Verdict::Hibernated
    }
}

/// One piece of evidence: what, where, and a human description.
#[derive(Clone, Debug)]
pub struct Evidence {
    kind: EvidenceKind,
    offset: u64,
    detail: Detail,
}

impl Evidence {
    /// What kind of evidence this is.
    pub fn kind(&self) -> EvidenceKind {
        self.kind
    }

    /// Byte offset on the volume where it was found.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Human-readable description.
    pub fn detail(&self) -> &str {
        self.detail.as_str()
    }
}

const EMPTY_EVIDENCE: Evidence = Evidence {
    kind: EvidenceKind::Info,
    offset: 0,
    detail: Detail::new(),
};

/// The outcome of one probe.
#[derive(Clone, Debug)]
pub struct Report {
    fs: FsKind,
    verdict: Verdict,
    sleeping_os: bool,
    items: [Evidence; MAX_EVIDENCE],
    count: usize,
    dropped: u32,
    reads: u32,
    bytes: u64,
}

impl Report {
    fn new() -> Self {
        Report {
            fs: FsKind::Unknown,
            verdict: Verdict::Clean,
            sleeping_os: false,
            items: [EMPTY_EVIDENCE; MAX_EVIDENCE],
            count: 0,
            dropped: 0,
            reads: 0,
            bytes: 0,
        }
    }

    /// File system kind found.
    pub fn fs(&self) -> FsKind {
        self.fs
    }

    /// The verdict: the gravest of all evidence.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Whether the evidence says a sleeping OS owns this device (a live or
    /// resuming Windows hibernation image, a Fast Startup `$LogFile`, a
    /// Linux hibernation image in a swap area), which a machine-wide policy
    /// can extend to the other volumes it may have had mounted.
    pub fn sleeping_os(&self) -> bool {
        self.sleeping_os
    }

    /// The evidence kept, in the order found.
    pub fn evidence(&self) -> &[Evidence] {
        self.items.get(..self.count).unwrap_or(&[])
    }

    /// Evidence items found but not kept (past [`MAX_EVIDENCE`]).
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Device reads the probe issued.
    pub fn reads(&self) -> u32 {
        self.reads
    }

    /// Bytes the probe read.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// What the user should do about the verdict.
    pub fn remedy(&self) -> &'static str {
        match (self.verdict, self.fs) {
            (Verdict::Clean, _) | (Verdict::Unsupported, _) => "none needed",
            (Verdict::Hibernated, FsKind::Swap) => {
                "boot the Linux system that hibernated into this swap area and let it resume (or \
                 discard its image with mkswap if it is not wanted); until then mount the volumes \
                 it used read-only"
            }
            (Verdict::Hibernated, _) => {
                "resume Windows and shut it down fully, with Fast Startup off (powercfg /h off), \
                 or mount read-only"
            }
            (Verdict::Unclean, FsKind::Ntfs) => {
                "boot Windows and let it check the volume (chkdsk), or mount read-only"
            }
            (Verdict::Unclean, _) => {
                "check it with fsck.fat/fsck.exfat (or let Windows check it), or mount read-only"
            }
            (Verdict::Corrupt, _) => {
                "do not write to it: check it with the file system's repair tool, or mount read-only"
            }
        }
    }

    fn push(&mut self, kind: EvidenceKind, offset: u64, args: fmt::Arguments<'_>) {
        self.verdict = self.verdict.max(kind.verdict());
        self.sleeping_os |= kind.sleeping_os();
        match self.items.get_mut(self.count) {
            Some(slot) => {
                let mut detail = Detail::new();
                let _ = fmt::write(&mut detail, args);
                *slot = Evidence {
                    kind,
                    offset,
                    detail,
                };
                self.count = self.count.saturating_add(1);
            }
            None => self.dropped = self.dropped.saturating_add(1),
        }
    }
}

/// Why a probe gave no report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The device failed a read (within its size).
    Io(IoError),
    /// The scratch area is shorter than [`SCRATCH_LEN`].
    ScratchTooSmall,
}

/// Why a step of a probe stopped early.
#[derive(Debug)]
enum Halt {
    /// The device failed: the whole probe fails.
    Io(IoError),
    /// Something did not parse; a `Malformed` evidence item says what.
    Malformed,
}

type Res<T> = Result<T, Halt>;

/// Device access with the per-probe budget, and the report being built.
struct Ctx<'a, R: ReadAt + ?Sized> {
    dev: &'a mut R,
    len: u64,
    rep: Report,
    budget_hit: bool,
}

impl<R: ReadAt + ?Sized> Ctx<'_, R> {
    /// Reads `buf.len()` bytes at `offset`; out-of-range reads and an
    /// exhausted budget are evidence of a malformed volume.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Res<()> {
        let n = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        let end = offset.checked_add(n);
        let dev = self.len;
        if end.is_none_or(|e| e > dev) {
            return Err(self.malformed(
                offset,
                format_args!("structure at byte {offset} (+{n}) lies past the end of the device ({dev} bytes)"),
            ));
        }
        if buf.len() > MAX_READ_LEN
            || self.rep.reads >= MAX_READS
            || self.rep.bytes.saturating_add(n) > MAX_BYTES
        {
            if !self.budget_hit {
                self.budget_hit = true;
                return Err(self.malformed(
                    offset,
                    format_args!("read budget exhausted ({MAX_READS} reads, {MAX_BYTES} bytes)"),
                ));
            }
            return Err(Halt::Malformed);
        }
        self.rep.reads = self.rep.reads.saturating_add(1);
        self.rep.bytes = self.rep.bytes.saturating_add(n);
        self.dev.read_at(offset, buf).map_err(Halt::Io)
    }

    fn note(&mut self, kind: EvidenceKind, offset: u64, args: fmt::Arguments<'_>) {
        self.rep.push(kind, offset, args);
    }

    fn malformed(&mut self, offset: u64, args: fmt::Arguments<'_>) -> Halt {
        self.rep.push(EvidenceKind::Malformed, offset, args);
        Halt::Malformed
    }
}

/// Little-endian field readers that return 0 past the end of a buffer
/// (callers check lengths first where a missing field matters).
pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    match b
        .get(off..)
        .and_then(|s| s.get(..2))
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
    {
        Some(a) => u16::from_le_bytes(a),
        None => 0,
    }
}

pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    match b
        .get(off..)
        .and_then(|s| s.get(..4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
    {
        Some(a) => u32::from_le_bytes(a),
        None => 0,
    }
}

pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    match b
        .get(off..)
        .and_then(|s| s.get(..8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
    {
        Some(a) => u64::from_le_bytes(a),
        None => 0,
    }
}

pub(crate) fn byte(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Whether `b` has `pat` at `off`.
pub(crate) fn has(b: &[u8], off: usize, pat: &[u8]) -> bool {
    off.checked_add(pat.len()).and_then(|end| b.get(off..end)) == Some(pat)
}

/// Probes the volume behind `dev`, using `scratch` (at least
/// [`SCRATCH_LEN`] bytes) for its buffers.
///
/// Reads at most [`MAX_READS`] times and [`MAX_BYTES`] bytes, each read at
/// most [`MAX_READ_LEN`] bytes. Only a failing device read (within the
/// device's size) is an error; anything unparseable is a `corrupt` report.
pub fn probe<R: ReadAt + ?Sized>(dev: &mut R, scratch: &mut [u8]) -> Result<Report, ProbeError> {
    let scratch = scratch
        .get_mut(..SCRATCH_LEN)
        .ok_or(ProbeError::ScratchTooSmall)?;
    let len = dev.len();
    let mut ctx = Ctx {
        dev,
        len,
        rep: Report::new(),
        budget_hit: false,
    };
    match probe_inner(&mut ctx, scratch) {
        Ok(()) | Err(Halt::Malformed) => {}
        Err(Halt::Io(e)) => return Err(ProbeError::Io(e)),
    }
    let mut rep = ctx.rep;
    if rep.fs == FsKind::Unknown && rep.verdict == Verdict::Clean {
        rep.verdict = Verdict::Unsupported;
    }
    Ok(rep)
}

/// Bytes of the volume's start read at once: the boot sector of every
/// file system here and the swap signature for 4 KiB pages.
const HEAD_LEN: usize = 4096;

fn probe_inner<R: ReadAt + ?Sized>(ctx: &mut Ctx<'_, R>, scratch: &mut [u8]) -> Res<()> {
    let (head, rest) = scratch.split_at_mut(HEAD_LEN);
    let n = usize::try_from(ctx.len.min(HEAD_LEN as u64)).unwrap_or(0);
    if n < 512 {
        let dev = ctx.len;
        ctx.note(
            EvidenceKind::Info,
            0,
            format_args!("device of {dev} bytes is too small for any known file system"),
        );
        return Ok(());
    }
    let head = head.get_mut(..n).ok_or(Halt::Malformed)?;
    ctx.read(0, head)?;
    let head: &[u8] = head;
    if ntfs::is_ntfs(head) {
        ctx.rep.fs = FsKind::Ntfs;
        return ntfs::probe(ctx, head, rest);
    }
    if fat::is_exfat(head) {
        ctx.rep.fs = FsKind::Exfat;
        return fat::probe_exfat(ctx, head);
    }
    if fat::looks_fat(head) {
        return fat::probe_fat(ctx, head);
    }
    if fat::looks_dos1x(head, ctx.len) {
        ctx.rep.fs = FsKind::Fat12;
        ctx.note(
            EvidenceKind::Info,
            0,
            format_args!("DOS 1.x floppy without a BPB (vfat mounts it with -o dos1xfloppy, reading no dirty state): nothing to check"),
        );
        return Ok(());
    }
    swap::probe(ctx, head)?;
    if ctx.rep.fs == FsKind::Unknown {
        // ntfs3 mounts a volume whose primary boot sector is damaged from
        // the backup one at the end of the device.
        return ntfs::probe_backup(ctx, rest);
    }
    Ok(())
}
