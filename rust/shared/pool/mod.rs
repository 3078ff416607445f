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
//! [`Error::Corrupt`] met before an operation changed anything fails only
//! that operation; met after it changed something (or in a commit), it
//! puts the pool in the failed state ([`Pool::is_failed`]): the open
//! transaction is dropped, lookups answer the last commit, and every
//! change returns [`Error::Io`] until the device is reopened.

// No panics on any input: no overflowing arithmetic, no slice indexing.
#![deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

mod block;
mod cache;
mod check;
mod crc;
mod fast;
mod geom;
mod grow;
mod ops;
mod read;
mod sm;
mod tree;

pub use cache::CacheSlot;
pub use check::{CheckReport, Problem, ProblemKind, MAX_PROBLEMS};
pub use crc::crc32c;
pub use fast::{FastMap, FastSlot};
pub use ops::NO_OLD;

use cache::{Cache, RESERVED, SLOT_COM, SLOT_PENDING, SLOT_WORK};
use geom::{decode_sb, encode_sb, Geometry, SbVars, SB_NEEDS_CHECK};

/// Size of a metadata block.
pub const BLOCK_SIZE: usize = 4096;
/// On-disk format version written by this code.
pub const FORMAT_VERSION: u32 = 3;
/// Most growth extensions a pool can have: each [`Pool::grow`] beyond the
/// capacities adds one.
pub const MAX_GROWTH_EXTENSIONS: usize = geom::MAX_EXT;
/// Smallest cache arena accepted (slots, including the pinned ones).
pub const MIN_CACHE_SLOTS: usize = 28;
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
/// Largest number of prepared, not yet completed sharing breaks (the
/// table fills 4 pinned cache slots).
pub const MAX_PENDING_BREAKS: usize = cache::PENDING_SLOTS * (BLOCK_SIZE / PENDING_ENTRY);
/// Largest number of pending breaks of one volume: half the table, so one
/// busy volume (e.g. a background copy plus its writes) cannot starve the
/// others.
pub const MAX_PENDING_PER_VOLUME: usize = MAX_PENDING_BREAKS / 2;
/// Size of one pending-break table entry.
pub(crate) const PENDING_ENTRY: usize = 48;
/// Metadata blocks kept back for operations that free space
/// ([`Pool::delete_volume`], [`Pool::discard`], [`Pool::bg_reset`]): the
/// reserve is `min(META_RESERVE, dynamic blocks / 4)`. Ordinary operations
/// fail with [`Error::NoMetadataSpace`] rather than dip into it.
pub const META_RESERVE: u64 = 64;

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
    /// Number of data extents [`Pool::grow`] may reach later in O(1) (0:
    /// `data_extents`); beyond, it adds a growth extension. The fixed
    /// area reserves 8 bytes per extent of capacity (written only when
    /// used).
    pub data_capacity: u64,
    /// Number of metadata blocks [`Pool::grow`] may reach later in O(1)
    /// (0: the metadata blocks used now); beyond, it adds a growth
    /// extension.
    pub meta_capacity: u64,
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
            data_capacity: 0,
            meta_capacity: 0,
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
    /// Identity of the volume ([`VolumeInfo::uid`]).
    pub uid: u64,
    /// Identifies this break among all breaks of this open pool (0 when
    /// `new == old`).
    pub token: u64,
}

/// The next step of a background copy ([`Pool::bg_next`]), tied to the
/// identity of the volume: [`Pool::bg_advance`] refuses it once the volume
/// was deleted (even if re-created under the same id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BgItem {
    /// The volume.
    pub volume: u32,
    /// Identity of the volume ([`VolumeInfo::uid`]).
    pub uid: u64,
    /// The shared virtual extent to un-share.
    pub vext: u64,
    /// The physical extent it maps to now.
    pub pext: u64,
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
    /// Identity, unique over the pool's life: a volume deleted and created
    /// again under the same id gets a new one.
    pub uid: u64,
    /// Being deleted in steps ([`Pool::delete_volume_step`]): listed by
    /// [`Pool::next_volume`] only, hidden from every other operation but
    /// the deletion; the id is not free yet.
    pub deleting: bool,
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
    /// The user's transaction id ([`Pool::set_transaction_id`]) of the
    /// open transaction.
    pub transaction_id: u64,
    /// Extent size in bytes.
    pub extent_size: u64,
    /// Data extents.
    pub data_extents: u64,
    /// Allocatable data extents: free in the open transaction and in the
    /// last commit (extents freed by the open transaction become
    /// allocatable at its commit; pending breaks' extents are in use).
    pub data_free: u64,
    /// Metadata blocks.
    pub meta_blocks: u64,
    /// Largest data extents the space maps hold now: [`Pool::grow`]
    /// beyond it adds a growth extension.
    pub data_capacity: u64,
    /// Largest metadata blocks the space maps hold now: [`Pool::grow`]
    /// beyond it adds a growth extension.
    pub meta_capacity: u64,
    /// Metadata blocks allocatable by ordinary operations: not counting
    /// blocks freed by the open transaction (allocatable after its
    /// commit), blocks reserved for completing pending breaks, nor the
    /// reserve.
    pub meta_free: u64,
    /// Metadata blocks reserved for space-freeing operations ([`META_RESERVE`]).
    pub meta_reserve: u64,
    /// Metadata blocks reserved for completing the pending breaks.
    pub meta_break_reserved: u64,
    /// Metadata blocks of the space map areas (the fixed area: superblocks,
    /// index and space maps; and the growth extensions).
    pub meta_fixed: u64,
    /// Growth extensions in use (at most [`MAX_GROWTH_EXTENSIONS`]).
    pub extensions: usize,
    /// Volumes.
    pub volumes: u64,
    /// Maximum number of volumes.
    pub max_volumes: u32,
    /// Prepared, not completed sharing breaks.
    pub pending_breaks: usize,
    /// The pool failed (metadata I/O error or corruption during a change):
    /// it serves lookups of the last commit and refuses every change until
    /// reopened.
    pub failed: bool,
    /// The `needs_check` superblock flag of the last commit
    /// ([`Pool::needs_check`]).
    pub needs_check: bool,
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
    /// Geometry of the open transaction (sizes grow with [`Pool::grow`]).
    geo: Geometry,
    /// Geometry of the last commit.
    com_geo: Geometry,
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
    /// Token of the next prepared break.
    next_token: u64,
    /// Lock-free map of known unshared mappings, if the caller gave one.
    fast: Option<FastMap<'a>>,
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
        let data_cap = if p.data_capacity == 0 {
            p.data_extents
        } else {
            p.data_capacity
        };
        let meta_cap = if p.meta_capacity == 0 {
            meta_blocks
        } else {
            p.meta_capacity
        };
        let geo = Geometry::with_caps(
            shift,
            p.data_extents,
            meta_blocks,
            p.max_volumes,
            data_cap,
            meta_cap,
        )?;
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
                next_uid: 1,
                txid: 0,
                flags: 0,
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
            // An unreadable superblock must not make us fall back to the
            // older one silently.
            dev.read_block(nr, b)?;
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
        for i in 0..cache::PENDING_SLOTS {
            cache.buf_mut(SLOT_PENDING.saturating_add(i))?.fill(0);
        }
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
            com_geo: geo,
            work,
            com: vars,
            pend_meta_free: 0,
            pend_data_free: 0,
            meta_reserved: 0,
            npending: 0,
            next_token: vars.gen.saturating_mul(1 << 32).saturating_add(1),
            fast: None,
            dirty: false,
            failed: false,
        })
    }

    /// Reads the superblocks of `dev` and returns the format version of the
    /// newest one with a valid checksum and magic, whatever that version
    /// (to tell a pool of another version from a corrupt one).
    pub fn probe_version(dev: &mut D, buf: &mut [u8; BLOCK_SIZE]) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for nr in 0..2u64 {
            if dev.read_block(nr, buf).is_err() {
                continue;
            }
            let Ok(h) = block::verify(buf, nr) else {
                continue;
            };
            if h.tag != block::TAG_SB || block::rd_u64(buf, 24).ok() != Some(geom::SB_MAGIC) {
                continue;
            }
            let Ok(v) = block::rd_u32(buf, 32) else {
                continue;
            };
            if best.map(|(g, _)| h.gen > g).unwrap_or(true) {
                best = Some((h.gen, v));
            }
        }
        best.map(|(_, v)| v)
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

    /// The metadata device, mutably (e.g. to inject faults in tests).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Attaches a lock-free fast map (see [`FastMap`]): from now on the
    /// pool records there the unshared mappings it finds and invalidates
    /// them before any change. Readers use [`FastMap::new`] on the same
    /// arena.
    pub fn set_fast_map(&mut self, map: FastMap<'a>) {
        map.invalidate_all();
        self.fast = Some(map);
    }

    /// Empties the fast map (O(1): an epoch bump; lock-free readers see
    /// misses). The kernel does it when it activates a volume, so that the
    /// map only holds entries found for active volumes: entries are keyed
    /// by volume identity, which corrupt metadata may have duplicated.
    pub fn clear_fast_map(&mut self) {
        self.fast_invalidate_all();
    }

    fn fast_insert(&self, uid: u64, vext: u64, pext: u64) {
        if let Some(f) = &self.fast {
            f.insert(uid, vext, pext);
        }
    }

    fn fast_invalidate(&self, uid: u64, start: u64, end: u64) {
        if let Some(f) = &self.fast {
            f.invalidate(uid, start, end);
        }
    }

    fn fast_invalidate_all(&self) {
        if let Some(f) = &self.fast {
            f.invalidate_all();
        }
    }

    /// On-disk format version of the open pool.
    pub fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }

    /// Generation of the open transaction (last commit + 1).
    fn gen(&self) -> u64 {
        self.com.gen.saturating_add(1)
    }

    /// Pool-wide figures.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            generation: self.com.gen,
            transaction_id: self.work.txid,
            extent_size: 1u64 << self.geo.extent_shift,
            data_extents: self.geo.data_extents,
            data_capacity: self.geo.held()[0],
            meta_capacity: self.geo.held()[1],
            data_free: self.data_avail(),
            meta_blocks: self.geo.meta_blocks,
            meta_free: self.meta_avail_normal(),
            meta_reserve: self.geo.meta_reserve,
            meta_break_reserved: self.meta_reserved,
            meta_fixed: self.geo.sm_area_blocks(),
            extensions: self.geo.n_ext,
            volumes: self.work.volumes,
            max_volumes: self.geo.max_volumes,
            pending_breaks: self.npending,
            failed: self.failed,
            needs_check: self.needs_check(),
            dirty_blocks: self.cache.dirty_count(),
            blocks_read: self.cache.reads,
            blocks_written: self.cache.writes,
        }
    }

    /// Sets the user's transaction id to `new` if it is `old` now
    /// (device-mapper's `set_transaction_id`); it is stored in the
    /// superblock by the next commit. A different `old` is refused with
    /// [`Error::Invalid`] and changes nothing; a failed pool refuses with
    /// [`Error::Io`].
    pub fn set_transaction_id(&mut self, old: u64, new: u64) -> Result<(), Error> {
        self.check_writable()?;
        if self.work.txid != old {
            return Err(Error::Invalid);
        }
        if old != new {
            self.work.txid = new;
            self.dirty = true;
        }
        Ok(())
    }

    /// Whether the open transaction has changes not yet committed.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether the pool failed (see [`PoolStats::failed`]).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Whether the `needs_check` flag is set in the last committed
    /// superblock (read at open, written by [`Pool::set_needs_check`] and
    /// [`Pool::clear_needs_check`]). The core does not act on it: callers
    /// (the kernel target, the tools) decide; commits keep it.
    pub fn needs_check(&self) -> bool {
        self.com.flags & SB_NEEDS_CHECK != 0
    }

    /// Sets the `needs_check` flag in the superblock.
    ///
    /// On a failed pool ([`Pool::is_failed`]) it writes a superblock for
    /// the *last committed* state with the flag: the commit protocol's
    /// superblock step alone (generation + 1 into the other slot, from the
    /// committed image with its committed selector bitmap, then a flush),
    /// so a torn or lost write leaves the older superblock valid and the
    /// pool opens at the last commit, with or without the flag. Nothing
    /// else changes: the pool stays failed. The failed transaction's
    /// superblock, if it reached the disk, is replaced by this one (its
    /// slot is the same); nothing in it was acknowledged as committed.
    ///
    /// Nothing is written if the flag is set already.
    ///
    /// On a pool that has not failed it is a commit of the open
    /// transaction with the flag set ([`Pool::commit`], whose errors fail
    /// the pool; no I/O if neither the flag nor anything else changed).
    ///
    /// Errors: the write's or flush's ([`Error::Io`]); the flag is then
    /// unchanged in memory, and on disk it is set or not (a later call
    /// writes it again).
    pub fn set_needs_check(&mut self) -> Result<(), Error> {
        if !self.failed {
            if !self.needs_check() {
                self.work.flags |= SB_NEEDS_CHECK;
                self.dirty = true;
            }
            return self.commit();
        }
        if self.needs_check() {
            return Ok(());
        }
        let gen = self.gen();
        if gen >= u64::MAX / 2 {
            return Err(Error::Invalid);
        }
        let mut vars = self.com;
        vars.gen = gen;
        vars.flags |= SB_NEEDS_CHECK;
        let r = self.write_committed_sb(&vars);
        if r.is_ok() {
            self.com = vars;
            self.work.gen = gen;
            self.work.flags = vars.flags;
        } else {
            // The in-memory committed image stays the last commit's.
            let com = self.com;
            let _ = self.write_committed_sb_image(&com);
        }
        r
    }

    /// Encodes `vars` into the committed superblock image (its selector
    /// bitmap is the committed one) and seals it.
    fn write_committed_sb_image(&mut self, vars: &SbVars) -> Result<(), Error> {
        let b = self.cache.buf_mut(SLOT_COM)?;
        encode_sb(b, &self.com_geo, vars)?;
        block::seal(b);
        Ok(())
    }

    /// Writes `vars` with the committed image to slot `vars.gen % 2` and
    /// flushes.
    fn write_committed_sb(&mut self, vars: &SbVars) -> Result<(), Error> {
        self.write_committed_sb_image(vars)?;
        self.dev
            .write_block(vars.gen % 2, self.cache.buf(SLOT_COM)?)?;
        self.dev.flush()
    }

    /// Clears the `needs_check` flag: a commit of the open transaction
    /// without the flag (a superblock write even if nothing else changed;
    /// no I/O if the flag is clear and nothing changed). Run it after
    /// [`Pool::check`] found the pool clean. A failed pool refuses
    /// ([`Error::Io`]); an error of the commit fails the pool as any
    /// commit's does, and the flag stays set on disk unless the new
    /// superblock reached it.
    pub fn clear_needs_check(&mut self) -> Result<(), Error> {
        self.check_writable()?;
        if self.needs_check() {
            self.work.flags &= !SB_NEEDS_CHECK;
            self.dirty = true;
        }
        self.commit()
    }

    /// Refuses changes once the pool failed.
    fn check_writable(&self) -> Result<(), Error> {
        if self.failed {
            Err(Error::Io)
        } else {
            Ok(())
        }
    }

    /// In-memory state that an operation changes besides cached blocks.
    fn state_mark(&self) -> (u64, SbVars, Geometry, u64, u64, u64, usize) {
        (
            self.cache.mods,
            self.work,
            self.geo,
            self.pend_meta_free,
            self.pend_data_free,
            self.meta_reserved,
            self.npending,
        )
    }

    /// Runs a mutation. If it fails before changing anything, only the
    /// operation fails. If it fails after changing something (an I/O error
    /// or corruption met half way), the open transaction is dropped and
    /// the pool enters the failed state: lookups answer the last commit,
    /// every change returns [`Error::Io`] until the pool is reopened.
    /// `dirty`: the change needs a commit (a prepared break alone does
    /// not: its extent is committed as free anyway).
    fn mutate<T>(
        &mut self,
        dirty: bool,
        f: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mark = self.state_mark();
        match f(self) {
            Ok(v) => {
                if dirty {
                    self.dirty = true;
                }
                Ok(v)
            }
            Err(e) => {
                if self.state_mark() != mark {
                    self.fail();
                }
                Err(e)
            }
        }
    }

    /// Enters the failed state (see [`Pool::mutate`]).
    fn fail(&mut self) {
        self.failed = true;
        self.reset_to_committed();
        // Keep pending breaks' extents allocated in memory so that nothing
        // could hand them out (nothing allocates while failed anyway).
        let _ = self.pending_set_rc(1);
    }

    /// Returns to the last committed state; pending breaks stay known but
    /// become stale (their completion only frees their extent).
    fn reset_to_committed(&mut self) {
        if let Some(f) = &self.fast {
            f.invalidate_all();
        }
        self.cache.invalidate();
        let _ = self.cache.copy(SLOT_COM, SLOT_WORK);
        self.work = self.com;
        self.geo = self.com_geo;
        self.pend_meta_free = 0;
        self.pend_data_free = 0;
        self.meta_reserved = 0;
        self.dirty = false;
        for i in 0..self.npending {
            let _ = self.pending_mark_stale(i);
        }
    }

    /// Drops the open transaction: the pool returns to the last committed
    /// state. Pending breaks stay allocated but become stale:
    /// [`Pool::complete_break`] then frees their extent and returns
    /// [`Error::Busy`] (the caller redoes the write from a new lookup), so
    /// an extent being copied to is never handed out again. A pending
    /// break whose extent came from a growth of the dropped transaction
    /// holds nothing after it (that extent does not exist in the
    /// committed pool); its completion only returns [`Error::Busy`]. An I/O
    /// error while restoring them puts the pool in the failed state.
    pub fn abort(&mut self) {
        self.reset_to_committed();
        if self.pending_set_rc(1).is_err() {
            self.fail();
        }
    }

    /// Commits the open transaction: writes every new block, flushes,
    /// writes the superblock, flushes. When this returns `Ok` the
    /// transaction survives a crash. Extents of pending breaks are not
    /// part of the commit (they are free on disk until completed). A
    /// commit with no change (pending breaks do not count) does no I/O.
    ///
    /// An error leaves the pool failed (see [`PoolStats::failed`]); the
    /// transaction may or may not have reached the disk: reopen the device
    /// to continue from whichever did.
    pub fn commit(&mut self) -> Result<(), Error> {
        self.check_writable()?;
        if !self.dirty {
            return Ok(());
        }
        let r = self.commit_inner();
        if r.is_err() {
            self.fail();
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
        self.com_geo = self.geo;
        self.pend_meta_free = 0;
        self.pend_data_free = 0;
        self.dirty = false;
        // Back in use in memory; this alone needs no commit.
        self.pending_set_rc(1)
    }

    /// Checks the whole pool (open transaction state; run it right after
    /// [`Pool::open`] or [`Pool::commit`] to check the committed state):
    /// checksums, tree shape and every reference count. `scratch` must
    /// hold at least `meta_blocks + 1` counters; more makes the data
    /// reference count pass take fewer walks (`meta_blocks + data_extents`
    /// needs one). Corruption is reported in the result, not as an error;
    /// errors are [`Error::Io`] and [`Error::Invalid`] (scratch too small).
    pub fn check(&mut self, scratch: &mut [u32]) -> Result<CheckReport, Error> {
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

/// Largest number of data extents a pool with `meta_blocks` metadata
/// blocks can address (0: none), limited by the space map index
/// (superblock bits times index entries) and by the fixed area (two copies
/// of the space maps, 8 bytes per data extent) fitting the metadata device.
pub fn max_data_extents(meta_blocks: u64) -> u64 {
    let fits = |d: u64| geom::Geometry::new(12, d, meta_blocks, 1).is_ok();
    if !fits(1) {
        return 0;
    }
    let (mut lo, mut hi) = (1u64, MAX_DATA_EXTENTS);
    if fits(hi) {
        return hi;
    }
    // Invariant: fits(lo) and !fits(hi); at most 64 rounds.
    while hi.saturating_sub(lo) > 1 {
        let mid = lo.saturating_add(hi.saturating_sub(lo) / 2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Smallest number of metadata blocks that can hold a pool of
/// `data_extents` (`None`: beyond the index limit): the fixed area plus a
/// minimal dynamic area. Usable pools need more (tree nodes: about one
/// 4 KiB block per 678 mapped extents).
pub fn min_meta_blocks(data_extents: u64) -> Option<u64> {
    let dsm = data_extents.div_ceil(geom::SM_ENTRIES);
    // Meta space map blocks depend on the total; iterate to a fixed point.
    let mut m = 0u64;
    let mut rounds = 0u32;
    while rounds < 8 {
        rounds = rounds.saturating_add(1);
        let msm = m.div_ceil(geom::SM_ENTRIES);
        let idx = msm.saturating_add(dsm).div_ceil(geom::IDX_ENTRIES);
        let want = 2u64
            .saturating_add(idx.saturating_mul(2))
            .saturating_add(msm.saturating_mul(2))
            .saturating_add(dsm.saturating_mul(2))
            .saturating_add(geom::MIN_DYN_BLOCKS);
        if want <= m {
            break;
        }
        m = want;
    }
    geom::Geometry::new(12, data_extents, m, 1).ok().map(|_| m)
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
