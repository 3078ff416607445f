//! Snapshot pool metadata core: crash-consistent, shared-extent pointer
//! tables ("virtual track directories") for the snapguard device-mapper
//! target pair, in `no_std` Rust without `alloc`.
//!
//! A pool maps, for each volume, virtual extents (`vext`) to physical
//! extents (`pext`) of a data device. The metadata lives on a separate
//! metadata device in 4 KiB blocks and is updated copy-on-write in
//! transactions: nothing reachable from the last committed superblock is
//! ever overwritten, so a crash at any point leaves the last committed
//! transaction intact. The on-disk format, the commit protocol, the cache
//! and the concurrency rules are described in `Documentation/pool-format.rst`.
//!
//! Memory is provided by the caller: [`Pool::format`] and [`Pool::open`]
//! take a `&mut [CacheSlot]` arena (the kernel allocates it with `vmalloc`,
//! userspace with a `Vec`), which bounds the in-core state. No other memory
//! is allocated; stack frames are small.
//!
//! Error semantics: errors that stem from the request or from the pool
//! being full ([`Error::Invalid`], [`Error::NotFound`], [`Error::Exists`],
//! [`Error::NoSpace`], [`Error::NoMetadataSpace`], [`Error::Busy`]) are
//! detected before anything changes, so the failed operation has no effect
//! and the open transaction stays usable. An [`Error::Io`] or
//! [`Error::Corrupt`] met while an operation was changing metadata aborts
//! the open transaction: the pool returns to the last committed state, as
//! after a crash.

// No panics on any input: no overflowing arithmetic, no slice indexing.
#![deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

mod block;
mod cache;
mod check;
mod crc;
mod geom;
mod ops;
mod read;
mod sm;
mod tree;

pub use cache::CacheSlot;
pub use check::{CheckReport, Problem, ProblemKind, MAX_PROBLEMS};
pub use crc::crc32c;

use cache::{Cache, RESERVED, SLOT_COM, SLOT_PENDING, SLOT_WORK};
use geom::{decode_sb, encode_sb, Geometry, SbVars};

/// Size of a metadata block.
pub const BLOCK_SIZE: usize = 4096;
/// On-disk format version written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// Smallest cache arena accepted (slots, including 3 pinned ones).
pub const MIN_CACHE_SLOTS: usize = 24;
/// Smallest extent size (bytes).
pub const MIN_EXTENT_SIZE: u64 = 4096;
/// Largest extent size (bytes).
pub const MAX_EXTENT_SIZE: u64 = 1 << 30;
/// Default extent size (bytes).
pub const DEFAULT_EXTENT_SIZE: u64 = 64 << 10;
/// Largest number of data extents (physical extents are stored in 48 bits).
pub const MAX_DATA_EXTENTS: u64 = (1 << 48) - 2;
/// Largest volume size in extents.
pub const MAX_VOLUME_EXTENTS: u64 = 1 << 48;
/// Default maximum number of volumes (volume ids are `0..max_volumes`).
pub const DEFAULT_MAX_VOLUMES: u32 = 1 << 16;
/// Largest `max_volumes` accepted at format time.
pub const MAX_VOLUMES_LIMIT: u32 = 1 << 24;
/// Largest number of operations in one consistency group.
pub const MAX_GROUP_OPS: usize = 64;
/// Largest number of prepared, not yet completed sharing breaks.
pub const MAX_PENDING_BREAKS: usize = BLOCK_SIZE / 32;

/// Errors; each maps to one kernel errno ([`Error::to_errno`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No free data extent (`ENOSPC`).
    NoSpace,
    /// No free metadata block (`ENOSPC`).
    NoMetadataSpace,
    /// Metadata failed a checksum or consistency check (`EUCLEAN`).
    Corrupt,
    /// Invalid argument (`EINVAL`).
    Invalid,
    /// No such volume, mapping or pending break (`ENOENT`).
    NotFound,
    /// The volume or mapping already exists (`EEXIST`).
    Exists,
    /// The metadata device failed (`EIO`).
    Io,
    /// The answer needs metadata I/O; retry from a context that may sleep
    /// (`EWOULDBLOCK`).
    WouldBlock,
    /// Resource temporarily busy: too many pending breaks, a conflicting
    /// pending break, or a cache too small for the operation (`EBUSY`).
    Busy,
}

impl Error {
    /// The positive kernel errno for this error.
    pub fn to_errno(&self) -> i32 {
        match self {
            Error::NoSpace | Error::NoMetadataSpace => 28,
            Error::Corrupt => 117,
            Error::Invalid => 22,
            Error::NotFound => 2,
            Error::Exists => 17,
            Error::Io => 5,
            Error::WouldBlock => 11,
            Error::Busy => 16,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            Error::NoSpace => "out of data space",
            Error::NoMetadataSpace => "out of metadata space",
            Error::Corrupt => "metadata corrupt",
            Error::Invalid => "invalid argument",
            Error::NotFound => "not found",
            Error::Exists => "already exists",
            Error::Io => "metadata I/O error",
            Error::WouldBlock => "would block",
            Error::Busy => "busy",
        };
        f.write_str(s)
    }
}

/// Block I/O on the metadata device.
///
/// Writes may reach the medium in any order until [`MetaDevice::flush`]
/// returns; a read returns the last data written to that block.
pub trait MetaDevice {
    /// Reads block `nr`.
    fn read_block(&mut self, nr: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Error>;
    /// Writes block `nr`.
    fn write_block(&mut self, nr: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Error>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), Error>;
    /// Size of the device in blocks.
    fn nr_blocks(&self) -> u64;
}

/// Parameters of [`Pool::format`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatParams {
    /// Extent size in bytes: a power of two from 4 KiB to 1 GiB.
    pub extent_size: u64,
    /// Number of extents of the data device.
    pub data_extents: u64,
    /// Metadata blocks to use; 0 means the whole metadata device.
    pub meta_blocks: u64,
    /// Volume ids are `0..max_volumes`.
    pub max_volumes: u32,
}

impl FormatParams {
    /// Defaults (64 KiB extents, whole device, 65536 volumes) for a data
    /// device of `data_extents` extents.
    pub fn new(data_extents: u64) -> Self {
        FormatParams {
            extent_size: DEFAULT_EXTENT_SIZE,
            data_extents,
            meta_blocks: 0,
            max_volumes: DEFAULT_MAX_VOLUMES,
        }
    }
}

/// Result of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// Nothing is mapped: reads return zeroes, writes need [`Pool::provision`].
    Unmapped,
    /// Mapped to physical extent `pext`.
    Mapped {
        /// The physical extent.
        pext: u64,
        /// Another volume (or another extent) sees the same physical
        /// extent: a write must first break the sharing.
        shared: bool,
    },
}

/// A prepared sharing break ([`Pool::prepare_break`]): the caller copies
/// extent `old` to `new`, then calls [`Pool::complete_break`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakPlan {
    /// The volume.
    pub volume: u32,
    /// The virtual extent.
    pub vext: u64,
    /// The physical extent mapped now.
    pub old: u64,
    /// The physical extent to copy to; equal to `old` when the extent was
    /// not shared (nothing to do: write in place).
    pub new: u64,
}

/// A volume as listed by [`Pool::volume`] and [`Pool::next_volume`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Volume id.
    pub id: u32,
    /// Size in extents.
    pub size: u64,
    /// Background-copy cursor: extents below it have been un-shared.
    pub bg_cursor: u64,
    /// Extents un-shared by the background copy so far.
    pub bg_done: u64,
}

/// Background copy progress ([`Pool::bg_progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BgProgress {
    /// Extents below `cursor` have been handled.
    pub cursor: u64,
    /// Extents un-shared so far.
    pub done: u64,
    /// Shared extents at or after the cursor (still to do).
    pub remaining: u64,
}

/// Pool-wide figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Generation of the last commit.
    pub generation: u64,
    /// Extent size in bytes.
    pub extent_size: u64,
    /// Data extents.
    pub data_extents: u64,
    /// Free data extents (open transaction).
    pub data_free: u64,
    /// Metadata blocks.
    pub meta_blocks: u64,
    /// Free metadata blocks (open transaction).
    pub meta_free: u64,
    /// Metadata blocks of the fixed area (superblocks and space maps).
    pub meta_fixed: u64,
    /// Volumes.
    pub volumes: u64,
    /// Maximum number of volumes.
    pub max_volumes: u32,
    /// Prepared, not completed sharing breaks.
    pub pending_breaks: usize,
    /// Dirty blocks in the cache.
    pub dirty_blocks: usize,
    /// Blocks read from the device since open.
    pub blocks_read: u64,
    /// Blocks written to the device since open.
    pub blocks_written: u64,
}

/// One operation of a consistency group ([`Pool::apply_group`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupOp {
    /// Create volume `dst` as a snapshot of `src`.
    Snapshot {
        /// Source volume.
        src: u32,
        /// New volume.
        dst: u32,
    },
    /// Share `len` extents of `src` at `src_vext` into `dst` at `dst_vext`.
    Copy {
        /// Source volume.
        src: u32,
        /// First source extent.
        src_vext: u64,
        /// Destination volume.
        dst: u32,
        /// First destination extent.
        dst_vext: u64,
        /// Number of extents.
        len: u64,
    },
}

/// A snapshot pool: metadata device, cache and open transaction.
///
/// Every `&mut self` method needs exclusive access; [`Pool::lookup_cached`]
/// and [`Pool::stats`] take `&self` and may run concurrently with each
/// other (e.g. under the read side of a lock), never with a `&mut self`
/// method.
pub struct Pool<'a, D: MetaDevice> {
    dev: D,
    cache: Cache<'a>,
    geo: Geometry,
    /// Open transaction.
    work: SbVars,
    /// Last commit.
    com: SbVars,
    /// Blocks/extents freed in the open transaction that the last commit
    /// still uses (not reusable before the next commit).
    pend_meta_free: u64,
    pend_data_free: u64,
    /// Metadata blocks reserved for completing pending breaks.
    meta_reserved: u64,
    npending: usize,
    dirty: bool,
    failed: bool,
}

impl<'a, D: MetaDevice> Pool<'a, D> {
    /// Formats `dev` as an empty pool and opens it.
    pub fn format(mut dev: D, slots: &'a mut [CacheSlot], p: FormatParams) -> Result<Self, Error> {
        if !p.extent_size.is_power_of_two()
            || p.extent_size < MIN_EXTENT_SIZE
            || p.extent_size > MAX_EXTENT_SIZE
        {
            return Err(Error::Invalid);
        }
        let shift = p.extent_size.trailing_zeros();
        let dev_blocks = dev.nr_blocks();
        let meta_blocks = if p.meta_blocks == 0 {
            dev_blocks
        } else {
            p.meta_blocks
        };
        if meta_blocks > dev_blocks {
            return Err(Error::Invalid);
        }
        let geo = Geometry::new(shift, p.data_extents, meta_blocks, p.max_volumes)?;
        {
            let mut cache = Cache::new(&mut *slots)?;
            sm::format_maps(&mut cache, &mut dev, &geo)?;
            let vars = SbVars {
                gen: 1,
                dir_root: 0,
                data_free: geo.data_extents,
                meta_free: geo.meta_blocks.saturating_sub(geo.first_dyn),
                data_hint: 0,
                meta_hint: geo.first_dyn,
                volumes: 0,
            };
            {
                let b = cache.buf_mut(SLOT_WORK)?;
                b.fill(0);
                encode_sb(b, &geo, &vars)?;
                block::seal(b);
            }
            dev.write_block(1, cache.buf(SLOT_WORK)?)?;
            dev.flush()?;
        }
        Self::open(dev, slots)
    }

    /// Opens a pool: picks the valid superblock with the highest
    /// generation. Anything a crashed transaction wrote is ignored.
    pub fn open(mut dev: D, slots: &'a mut [CacheSlot]) -> Result<Self, Error> {
        let mut cache = Cache::new(slots)?;
        let dev_blocks = dev.nr_blocks();
        let mut best: Option<(Geometry, SbVars, usize)> = None;
        for (nr, slot) in [(0u64, SLOT_WORK), (1u64, SLOT_COM)] {
            let b = cache.buf_mut(slot)?;
            if dev.read_block(nr, b).is_err() {
                continue;
            }
            if let Ok((g, v)) = decode_sb(b, nr, dev_blocks) {
                let better = match &best {
                    Some((_, bv, _)) => v.gen > bv.gen,
                    None => true,
                };
                if better {
                    best = Some((g, v, slot));
                }
            }
        }
        let (geo, vars, slot) = best.ok_or(Error::Corrupt)?;
        if slot == SLOT_WORK {
            cache.copy(SLOT_WORK, SLOT_COM)?;
        } else {
            cache.copy(SLOT_COM, SLOT_WORK)?;
        }
        cache.buf_mut(SLOT_PENDING)?.fill(0);
        let mut work = vars;
        if work.data_hint >= geo.data_extents {
            work.data_hint = 0;
        }
        if work.meta_hint >= geo.meta_blocks || work.meta_hint < geo.first_dyn {
            work.meta_hint = geo.first_dyn;
        }
        Ok(Pool {
            dev,
            cache,
            geo,
            work,
            com: vars,
            pend_meta_free: 0,
            pend_data_free: 0,
            meta_reserved: 0,
            npending: 0,
            dirty: false,
            failed: false,
        })
    }

    /// Closes the pool without committing and returns the device.
    pub fn into_device(self) -> D {
        self.dev
    }

    /// Closes the pool without committing and returns the device and the
    /// cache arena (e.g. to reopen).
    pub fn into_parts(self) -> (D, &'a mut [CacheSlot]) {
        (self.dev, self.cache.into_slots())
    }

    /// The metadata device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Generation of the open transaction (last commit + 1).
    fn gen(&self) -> u64 {
        self.com.gen.saturating_add(1)
    }

    /// Pool-wide figures.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            generation: self.com.gen,
            extent_size: 1u64 << self.geo.extent_shift,
            data_extents: self.geo.data_extents,
            data_free: self.work.data_free,
            meta_blocks: self.geo.meta_blocks,
            meta_free: self.work.meta_free,
            meta_fixed: self.geo.first_dyn,
            volumes: self.work.volumes,
            max_volumes: self.geo.max_volumes,
            pending_breaks: self.npending,
            dirty_blocks: self.cache.dirty_count(),
            blocks_read: self.cache.reads,
            blocks_written: self.cache.writes,
        }
    }

    /// Whether the open transaction has changes not yet committed.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    fn check_usable(&self) -> Result<(), Error> {
        if self.failed {
            Err(Error::Io)
        } else {
            Ok(())
        }
    }

    /// Runs a mutation; an error once it has started aborts the open
    /// transaction (see the module documentation).
    fn mutate<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        self.dirty = true;
        let r = f(self);
        if r.is_err() {
            self.abort();
        }
        r
    }

    /// Drops the open transaction: the pool returns to the last committed
    /// state. Pending breaks are forgotten (their plans become invalid).
    pub fn abort(&mut self) {
        self.cache.invalidate();
        let _ = self.cache.copy(SLOT_COM, SLOT_WORK);
        if let Ok(b) = self.cache.buf_mut(SLOT_PENDING) {
            b.fill(0);
        }
        self.work = self.com;
        self.pend_meta_free = 0;
        self.pend_data_free = 0;
        self.meta_reserved = 0;
        self.npending = 0;
        self.dirty = false;
    }

    /// Commits the open transaction: writes every new block, flushes,
    /// writes the superblock, flushes. When this returns `Ok` the
    /// transaction survives a crash. Extents of pending breaks are not
    /// part of the commit (they are free on disk until completed).
    ///
    /// An I/O error leaves the pool failed: every later call returns
    /// [`Error::Io`]; reopen the device to continue from whichever
    /// transaction reached the disk.
    pub fn commit(&mut self) -> Result<(), Error> {
        self.check_usable()?;
        if !self.dirty {
            return Ok(());
        }
        let r = self.commit_inner();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn commit_inner(&mut self) -> Result<(), Error> {
        // Pending breaks' new extents are not referenced yet: commit them free.
        self.pending_set_rc(0)?;
        self.cache.write_back_all(&mut self.dev)?;
        self.dev.flush()?;
        let gen = self.gen();
        let mut vars = self.work;
        vars.gen = gen;
        {
            let b = self.cache.buf_mut(SLOT_WORK)?;
            encode_sb(b, &self.geo, &vars)?;
            block::seal(b);
        }
        self.dev.write_block(gen % 2, self.cache.buf(SLOT_WORK)?)?;
        self.dev.flush()?;
        self.cache.copy(SLOT_WORK, SLOT_COM)?;
        self.work = vars;
        self.com = vars;
        self.pend_meta_free = 0;
        self.pend_data_free = 0;
        self.dirty = false;
        if self.npending > 0 {
            self.dirty = true;
            self.pending_set_rc(1)?;
        }
        Ok(())
    }

    /// Checks the whole pool (open transaction state; run it right after
    /// [`Pool::open`] or [`Pool::commit`] to check the committed state):
    /// checksums, tree shape and every reference count. `scratch` must
    /// hold at least `meta_blocks + 1` counters; more makes the data
    /// reference count pass take fewer walks (`meta_blocks + data_extents`
    /// needs one). Corruption is reported in the result, not as an error;
    /// errors are [`Error::Io`] and [`Error::Invalid`] (scratch too small).
    pub fn check(&mut self, scratch: &mut [u32]) -> Result<CheckReport, Error> {
        self.check_usable()?;
        check::run(self, scratch)
    }

    /// Number of scratch counters for a single-walk [`Pool::check`].
    pub fn check_scratch_len(&self) -> u64 {
        self.geo.meta_blocks.saturating_add(self.geo.data_extents)
    }

    fn loader(&mut self) -> read::Loader<'_, 'a, D> {
        read::Loader {
            cache: &mut self.cache,
            dev: &mut self.dev,
        }
    }
}

/// Number of slots the cache arena needs to keep `blocks` metadata blocks
/// cached (adds the pinned slots).
pub const fn cache_slots_for(blocks: usize) -> usize {
    let n = blocks.saturating_add(RESERVED);
    if n < MIN_CACHE_SLOTS {
        MIN_CACHE_SLOTS
    } else {
        n
    }
}
