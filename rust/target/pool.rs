// SPDX-License-Identifier: GPL-2.0

//! The `snapguard-pool` target.
//!
//! The constructor validates the table, opens both devices and then the
//! pool metadata: an all-zero metadata device (both superblock blocks
//! zero) is formatted with the table's extent size, a valid pool is
//! opened, anything else is refused without writing. Status reports the
//! pool's figures and mode. Messages `create`, `delete`, `snapshot` and
//! `set_transaction_id` change the metadata and commit. Failure modes
//! (`ro`, `fail`) are in [`super::fail`].
//!
//! [`PoolCore`] is the state the pool shares with its volumes: the open
//! metadata and the data device under one lock, the active volumes, and
//! the per-pool workqueue. It also holds the volume I/O logic: the inline
//! path of `map` ([`PoolCore::map_inline`]) and the worker
//! ([`PoolCore::process`]); see `Documentation/snapshot-target.rst`, "I/O
//! path".

#[path = "prison.rs"]
mod prison;
#[path = "space.rs"]
mod space;

use super::fail::{Attempt, Cause, PoolFail};
use super::stats::{PoolDir, PoolStats};
use super::volume::VolumeCore;
use super::{errno, refuse, DeviceClaim};
use crate::dmtarget::{
    parse_message, parse_pool_table, Message, NoSpacePolicy, PoolConfig, PoolMode, PoolStatus, POOL_TARGET,
};
use crate::dmtarget::{Discard, VolumeStatus};
use crate::kbind::dm::{
    self, Bio, BioKind, BioList, BlockIo, Ctr, CtrError, Dev, Devices, Emit, IoBuf, MapResult, OwnedBio, OwnedQueue,
    StatusType, Target,
};
use crate::kbind::text::Text;
use crate::pool::{self, CacheSlot, FastMap, FastSlot, FormatParams, Mapping, MetaDevice, Pool, BLOCK_SIZE};
use core::fmt::Write;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex, SpinLock};
use kernel::time::msecs_to_jiffies;
use kernel::workqueue::{new_delayed_work, DelayedWork, WorkItem};
use kernel::new_spinlock;

/// Sectors per metadata block.
const BLOCK_SECTORS: u64 = (BLOCK_SIZE / 512) as u64;
/// Metadata cache when the table gives no `cache_mib:` (MiB).
const DEFAULT_CACHE_MIB: u32 = 4;

/// The metadata device as the pool core sees it: 4 KiB blocks, read and
/// written synchronously through a `kmalloc` bounce buffer (the pool's
/// cache arena is `vmalloc` memory, which block I/O cannot map).
struct MetaDev {
    io: BlockIo,
    buf: IoBuf,
    blocks: u64,
}

impl MetaDevice for MetaDev {
    fn read_block(&mut self, nr: u64, out: &mut [u8; BLOCK_SIZE]) -> Result<(), pool::Error> {
        let sector = self.sector(nr)?;
        self.io.read(sector, &mut self.buf).map_err(|_| pool::Error::Io)?;
        out.copy_from_slice(self.buf.as_slice().get(..BLOCK_SIZE).ok_or(pool::Error::Io)?);
        Ok(())
    }

    fn write_block(&mut self, nr: u64, data: &[u8; BLOCK_SIZE]) -> Result<(), pool::Error> {
        let sector = self.sector(nr)?;
        self.buf.as_mut_slice().get_mut(..BLOCK_SIZE).ok_or(pool::Error::Io)?.copy_from_slice(data);
        self.io.write(sector, &mut self.buf).map_err(|_| pool::Error::Io)
    }

    fn flush(&mut self) -> Result<(), pool::Error> {
        self.io.flush().map_err(|_| pool::Error::Io)
    }

    fn nr_blocks(&self) -> u64 {
        self.blocks
    }
}

impl MetaDev {
    fn sector(&self, nr: u64) -> Result<u64, pool::Error> {
        if nr >= self.blocks {
            return Err(pool::Error::Invalid);
        }
        nr.checked_mul(BLOCK_SECTORS).ok_or(pool::Error::Invalid)
    }

    /// Whether both superblock blocks are zero (a fresh metadata device).
    fn superblocks_zero(&mut self) -> Result<bool, pool::Error> {
        for nr in [0, 1] {
            let sector = self.sector(nr)?;
            self.io.read(sector, &mut self.buf).map_err(|_| pool::Error::Io)?;
            if self.buf.as_slice().iter().any(|&b| b != 0) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The open pool and the cache arena it borrows.
///
/// # Invariants
///
/// `pool` borrows the whole of `slots`' buffer (through a `'static` slice
/// made from its pointer); `slots` is never used otherwise, and it is
/// dropped after `pool` (declaration order).
struct Metadata {
    pool: Pool<'static, MetaDev>,
    _slots: VVec<CacheSlot>,
}

impl Metadata {
    /// Opens the pool on `dev`, or formats it if both superblocks are zero.
    fn open(mut dev: MetaDev, config: &PoolConfig, data_extents: u64) -> Result<Self, CtrError> {
        let mib = config.features.cache_mib.unwrap_or(DEFAULT_CACHE_MIB);
        let n = (usize::try_from(mib).unwrap_or(usize::MAX) << 20) / core::mem::size_of::<CacheSlot>();
        let n = n.max(pool::MIN_CACHE_SLOTS);
        let mut slots = VVec::<CacheSlot>::with_capacity(n, GFP_KERNEL | __GFP_ZERO)
            .map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate the metadata cache" })?;
        // SAFETY: the capacity is `n` zeroed slots, and the all-zero bit
        // pattern is a valid empty `CacheSlot` (documented by the pool core).
        unsafe { slots.inc_len(n) };
        // SAFETY: the buffer lives as long as `slots`, which outlives the
        // pool (type invariant) and is not touched otherwise.
        let arena: &'static mut [CacheSlot] = unsafe { core::slice::from_raw_parts_mut(slots.as_mut_ptr(), n) };

        if dev.blocks < 2 {
            pr_err!("{}: the metadata device has {} blocks of 4 KiB\n", POOL_TARGET, dev.blocks);
            return Err(CtrError::inval(c"Metadata device too small"));
        }
        let zero = dev.superblocks_zero().map_err(|_| CtrError { err: EIO, msg: c"Error reading metadata" })?;
        let mut pool = if zero {
            if config.features.read_only {
                return Err(CtrError::inval(c"Cannot format a read-only pool"));
            }
            let mut p = FormatParams::new(data_extents);
            p.extent_size = config.extent_bytes();
            space::format_caps(&mut p, dev.blocks);
            let pool = Pool::format(dev, arena, p).map_err(|e| {
                pr_err!("{}: cannot format the metadata device: {:?}\n", POOL_TARGET, e);
                CtrError { err: errno(e), msg: c"Cannot format the metadata device" }
            })?;
            pr_info!(
                "{}: formatted a new pool: {} extents of {} sectors\n",
                POOL_TARGET,
                data_extents,
                config.extent_sectors
            );
            pool
        } else {
            Pool::open(dev, arena).map_err(|e| {
                pr_err!(
                    "{}: the metadata device is neither zeroed nor a valid pool ({:?}); nothing was written\n",
                    POOL_TARGET,
                    e
                );
                CtrError { err: errno(e), msg: c"Metadata device is neither zeroed nor a pool" }
            })?
        };
        let st = pool.stats();
        if st.extent_size != config.extent_bytes() {
            pr_err!(
                "{}: the pool's extent size is {} sectors, the table says {}\n",
                POOL_TARGET,
                st.extent_size >> 9,
                config.extent_sectors
            );
            return Err(CtrError::inval(c"Extent size differs from the pool's"));
        }
        // A longer table grows the pool at resume.
        let dev_blocks = pool.device().blocks;
        space::check_length(&mut pool, data_extents, dev_blocks)?;
        Ok(Metadata { pool, _slots: slots })
    }
}

/// What the pool's lock protects: the open metadata and the data device.
/// Both are `None` once the pool target is destroyed.
pub(crate) struct PoolState {
    meta: Option<Metadata>,
    data: Option<BlockIo>,
    /// Bounce buffer for sharing-break copies ([`COPY_CHUNK`] bytes).
    copy_buf: IoBuf,
    /// Extents with a provision or break in flight (`prison.rs`).
    prison: prison::PrisonState,
    /// Out-of-space and low water state (`space.rs`).
    space: space::SpaceState,
}

/// Bytes copied per step of a sharing break (extents are powers of two
/// of at least 4 KiB, so a step never crosses an extent's end).
const COPY_CHUNK: usize = 64 << 10;
/// Most fast-map slots (2.5 MiB).
const FAST_SLOTS_MAX: usize = 1 << 16;

/// The state a pool shares with its volumes (`snapguard` targets), found
/// through [`super::LIVE_POOLS`] by the pool's device number.
#[pin_data]
pub(crate) struct PoolCore {
    /// Device number of the pool's mapped device.
    md_devt: u32,
    /// log2 of the extent size in sectors.
    extent_shift: u32,
    /// Extent size in sectors (a power of two, at least 8).
    pub(crate) extent_sectors: u64,
    /// New extents are zeroed before they are mapped.
    zero_new: bool,
    /// Volumes accept discards (not `ignore_discard`).
    pub(crate) discard: bool,
    /// Discards of whole unshared extents reach the data device.
    passdown: bool,
    /// The pool's mode (`rw`, `ro`, `fail`), read lock-free by `map`.
    pub(crate) fail: PoolFail,
    /// Counters and the commit period (`/sys/kernel/snapguard/pools/`).
    pub(crate) stats: Arc<PoolStats>,
    /// Metadata and data device; the worker holds it for each batch.
    #[pin]
    state: Mutex<PoolState>,
    /// The lock-free fast map `map` reads (in `fast_slots`).
    fast: FastMap<'static>,
    /// The data device for `map`'s fast-map hits (see `PoolState::data`):
    /// `map` runs only while a volume holds the pool device open, so
    /// while the pool target, which holds the data device, exists.
    data_fast: BlockIo,
    /// The fast map's arena; dropped after `state` (declaration order),
    /// whose pool borrows it, and never used otherwise.
    _fast_slots: VVec<FastSlot>,
    /// Active volumes (several tables of one volume may be loaded).
    #[pin]
    active: Mutex<KVec<Arc<VolumeCore>>>,
    /// The per-pool worker's queue; `None` once the pool is being
    /// destroyed. A spinlock: `map` queues work through it.
    #[pin]
    wq: SpinLock<Option<OwnedQueue>>,
    /// The periodic commit (`commit_interval_ms` after a batch left
    /// changes).
    #[pin]
    commit_work: DelayedWork<PoolCore>,
    /// The prison's cells (`prison.rs`).
    prison: prison::Prison,
    /// Reload, growth and out-of-space state (`space.rs`).
    #[pin]
    space: space::Space,
    /// The out-of-space bound (`space.rs`).
    #[pin]
    space_work: DelayedWork<PoolCore, 1>,
    /// `/sys/kernel/snapguard/pools/dm-N`, removed with the pool's last
    /// table.
    #[pin]
    sysfs: Mutex<Option<PoolDir>>,
}

kernel::impl_has_delayed_work! {
    impl HasDelayedWork<Self> for PoolCore { self.commit_work }
}

impl WorkItem for PoolCore {
    type Pointer = Arc<PoolCore>;

    fn run(this: Arc<PoolCore>) {
        if let Err(e) = this.commit() {
            if this.fail.log_commit_error() {
                pr_err!("{}: periodic commit failed: {:?}\n", POOL_TARGET, e);
            }
        }
    }
}

/// What a volume's worker does with one bio.
enum Plan {
    /// Submit to this data device sector.
    Submit(u64),
    /// Reads of unmapped extents return zeroes.
    Zero,
}

impl PoolCore {
    /// The device number of the pool's mapped device.
    pub(crate) fn md_devt(&self) -> u32 {
        self.md_devt
    }

    /// Queues `v`'s work item (never sleeps). Returns whether the queue is
    /// still open, and the reference back if it was not queued (already
    /// queued, or the pool is going): the caller drops it, outside the lock.
    pub(crate) fn enqueue_volume(&self, v: Arc<VolumeCore>) -> (bool, Option<Arc<VolumeCore>>) {
        let g = self.wq.lock();
        match g.as_ref() {
            Some(q) => (true, q.get().enqueue(v).err()),
            None => (false, Some(v)),
        }
    }

    /// Queues the periodic commit unless it is queued already.
    pub(crate) fn schedule_commit(this: &Arc<PoolCore>) {
        let back = {
            let g = this.wq.lock();
            g.as_ref().and_then(|q| {
                q.get().enqueue_delayed::<_, 0>(this.clone(), msecs_to_jiffies(this.stats.commit_interval_ms())).err()
            })
        };
        // Not the last reference: `this` is one.
        drop(back);
    }

    /// Checks that volume `id` exists and is at least `sectors` long;
    /// returns its size in sectors.
    pub(crate) fn volume_sectors(&self, id: u32) -> Result<(u64, u64), pool::Error> {
        let mut st = self.state.lock();
        let meta = st.meta.as_mut().ok_or(pool::Error::Io)?;
        let info = meta.pool.volume(id)?;
        Ok((info.size.saturating_mul(self.extent_sectors), info.uid))
    }

    /// Registers an active volume. The fast map is keyed by volume
    /// identity (`uid`), unique unless the metadata is corrupt: a volume
    /// whose identity an active volume of another id has is refused, and
    /// the fast map is emptied, so that it holds only entries found for
    /// active volumes (not those of a deactivated volume whose identity a
    /// corrupt record or superblock gave to this one). Otherwise one volume
    /// would read and write the other's extents.
    pub(crate) fn attach(&self, v: Arc<VolumeCore>) -> Result<(), CtrError> {
        let mut st = self.state.lock();
        let mut a = self.active.lock();
        if let Some(o) = a.iter().find(|o| o.uid == v.uid && o.id != v.id) {
            pr_err!(
                "{}: volume {} has the identity of active volume {} ({}): the pool metadata is corrupt\n",
                crate::dmtarget::VOLUME_TARGET,
                v.id,
                o.id,
                v.uid
            );
            return Err(CtrError {
                err: errno(pool::Error::Corrupt),
                msg: c"Volume identity not unique",
            });
        }
        if let Some(m) = st.meta.as_mut() {
            // Still this volume: a `delete` may have begun since the
            // constructor looked it up (a deleting volume is not found).
            // `delete` checks for active tables under this lock too.
            match m.pool.volume(v.id) {
                Ok(i) if i.uid == v.uid => {}
                Ok(_) | Err(pool::Error::NotFound) => {
                    pr_err!("{}: volume {} was deleted meanwhile\n", crate::dmtarget::VOLUME_TARGET, v.id);
                    return Err(CtrError { err: ENOENT, msg: c"Unknown volume" });
                }
                Err(e) => return Err(CtrError { err: errno(e), msg: c"Cannot read the volume" }),
            }
            m.pool.clear_fast_map();
        }
        a.push(v, GFP_KERNEL).map_err(|_| CtrError::NOMEM)
    }

    /// Unregisters an active volume.
    pub(crate) fn detach(&self, v: &Arc<VolumeCore>) {
        self.active.lock().retain(|x| !Arc::ptr_eq(x, v));
    }

    fn is_active(&self, id: u32) -> bool {
        self.active.lock().iter().any(|v| v.id == id)
    }

    /// Waits (bounded, [`VolumeCore::drain`]) until every write of the
    /// active tables of volume `id` counted so far has ended. The caller
    /// holds the state lock, so the worker submits nothing new meanwhile,
    /// and has invalidated the fast map, so `map` remaps no new write from
    /// a stale entry.
    fn quiesce(&self, id: u32) -> Result<(), pool::Error> {
        for v in self.active.lock().iter().filter(|v| v.id == id) {
            v.drain().map_err(|_| pool::Error::Busy)?;
        }
        Ok(())
    }

    /// Makes every completed data write and the open transaction durable:
    /// flushes the data device, then commits the metadata. `flush`: a
    /// flush asked for it, so the data device is flushed even if the
    /// metadata has no change. Nothing is committed in `ro` and `fail`
    /// (which fails); a failed commit enters `fail`.
    fn commit_locked(&self, st: &mut PoolState, flush: bool) -> Result<(), pool::Error> {
        let (Some(meta), Some(data)) = (st.meta.as_mut(), st.data.as_ref()) else {
            return Err(pool::Error::Io);
        };
        // Whatever path failed the core, its dropped changes must not pass
        // for committed.
        self.fail.core_state(meta.pool.is_failed());
        self.fail.persist_needs_check(&mut meta.pool, Attempt::First);
        let commit = self.fail.check_commit()? && meta.pool.is_dirty();
        if !commit && !flush {
            return Ok(());
        }
        let t0 = PoolStats::commit_start();
        let flushed = data.flush().is_ok();
        self.fail.data_flush(flushed);
        if !flushed {
            return Err(pool::Error::Io);
        }
        if !commit {
            return Ok(());
        }
        if let Err(e) = meta.pool.commit() {
            self.fail.enter(Cause::Commit(e));
            self.fail.persist_needs_check(&mut meta.pool, Attempt::First);
            return Err(e);
        }
        self.stats.commit_done(t0);
        Ok(())
    }

    /// Commits (see `commit_locked`). Extents freed in the transaction
    /// become free for reuse: writes held for space are retried.
    pub(crate) fn commit(&self) -> Result<(), pool::Error> {
        let mut st = self.state.lock();
        let r = self.commit_locked(&mut st, false);
        self.space_freed(&mut st);
        r
    }

    /// Enters `fail` if the pool core failed (after an operation failed),
    /// and writes the `needs_check` flag if `fail` was entered.
    fn note_core(&self, st: &mut PoolState) {
        if let Some(m) = st.meta.as_mut() {
            self.fail.core_state(m.pool.is_failed());
            self.fail.persist_needs_check(&mut m.pool, Attempt::First);
        }
    }

    /// Retries writing the `needs_check` flag (`when`: at suspend or
    /// removal) if a first attempt failed.
    fn retry_needs_check(&self, st: &mut PoolState, when: Attempt) {
        if let Some(m) = st.meta.as_mut() {
            self.fail.persist_needs_check(&mut m.pool, when);
        }
    }

    /// Copies data extent `from` to `to` through the worker's buffer.
    fn copy_extent(&self, st: &mut PoolState, from: u64, to: u64) -> Result<(), pool::Error> {
        let PoolState { data, copy_buf, .. } = st;
        let data = data.as_ref().ok_or(pool::Error::Io)?;
        prison::copy_extent(data, copy_buf, from, to, self.extent_sectors)
    }

    /// Decides where bio `b` of volume `id` goes: looks the extent up and,
    /// for writes, provisions it (zeroed) or breaks its sharing (copied).
    fn plan(&self, st: &mut PoolState, id: u32, b: &OwnedBio) -> Result<Plan, pool::Error> {
        let es = self.extent_sectors;
        let sector = b.target_sector();
        let vext = sector.checked_shr(self.extent_shift).unwrap_or(0);
        let off = sector & es.wrapping_sub(1);
        let write = b.kind() == BioKind::Write;
        let m = st.meta.as_mut().ok_or(pool::Error::Io)?.pool.lookup(id, vext);
        let m = m.inspect_err(|e| self.fail.lookup_error(*e))?;
        if write {
            self.fail.check_write(m)?;
        }
        let pext = match m {
            Mapping::Unmapped if !write => return Ok(Plan::Zero),
            Mapping::Mapped { pext, .. } if !write => pext,
            Mapping::Mapped { pext, shared: false } => pext,
            Mapping::Unmapped if !self.zero_new => {
                let p = st.meta.as_mut().ok_or(pool::Error::Io)?.pool.provision(id, vext)?;
                self.stats.provision();
                p
            }
            Mapping::Unmapped => {
                // Normally done by the prison, outside the lock; here the
                // same two phases under it: the mapping (and its fast-map
                // entry) only once the extent holds zeroes.
                let meta = st.meta.as_mut().ok_or(pool::Error::Io)?;
                let plan = meta.pool.prepare_provision(id, vext)?;
                let data = st.data.as_ref().ok_or(pool::Error::Io)?;
                let start = plan.new.checked_mul(es).ok_or(pool::Error::Invalid)?;
                let zeroed = data.zero_out(start, es);
                let meta = st.meta.as_mut().ok_or(pool::Error::Io)?;
                if zeroed.is_err() {
                    let _ = meta.pool.cancel_provision(&plan);
                    return Err(pool::Error::Io);
                }
                meta.pool.complete_provision(&plan)?;
                self.stats.provision();
                plan.new
            }
            Mapping::Mapped { shared: true, .. } => {
                let plan = st.meta.as_mut().ok_or(pool::Error::Io)?.pool.prepare_break(id, vext)?;
                if plan.new != plan.old {
                    let copied = self.copy_extent(st, plan.old, plan.new);
                    let meta = st.meta.as_mut().ok_or(pool::Error::Io)?;
                    if let Err(e) = copied {
                        let _ = meta.pool.cancel_break(&plan);
                        return Err(e);
                    }
                    meta.pool.complete_break(&plan)?;
                    self.stats.sharing_break();
                }
                plan.new
            }
        };
        let base = pext.checked_mul(es).ok_or(pool::Error::Invalid)?;
        Ok(Plan::Submit(base | off))
    }

    /// The inline path of `map`: never sleeps, never allocates, never
    /// waits for the worker. Reads and non-FUA writes first ask the pool
    /// core's lock-free fast map (known unshared mappings): a hit is
    /// remapped. Otherwise, if the pool's lock is free (try-lock) and the
    /// extent's mapping is cached: a read of an unmapped extent is
    /// zero-filled and ended, a read of a mapped one or a write to a
    /// mapped unshared one is remapped. Anything else (`None`) goes to the
    /// worker. Reads and writes are counted ([`VolumeCore::enter`]) before
    /// the lookup, so that a snapshot or discard can wait for them.
    pub(crate) fn map_inline(&self, v: &VolumeCore, b: &mut Bio<'_>) -> Option<MapResult> {
        let kind = b.kind();
        // FUA writes wait for a commit: the worker's.
        if (kind != BioKind::Read && kind != BioKind::Write) || b.is_fua() {
            return None;
        }
        let word = v.enter();
        let r = self.map_counted(v, b, kind);
        match r {
            Some(MapResult::Remapped) => b.set_per_bio(word),
            _ => v.leave(word),
        }
        r
    }

    fn map_counted(&self, v: &VolumeCore, b: &mut Bio<'_>, kind: BioKind) -> Option<MapResult> {
        let es = self.extent_sectors;
        let sector = b.target_sector();
        let vext = sector.checked_shr(self.extent_shift)?;
        let off = sector & es.wrapping_sub(1);
        if kind == BioKind::Write && !self.fail.inline_writes() {
            return None;
        }
        if let Some(pext) = self.fast.lookup(v.uid, vext) {
            let target = pext.checked_mul(es)?.checked_add(off)?;
            b.remap_to(&self.data_fast, target);
            return Some(MapResult::Remapped);
        }
        let st = self.state.try_lock()?;
        // Never past an extent with a provision or break in flight.
        if st.prison.holds(v.uid, vext) {
            return None;
        }
        let meta = st.meta.as_ref()?;
        let data = st.data.as_ref()?;
        let pext = match (meta.pool.lookup_cached(v.id, vext).ok()?, kind) {
            (Mapping::Unmapped, BioKind::Read) => {
                b.take().end_zeroed();
                return Some(MapResult::Submitted);
            }
            (Mapping::Mapped { pext, .. }, BioKind::Read) => pext,
            (Mapping::Mapped { pext, shared: false }, BioKind::Write) => pext,
            _ => return None,
        };
        let target = pext.checked_mul(es)?.checked_add(off)?;
        b.remap_to(data, target);
        Some(MapResult::Remapped)
    }

    /// A discard (device-mapper splits them at extent boundaries): a whole
    /// extent is unmapped (freed if only this volume used it) and, if it
    /// was not shared and passdown is on, discarded on the data device,
    /// synchronously so that it cannot meet a later reuse of the extent.
    /// Part of an extent changes nothing.
    fn discard(&self, st: &mut PoolState, v: &VolumeCore, b: &OwnedBio) -> Result<(), pool::Error> {
        let id = v.id;
        let es = self.extent_sectors;
        let sector = b.target_sector();
        if sector & es.wrapping_sub(1) != 0 || b.sectors() != es {
            return Ok(());
        }
        let vext = sector.checked_shr(self.extent_shift).unwrap_or(0);
        if !self.fail.check_discard()? {
            return Ok(());
        }
        let meta = st.meta.as_mut().ok_or(pool::Error::Io)?;
        let Mapping::Mapped { pext, shared } = meta.pool.lookup(id, vext)? else {
            return Ok(());
        };
        meta.pool.discard(id, vext, 1)?;
        // The discard invalidated the fast map's entry; writes remapped
        // from it must end before the extent can be reused (next commit)
        // or discarded below.
        if v.drain().is_err() {
            pr_err!("{}: writes to volume {} did not end within 10 s of a discard\n", POOL_TARGET, id);
            return Err(pool::Error::Busy);
        }
        if self.passdown && !shared {
            if let (Some(data), Some(start)) = (st.data.as_ref(), pext.checked_mul(es)) {
                // Advisory: a data device without discard support is fine.
                let _ = data.discard(start, es);
            }
        }
        Ok(())
    }

    /// The worker: maps, provisions, breaks and submits a batch of bios of
    /// volume `v`, in order; flushes and FUA writes wait for one commit.
    /// Returns whether the open transaction has changes.
    pub(crate) fn process(&self, v: &Arc<VolumeCore>, mut batch: BioList) -> bool {
        let mut st = self.state.lock();
        let mut after_commit = BioList::new();
        while let Some(b) = batch.pop() {
            let mut b = match self.prison_admit(&mut st, v, b) {
                prison::Admit::Go(b) => b,
                prison::Admit::Taken => continue,
                prison::Admit::Wait(b) => {
                    self.prison_wait(v, b, batch.take());
                    break;
                }
            };
            match b.kind() {
                BioKind::Flush => after_commit.push(b),
                BioKind::Read | BioKind::Write => match self.plan(&mut st, v.id, &b) {
                    Ok(Plan::Zero) => b.end_zeroed(),
                    Ok(Plan::Submit(sector)) if b.kind() == BioKind::Write && b.is_fua() => {
                        b.set_per_bio(sector);
                        after_commit.push(b);
                    }
                    Ok(Plan::Submit(sector)) => {
                        let Some(data) = st.data.as_ref() else {
                            b.end(Some(EIO));
                            continue;
                        };
                        v.count_io(&mut b);
                        b.submit(data, sector);
                    }
                    Err(e) => {
                        self.note_core(&mut st);
                        self.end_or_hold(&mut st, v, b, e)
                    }
                },
                BioKind::Discard => {
                    let r = self.discard(&mut st, v, &b);
                    if r.is_err() {
                        self.note_core(&mut st);
                    }
                    b.end(r.err().map(errno));
                    self.space_freed(&mut st);
                }
                BioKind::Other => b.end(Some(crate::kbind::compat::eopnotsupp())),
            }
        }
        self.space_note(&mut st);
        if after_commit.is_empty() {
            return Self::dirty(&st);
        }
        // One commit for every flush and FUA write of the batch.
        let r = self.commit_locked(&mut st, true);
        while let Some(mut b) = after_commit.pop() {
            match (b.kind(), &r, st.data.as_ref()) {
                (BioKind::Flush, Ok(()), _) => b.end(None),
                (BioKind::Write, Ok(()), Some(data)) => {
                    let sector = b.per_bio();
                    v.count_io(&mut b);
                    b.submit(data, sector);
                }
                _ => b.end(Some(EIO)),
            }
        }
        Self::dirty(&st)
    }

    fn dirty(st: &PoolState) -> bool {
        st.meta.as_ref().is_some_and(|m| m.pool.is_dirty())
    }

    /// The volume status figures: mapped sectors, highest mapped sector,
    /// shared sectors. Walks the volume's mappings in chunks of
    /// [`STATUS_CHUNK`], taking the pool's lock for each chunk only, so
    /// that the status of a large volume does not hold up the worker (the
    /// figures of a volume being written are a moment's anyway).
    pub(crate) fn volume_status(&self, id: u32) -> VolumeStatus {
        let es = self.extent_sectors;
        let (mut mapped, mut shared, mut highest) = (0u64, 0u64, None);
        let mut from = 0;
        loop {
            let mut st = self.state.lock();
            let Some(meta) = st.meta.as_mut() else { return VolumeStatus::Fail };
            let Ok(info) = meta.pool.volume(id) else { return VolumeStatus::Fail };
            for _ in 0..STATUS_CHUNK {
                if from >= info.size {
                    return VolumeStatus::Active {
                        mapped_sectors: mapped.saturating_mul(es),
                        highest_mapped: highest,
                        shared_sectors: shared.saturating_mul(es),
                    };
                }
                match meta.pool.next_mapping(id, from) {
                    Ok(Some((vext, Mapping::Mapped { shared: sh, .. }))) => {
                        mapped = mapped.saturating_add(1);
                        if sh {
                            shared = shared.saturating_add(1);
                        }
                        // Strictly increasing: at most `info.size` steps.
                        from = vext.saturating_add(1);
                        highest = Some(from.saturating_mul(es).saturating_sub(1));
                    }
                    Ok(_) => from = info.size,
                    Err(_) => return VolumeStatus::Fail,
                }
            }
            // Taking the lock again may reschedule (might_sleep).
            drop(st);
        }
    }
}

/// Cancels `dw`, one of `core`'s delayed work items (waiting for it if it
/// runs), and drops the reference a queued item held.
fn cancel_dwork<const ID: u64>(core: &Arc<PoolCore>, dw: &DelayedWork<PoolCore, ID>) {
    // SAFETY: `dw` is the `delayed_work` of a `DelayedWork` (a transparent
    // wrapper), alive as long as `core`, of which it is a field.
    let was_queued =
        unsafe { crate::kbind::sys::snapguard_cancel_dwork_sync(core::ptr::from_ref(dw).cast_mut().cast()) };
    if was_queued {
        // SAFETY: a queued work item of `core` owns one reference, made
        // with `Arc::into_raw` by `enqueue_delayed`; cancelling it hands
        // that reference back to us, and `core` is another one.
        drop(unsafe { Arc::from_raw(Arc::as_ptr(core)) });
    }
}

/// Mappings walked per hold of the pool's lock by [`PoolCore::volume_status`].
const STATUS_CHUNK: usize = 1024;

/// A pool: metadata and data device, configuration and the state shared
/// with its volumes.
pub(crate) struct PoolTarget {
    metadata_dev: Dev,
    data: Dev,
    config: PoolConfig,
    core: Arc<PoolCore>,
    /// Its length and events (`space.rs`); the device claim is the core's.
    table: space::TableSide,
}

impl PoolTarget {
    /// Runs a valid message: changes the metadata and commits.
    fn run(&self, m: &Message) -> Result<(), pool::Error> {
        if let Message::Delete { id } = *m {
            return self.delete_in_steps(id);
        }
        let mut st = self.core.state.lock();
        let pool = &mut st.meta.as_mut().ok_or(pool::Error::Io)?.pool;
        // A new volume is as large as the data device (a longer volume
        // table grows it).
        let size = pool.stats().data_extents;
        match *m {
            Message::Create { id } => pool.create_volume(id, size)?,
            // Handled above.
            Message::Delete { .. } => return Err(pool::Error::Invalid),
            Message::Snapshot { origin, new } => {
                pool.snapshot(origin, new)?;
                // An active origin: the snapshot invalidated the fast map
                // and the lock holds new writes (the worker and the
                // try-lock level need it); wait for those in flight, so
                // that none lands in the now shared extents.
                if let Err(e) = self.core.quiesce(origin) {
                    pr_err!("{}: writes to volume {} did not end within 10 s of a snapshot\n", POOL_TARGET, origin);
                    let _ = self.core.commit_locked(&mut st, false);
                    return Err(e);
                }
            }
            Message::SetTransactionId { old, new } => {
                let now = pool.stats().transaction_id;
                if now != old {
                    pr_warn!(
                        "{}: set_transaction_id {} {} refused: the transaction id is {}\n",
                        POOL_TARGET,
                        old,
                        new,
                        now
                    );
                }
                pool.set_transaction_id(old, new)?
            }
        }
        self.core.commit_locked(&mut st, false)
    }

    /// `delete <id>`: unmaps the volume in steps of at most
    /// [`DELETE_STEP_NODES`] freed table nodes, taking the pool's lock for
    /// each step only, so that a large volume's deletion does not hold up
    /// the worker (other volumes' provisions, breaks and flushes). The
    /// first step hides the volume (the pool core's *deleting* mark: no
    /// table can bind to it any more); the last removes it and frees the
    /// id; then the transaction is committed. A snapshot's table (shared)
    /// is dropped in one step with one reference decrement. A commit in
    /// between (a flush, the periodic commit) may persist a half-deleted
    /// volume: the pool finishes it when it is opened again
    /// ([`finish_deletions`]), and a `delete` of it again finishes it too.
    /// A failed step fails the pool as any failed core operation does
    /// (the caller's `note_core`); the pool entering `fail` between steps
    /// stops the deletion.
    fn delete_in_steps(&self, id: u32) -> Result<(), pool::Error> {
        let size = {
            let mut st = self.core.state.lock();
            let pool = &mut st.meta.as_mut().ok_or(pool::Error::Io)?.pool;
            match pool.volume(id) {
                Ok(info) => info.size,
                // Half deleted already (an earlier delete stopped midway).
                Err(pool::Error::NotFound) => match pool.next_volume(id)? {
                    Some(info) if info.id == id && info.deleting => info.size,
                    _ => return Err(pool::Error::NotFound),
                },
                Err(e) => return Err(e),
            }
        };
        // Each step unmaps more of the volume than the one before (it
        // frees at least one node past what is unmapped), so at most
        // `size` steps.
        let mut reached = 0u64;
        for _ in 0..=size {
            let mut st = self.core.state.lock();
            if self.core.fail.is_failed() {
                return Err(pool::Error::Io);
            }
            // Under the lock, as `attach` checks the volume: no table can
            // bind between this check and the step (after the first step
            // the volume is hidden from constructors).
            if self.core.is_active(id) {
                return Err(pool::Error::Busy);
            }
            let pool = &mut st.meta.as_mut().ok_or(pool::Error::Io)?.pool;
            let r = pool.delete_volume_step(id, DELETE_STEP_NODES)?;
            if r >= size {
                return self.core.commit_locked(&mut st, false);
            }
            if r <= reached {
                return Err(pool::Error::Corrupt);
            }
            reached = r;
            // Dropping the lock lets the worker in between steps (and
            // this lets it run on a kernel without preemption).
            drop(st);
            crate::kbind::dm::cond_resched();
        }
        Err(pool::Error::Corrupt)
    }
}

/// Table nodes freed (or shared subtrees dropped) per hold of the pool's
/// lock by a `delete`: each costs at most one node read and the reference
/// count changes of its up to 678 entries (`Documentation/snapshot-
/// target.rst`, "delete").
const DELETE_STEP_NODES: u64 = 16;

/// Finishes the deletions a crash or a stopped `delete` left half done
/// (volumes with the pool core's *deleting* mark), at pool construction,
/// each in one call, and commits. The volume directory is walked once (at
/// most `max_volumes` records). An error stops it: what was not finished
/// stays half deleted (a `delete` of the id, or the next open, finishes
/// it).
fn finish_deletions(pool: &mut Pool<'static, MetaDev>) -> Result<(), pool::Error> {
    let mut from = 0u32;
    let mut any = false;
    while let Some(info) = pool.next_volume(from)? {
        if info.deleting {
            pool.delete_volume(info.id)?;
            pr_info!("{}: finished deleting volume {}\n", POOL_TARGET, info.id);
            any = true;
        }
        let Some(next) = info.id.checked_add(1) else { break };
        from = next;
    }
    if any {
        pool.commit()?;
    }
    Ok(())
}

impl Drop for PoolTarget {
    fn drop(&mut self) {
        // Another table of the pool's device is bound to the core (reload).
        if !space::release(self) {
            return;
        }
        let core = &self.core;
        super::unpublish(core);
        // Closes the queue: nothing is queued from now on, so neither
        // delayed work can queue itself again once cancelled.
        let wq = core.wq.lock().take();
        cancel_dwork(core, &core.commit_work);
        cancel_dwork(core, &core.space_work);
        // Drains the workers (no volume is active: each holds the pool
        // device open, so the pool cannot be removed before them).
        drop(wq);
        let mut st = core.state.lock();
        if let Err(e) = core.commit_locked(&mut st, false) {
            if core.fail.log_commit_error() {
                pr_err!("{}: final commit failed: {:?}\n", POOL_TARGET, e);
            }
        }
        core.retry_needs_check(&mut st, Attempt::Last);
        st.meta = None;
        st.data = None;
        drop(st);
        drop(core.sysfs.lock().take());
        space::close(core);
    }
}

impl Target for PoolTarget {
    const NAME: &'static CStr = c"snapguard-pool";
    const VERSION: [u32; 3] = [0, 1, 0];
    const FEATURES: u32 = dm::features::SINGLETON | dm::features::ALWAYS_WRITEABLE | dm::features::IMMUTABLE;

    fn ctr(ctr: &mut Ctr<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
        let table = parse_pool_table(ctr.args()).map_err(|e| refuse(POOL_TARGET, ctr.args(), e))?;
        let config = table.config;
        let len = ctr.len();
        if len < config.extent_sectors {
            pr_err!(
                "{}: target length {} sectors is below one extent ({} sectors)\n",
                POOL_TARGET,
                len,
                config.extent_sectors
            );
            return Err(CtrError::inval(c"Pool length below one extent"));
        }
        let write_meta = !config.features.read_only;
        let metadata_dev = ctr.get_device(0, write_meta, c"Error opening metadata device")?;
        let data = ctr.get_device(1, true, c"Error opening data device")?;
        if metadata_dev.devt() == data.devt() {
            return Err(CtrError::inval(c"Metadata and data devices must differ"));
        }
        let data_io = ctr.block_io(data).ok_or(CtrError::inval(c"Error opening data device"))?;
        if data_io.nr_sectors() < len {
            pr_err!(
                "{}: the data device has {} sectors, the target {}\n",
                POOL_TARGET,
                data_io.nr_sectors(),
                len
            );
            return Err(CtrError::inval(c"Data device smaller than the pool target"));
        }
        let data_extents = len >> config.extent_shift();
        if let Some(core) = super::find_pool(ctr.md_devt()) {
            // A reload of a live pool's table (`space.rs`).
            return space::bind(ctr, core, config, metadata_dev, data, data_extents);
        }
        let claim = DeviceClaim::take([metadata_dev.devt(), data.devt()])?;
        let copy_buf = IoBuf::new(COPY_CHUNK).map_err(|_| CtrError::NOMEM)?;
        let wq = OwnedQueue::new().map_err(|_| CtrError::NOMEM)?;
        let cells = prison::Prison::new(wq.handle()).map_err(|_| CtrError::NOMEM)?;
        let io = ctr.block_io(metadata_dev).ok_or(CtrError::inval(c"Error opening metadata device"))?;
        let blocks = io.nr_sectors() / BLOCK_SECTORS;
        let buf = IoBuf::new(BLOCK_SIZE).map_err(|_| CtrError::NOMEM)?;
        let mut meta = Metadata::open(MetaDev { io, buf, blocks }, &config, data_extents)?;
        let needs_check = meta.pool.needs_check();
        if needs_check {
            let (major, minor) = crate::kbind::bdev::dev_parts(metadata_dev.devt());
            pr_warn!(
                "{}: the metadata's needs_check flag is set: switching the pool to read-only mode; remove it and run `snapguard pool check --clear-needs-check` on the metadata device ({}:{})\n",
                POOL_TARGET,
                major,
                minor
            );
        } else if !config.features.read_only {
            // Not fatal: the pool opens as the pool core does (a failed
            // core is noticed by the first commit, status or message).
            if let Err(e) = finish_deletions(&mut meta.pool) {
                pr_err!("{}: half-done volume deletions not finished: {:?}\n", POOL_TARGET, e);
            }
        }
        // The fast map: one slot per data extent, at most FAST_SLOTS_MAX
        // (40 bytes each), plus the epoch slot.
        let nfast = usize::try_from(data_extents).unwrap_or(usize::MAX).min(FAST_SLOTS_MAX).saturating_add(1);
        let mut fast_slots = VVec::<FastSlot>::with_capacity(nfast, GFP_KERNEL | __GFP_ZERO)
            .map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate the fast map" })?;
        // SAFETY: the capacity is `nfast` zeroed slots, and the all-zero
        // bit pattern is a valid empty `FastSlot` (documented by the pool
        // core).
        unsafe { fast_slots.inc_len(nfast) };
        // SAFETY: the buffer lives as long as `fast_slots`, which goes into
        // the `PoolCore` and outlives its pool and readers there (field
        // order); moving the `VVec` does not move its buffer. Only shared
        // references are made.
        let fast_arena: &'static [FastSlot] = unsafe { core::slice::from_raw_parts(fast_slots.as_ptr(), nfast) };
        let fast = FastMap::new(fast_arena).ok_or(CtrError { err: ENOMEM, msg: c"Cannot allocate the fast map" })?;
        meta.pool.set_fast_map(fast);
        let data_fast = ctr.block_io(data).ok_or(CtrError::inval(c"Error opening data device"))?;
        ctr.set_num_flush_bios(1);
        let stats = PoolStats::new().map_err(|_| CtrError::NOMEM)?;
        let sysfs = PoolDir::new(ctr.md_devt(), stats.clone())
            .map_err(|err| CtrError { err, msg: c"Cannot create the pool's sysfs directory" })?;
        let st = PoolState {
            meta: Some(meta),
            data: Some(data_io),
            copy_buf,
            prison: prison::PrisonState::new(),
            space: space::SpaceState::new(&config),
        };
        let table = space::TableSide::new(ctr, data_extents);
        let core = Arc::pin_init(
            pin_init!(PoolCore {
                md_devt: ctr.md_devt(),
                extent_shift: config.extent_shift(),
                extent_sectors: config.extent_sectors,
                zero_new: !config.features.skip_block_zeroing,
                discard: config.features.discard != Discard::Ignore,
                passdown: config.features.discard == Discard::Passdown,
                fail: PoolFail::new(ctr.md_devt(), config.features.read_only, needs_check),
                stats,
                state <- new_mutex!(st),
                fast,
                data_fast,
                _fast_slots: fast_slots,
                active <- new_mutex!(KVec::new()),
                wq <- new_spinlock!(Some(wq)),
                commit_work <- new_delayed_work!("snapguard-pool commit"),
                prison: cells,
                space <- space::Space::new(config, [metadata_dev, data], claim),
                space_work <- new_delayed_work!("snapguard-pool no space"),
                sysfs <- new_mutex!(Some(sysfs)),
            }),
            GFP_KERNEL,
        )
        .map_err(|_| CtrError::NOMEM)?;
        super::publish(core.clone())?;
        let t = PoolTarget { metadata_dev, data, config, core, table };
        KBox::pin(t, GFP_KERNEL).map_err(|_| CtrError::NOMEM)
    }

    fn map(&self, devs: &Devices, bio: &mut Bio<'_>) -> MapResult {
        // I/O to the pool device itself goes to the data device, as with
        // dm-thin's pool.
        let sector = bio.target_sector();
        match bio.remap(devs, self.data, sector) {
            Ok(()) => MapResult::Remapped,
            Err(_) => MapResult::Kill,
        }
    }

    fn status(&self, devs: &Devices, kind: StatusType, out: &mut Emit<'_>) {
        let _ = match kind {
            StatusType::Table => {
                self.config
                    .write_table(out, devs.name(self.metadata_dev), devs.name(self.data))
            }
            StatusType::Info => {
                let Some((st, sp)) = self.core.space_status() else {
                    return;
                };
                let f = &self.config.features;
                self.core.fail.core_state(st.failed);
                if self.core.fail.flag_pending() {
                    // The flag is written where the state lock is taken
                    // anyway: the commit work.
                    PoolCore::schedule_commit(&self.core);
                }
                PoolStatus {
                    transaction_id: st.transaction_id,
                    meta_used: st.meta_blocks.saturating_sub(st.meta_free),
                    meta_total: st.meta_blocks,
                    data_used: st.data_extents.saturating_sub(st.data_free),
                    data_total: st.data_extents,
                    mode: match self.core.fail.status_mode() {
                        PoolMode::ReadWrite if sp.out_of_space => PoolMode::OutOfDataSpace,
                        m => m,
                    },
                    discard: f.discard,
                    no_space: if sp.error { NoSpacePolicy::Error } else { NoSpacePolicy::Queue },
                    needs_check: self.core.fail.needs_check(),
                }
                .write(out)
            }
            StatusType::Ima => Ok(()),
        };
    }

    fn limits_device(&self) -> Option<Dev> {
        Some(self.data)
    }

    fn postsuspend(&self) {
        if let Err(e) = self.core.commit() {
            if self.core.fail.log_commit_error() {
                pr_err!("{}: commit at suspend failed: {:?}\n", POOL_TARGET, e);
            }
        }
        self.core.retry_needs_check(&mut self.core.state.lock(), Attempt::Retry);
    }

    fn preresume(&self) -> Result {
        space::preresume(self)
    }

    fn message(&self, args: &[&[u8]], _out: &mut Emit<'_>) -> Result {
        let mut t = Text::<256>::new();
        let m = match parse_message(args) {
            Ok(m) => m,
            Err(e) => {
                let _ = write!(t, "{}", e);
                pr_warn!("{}: message refused: {}\n", POOL_TARGET, t.as_str());
                return Err(EINVAL);
            }
        };
        let _ = write!(t, "{}", m);
        if let Some(e) = self.core.fail.refuse_message(t.as_str()) {
            return Err(e);
        }
        let r = self.run(&m);
        if r.is_ok() && matches!(m, Message::Delete { .. }) {
            // The committed delete may let writes held for space go on.
            self.core.space_freed_unlocked();
        }
        r.map_err(|e| {
            self.core.note_core(&mut self.core.state.lock());
            let mut why = Text::<64>::new();
            let _ = write!(why, "{}", e);
            pr_warn!("{}: message '{}' failed: {}\n", POOL_TARGET, t.as_str(), why.as_str());
            errno(e)
        })
    }
}
