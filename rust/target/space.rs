// SPDX-License-Identifier: GPL-2.0

//! Space of a pool: table reload, growth, out-of-space handling, the low
//! water event and volume growth (a child module of `pool.rs`, whose
//! private state it uses; see `Documentation/snapshot-target.rst`,
//! "Space and growth").
//!
//! - **Reload.** A new table on the mapped device of a live pool binds to
//!   its [`PoolCore`] (as dm-thin's `__pool_find`): same metadata and data
//!   device, same extent size and features, except `error_if_no_space` and
//!   the low water mark, which take effect at resume. The last table to go
//!   closes the pool. Another mapped device using a live pool's devices
//!   stays refused ([`super::super::DeviceClaim`]).
//! - **Growth.** At resume ([`preresume`]) the pool grows to the table's
//!   length and to the metadata device's size, and commits: within the
//!   capacities chosen at format time ([`format_caps`]) in O(1), beyond
//!   them with a growth extension of the pool's space maps (the table's
//!   constructor checks that it can be placed, [`check_length`]).
//! - **No space.** A write that needs an extent the pool does not have
//!   (data or metadata) is held on its volume's list (queue mode, at most
//!   [`NO_SPACE_TIMEOUT_MS`]) or fails at once with `ENOSPC`
//!   (`error_if_no_space`, or once the bound passed). Space appearing
//!   (grow, delete, discard) requeues the held bios in order.
//! - **Events.** Free data extents at or below the low water mark raise one
//!   dm event (re-armed when free space goes back above it); so does
//!   entering the out-of-space state.

use super::{BLOCK_SECTORS, POOL_TARGET};
use super::{MetaDev, PoolCore, PoolState, PoolTarget};
use crate::dmtarget::{PoolConfig, VOLUME_TARGET};
use crate::kbind::dm::{BioList, Ctr, CtrError, Dev, TableEvents};
use crate::pool::{self, FormatParams, Pool, PoolStats, MAX_DATA_EXTENTS};
use crate::target::volume::VolumeCore;
use crate::target::{errno, DeviceClaim};
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::time::{msecs_to_jiffies, Instant, Monotonic};
use kernel::workqueue::WorkItem;

/// How long a write waits for space in `queue_if_no_space` mode before it
/// fails with `ENOSPC` (ms): dm-thin's default `no_space_timeout`.
pub(super) const NO_SPACE_TIMEOUT_MS: u32 = 60_000;
/// Data capacity chosen at format time: 32 extents per metadata block, so
/// that its space maps (8 bytes per extent of capacity: two copies of a
/// 4-byte count, written only once used) take at most 1/16 of the
/// metadata device; never below the data size.
const CAP_EXTENTS_PER_META_BLOCK: u64 = 32;
/// Metadata capacity chosen at format time: 4 times the metadata device
/// (8 bytes per block of capacity: 1/128 of the device).
const META_CAP_FACTOR: u64 = 4;
/// Most metadata blocks of capacity (16 GiB, dm-thin's metadata limit).
const META_CAP_MAX: u64 = 4 << 20;

/// Sets the growth capacities of a pool being formatted on a metadata
/// device of `meta_blocks` blocks (see the constants above).
pub(super) fn format_caps(p: &mut FormatParams, meta_blocks: u64) {
    let data_cap = meta_blocks.saturating_mul(CAP_EXTENTS_PER_META_BLOCK).min(MAX_DATA_EXTENTS);
    p.data_capacity = p.data_extents.max(data_cap);
    p.meta_capacity = meta_blocks.max(meta_blocks.saturating_mul(META_CAP_FACTOR).min(META_CAP_MAX));
}

/// Checks a table of `data_extents` against an open pool whose metadata
/// device has `dev_blocks` blocks now: no shrinking, and the growth the
/// resume will do must be possible (beyond what the space maps hold it
/// needs a growth extension: room for it in the metadata, and fewer than
/// [`pool::MAX_GROWTH_EXTENSIONS`] so far). Changes nothing. A failed or
/// read-only pool is left to the resume, which refuses to grow it.
pub(super) fn check_length(pool: &mut Pool<'static, MetaDev>, data_extents: u64, dev_blocks: u64) -> Result<(), CtrError> {
    let st = pool.stats();
    if data_extents < st.data_extents {
        pr_err!(
            "{}: the table has {} data extents, the pool {}: shrinking a pool is not supported\n",
            POOL_TARGET,
            data_extents,
            st.data_extents
        );
        return Err(CtrError::inval(c"Pool length below the pool's data size"));
    }
    let meta = dev_blocks.max(st.meta_blocks);
    if st.failed || (data_extents == st.data_extents && meta == st.meta_blocks) {
        return Ok(());
    }
    match pool.grow_check(data_extents, meta) {
        Ok(_) => Ok(()),
        Err(pool::Error::NoMetadataSpace) => {
            let need = pool.growth_extension_blocks(data_extents, meta);
            pr_err!(
                "{}: growing to {} data extents and {} metadata blocks, beyond the {} extents and {} blocks the pool's space maps hold: that needs a growth extension of {} metadata blocks, and the metadata device has no free run that long; grow the metadata device by at least {} blocks too\n",
                POOL_TARGET,
                data_extents,
                meta,
                st.data_capacity,
                st.meta_capacity,
                need,
                need
            );
            Err(CtrError { err: ENOSPC, msg: c"No metadata space to grow the pool's space maps" })
        }
        Err(pool::Error::Invalid) if st.extensions >= pool::MAX_GROWTH_EXTENSIONS => {
            pr_err!(
                "{}: the table has {} data extents and the metadata device {} blocks, beyond the {} extents and {} blocks the pool's space maps hold, and the pool has {} growth extensions, the most it can have\n",
                POOL_TARGET,
                data_extents,
                meta,
                st.data_capacity,
                st.meta_capacity,
                st.extensions
            );
            Err(CtrError::inval(c"Pool cannot grow further"))
        }
        Err(e) => {
            pr_err!(
                "{}: the pool cannot grow to {} data extents and {} metadata blocks: {:?}\n",
                POOL_TARGET,
                data_extents,
                meta,
                e
            );
            Err(CtrError { err: errno(e), msg: c"Pool cannot grow to the table's size" })
        }
    }
}

/// The pool-wide part of the space state, in [`PoolCore`].
#[pin_data]
pub(crate) struct Space {
    /// The pool's metadata and data devices (a bound table uses the same).
    meta_devt: u32,
    data_devt: u32,
    /// The first table's configuration (features that cannot change).
    config: PoolConfig,
    /// Tables bound to the core; the last one to go closes the pool.
    tables: AtomicUsize,
    /// The pool's device claim, released when the pool is closed.
    #[pin]
    claim: Mutex<Option<DeviceClaim>>,
    /// The table events are raised on: the last one resumed, cleared when
    /// that table is destroyed.
    #[pin]
    events: Mutex<Option<TableEvents>>,
}

impl Space {
    /// The space of a new pool opened by its first table.
    pub(super) fn new(config: PoolConfig, devs: [Dev; 2], claim: DeviceClaim) -> impl PinInit<Self> {
        pin_init!(Space {
            meta_devt: devs[0].devt(),
            data_devt: devs[1].devt(),
            config,
            tables: AtomicUsize::new(1),
            claim <- new_mutex!(Some(claim)),
            events <- new_mutex!(None),
        })
    }
}

/// The space state under the pool's lock ([`PoolState`]).
pub(crate) struct SpaceState {
    /// The active table's `error_if_no_space`.
    error_if_no_space: bool,
    /// The active table's low water mark (free data extents).
    low_water: u64,
    /// The low water event may be raised (free space was above the mark).
    low_armed: bool,
    /// Out of space since then (status `out_of_data_space`).
    since: Option<Instant<Monotonic>>,
    /// Held bios waited [`NO_SPACE_TIMEOUT_MS`]: writes that need space
    /// fail at once until space appears.
    timed_out: bool,
}

impl SpaceState {
    /// The state of a new pool (the table's settings apply at resume).
    pub(super) fn new(config: &PoolConfig) -> Self {
        SpaceState {
            error_if_no_space: config.features.error_if_no_space,
            low_water: config.low_water_extents,
            low_armed: true,
            since: None,
            timed_out: false,
        }
    }
}

/// What the pool's status shows of the space state.
pub(super) struct SpaceStatus {
    /// `out_of_data_space`.
    pub(super) out_of_space: bool,
    /// `error_if_no_space` in effect (by the table or after the bound).
    pub(super) error: bool,
}

/// The per-table part: what a pool table resumes with.
pub(super) struct TableSide {
    /// The table's length in extents.
    data_extents: u64,
    /// The table's events.
    events: TableEvents,
}

impl TableSide {
    /// The side of the table being constructed.
    pub(super) fn new(ctr: &Ctr<'_>, data_extents: u64) -> Self {
        TableSide { data_extents, events: ctr.table_events() }
    }
}

kernel::impl_has_delayed_work! {
    impl HasDelayedWork<Self, 1> for PoolCore { self.space_work }
}

/// The out-of-space bound: fails the held bios once they waited
/// [`NO_SPACE_TIMEOUT_MS`].
impl WorkItem<1> for PoolCore {
    type Pointer = Arc<PoolCore>;

    fn run(this: Arc<PoolCore>) {
        let mut st = this.state.lock();
        let Some(since) = st.space.since else { return };
        if st.space.timed_out || st.space.error_if_no_space {
            return;
        }
        let waited = u32::try_from(since.elapsed().as_millis()).unwrap_or(u32::MAX);
        if waited < NO_SPACE_TIMEOUT_MS {
            drop(st);
            PoolCore::schedule_timeout(&this, NO_SPACE_TIMEOUT_MS.saturating_sub(waited));
            return;
        }
        st.space.timed_out = true;
        pr_warn!(
            "{}: no space for {} s: held writes fail with ENOSPC, as do writes that need space until space appears\n",
            POOL_TARGET,
            NO_SPACE_TIMEOUT_MS / 1000
        );
        this.fail_held();
    }
}

impl PoolCore {
    /// Queues the out-of-space bound in `ms` unless it is queued already.
    fn schedule_timeout(this: &Arc<Self>, ms: u32) {
        let back = {
            let g = this.wq.lock();
            g.as_ref().and_then(|q| q.get().enqueue_delayed::<_, 1>(this.clone(), msecs_to_jiffies(ms)).err())
        };
        // Not the last reference: `this` is one.
        drop(back);
    }

    /// Ends every held bio with `ENOSPC`.
    fn fail_held(&self) {
        for v in self.active.lock().iter() {
            let mut l: BioList = v.held.lock().take();
            while let Some(b) = l.pop() {
                b.end(Some(ENOSPC));
            }
        }
    }

    /// Raises a dm event on the active table.
    fn raise_event(&self) {
        if let Some(ev) = self.space.events.lock().as_ref() {
            // SAFETY: `events` holds a table's handle only from its
            // resume until its target's destructor clears it ([`release`],
            // under this lock), so the table is alive.
            unsafe { ev.raise() };
        }
    }

    /// The worker's end of a bio whose plan failed with `e`: a write
    /// without space is held (queue mode) or fails with `ENOSPC`; any other
    /// error ends it.
    pub(super) fn end_or_hold(&self, st: &mut PoolState, v: &VolumeCore, b: crate::kbind::dm::OwnedBio, e: pool::Error) {
        if !matches!(e, pool::Error::NoSpace | pool::Error::NoMetadataSpace) {
            b.end(Some(errno(e)));
            return;
        }
        let entered = st.space.since.is_none();
        if entered {
            st.space.since = Some(Instant::now());
            let what = if matches!(e, pool::Error::NoSpace) { "data" } else { "metadata" };
            if st.space.error_if_no_space {
                pr_warn!("{}: out of {} space: writes that need space fail with ENOSPC\n", POOL_TARGET, what);
            } else {
                pr_warn!(
                    "{}: out of {} space: writes that need space are held (up to {} s)\n",
                    POOL_TARGET,
                    what,
                    NO_SPACE_TIMEOUT_MS / 1000
                );
            }
            self.raise_event();
        }
        if st.space.error_if_no_space || st.space.timed_out {
            b.end(Some(ENOSPC));
            return;
        }
        if v.requeue.load(Ordering::Relaxed) {
            // A noflush suspend of the volume: dm's core keeps it.
            b.requeue();
            return;
        }
        v.held.lock().push(b);
        if entered {
            PoolCore::schedule_timeout(&v.pool, NO_SPACE_TIMEOUT_MS);
        }
    }

    /// Space may have appeared (grow, delete, discard): leaves the
    /// out-of-space state if the pool has a free data extent and free
    /// metadata, and requeues the held bios. The caller holds the lock.
    pub(super) fn space_freed(&self, st: &mut PoolState) {
        if st.space.since.is_none() {
            return;
        }
        let Some(s) = st.meta.as_ref().map(|m| m.pool.stats()) else { return };
        if s.data_free == 0 || s.meta_free == 0 {
            return;
        }
        st.space.since = None;
        st.space.timed_out = false;
        pr_info!(
            "{}: space available again ({} free data extents): held writes resume\n",
            POOL_TARGET,
            s.data_free
        );
        for v in self.active.lock().iter() {
            VolumeCore::requeue_held(v);
        }
    }

    /// A `--noflush` suspend of volume `v` begins: its held bios go back
    /// to dm's core (kept there until the resume), and so does every
    /// write that would be held until [`PoolCore::end_requeue`]. Under the
    /// lock, so that the worker cannot hold a bio after the list was taken.
    pub(crate) fn requeue_for_suspend(&self, v: &VolumeCore) {
        let _st = self.state.lock();
        v.requeue.store(true, Ordering::Relaxed);
        let mut l: BioList = v.held.lock().take();
        while let Some(b) = l.pop() {
            b.requeue();
        }
    }

    /// The suspend of volume `v` is over (`postsuspend`).
    pub(crate) fn end_requeue(&self, v: &VolumeCore) {
        let _st = self.state.lock();
        v.requeue.store(false, Ordering::Relaxed);
    }

    /// As [`PoolCore::space_freed`], taking the lock.
    pub(super) fn space_freed_unlocked(&self) {
        self.space_freed(&mut self.state.lock());
    }

    /// Raises the low water event once when the free data extents are at
    /// or below the mark; re-arms it once they are above.
    pub(super) fn space_note(&self, st: &mut PoolState) {
        let Some(free) = st.meta.as_ref().map(|m| m.pool.stats().data_free) else { return };
        if free > st.space.low_water {
            st.space.low_armed = true;
        } else if st.space.low_armed {
            st.space.low_armed = false;
            pr_info!(
                "{}: {} free data extents, at or below the low water mark of {}\n",
                POOL_TARGET,
                free,
                st.space.low_water
            );
            self.raise_event();
        }
    }

    /// The pool's figures and the space part of its status.
    pub(super) fn space_status(&self) -> Option<(PoolStats, SpaceStatus)> {
        let st = self.state.lock();
        let s = st.meta.as_ref()?.pool.stats();
        let sp = SpaceStatus {
            out_of_space: st.space.since.is_some(),
            error: st.space.error_if_no_space || st.space.timed_out,
        };
        Some((s, sp))
    }

    /// Grows volume `id` to at least `sectors` (a volume table longer than
    /// the volume), committed.
    pub(crate) fn grow_volume(&self, id: u32, sectors: u64) -> Result<(), CtrError> {
        match self.fail.check_commit() {
            Ok(true) => {}
            Ok(false) => return Err(CtrError { err: EROFS, msg: c"Cannot grow a volume of a read-only pool" }),
            Err(_) => return Err(CtrError { err: EIO, msg: c"Cannot grow a volume of a failed pool" }),
        }
        let es = self.extent_sectors;
        let size = sectors.div_ceil(es);
        let mut st = self.state.lock();
        let meta = st.meta.as_mut().ok_or(CtrError { err: EIO, msg: c"The pool is closed" })?;
        let old = meta.pool.volume(id).map(|i| i.size).unwrap_or(0);
        if let Err(e) = meta.pool.resize_volume(id, size) {
            pr_err!("{}: cannot grow volume {} to {} extents: {:?}\n", VOLUME_TARGET, id, size, e);
            return Err(match e {
                pool::Error::Invalid => CtrError::inval(c"Volume size above the pool's limit"),
                _ => CtrError { err: errno(e), msg: c"Cannot grow the volume" },
            });
        }
        if let Err(e) = self.commit_locked(&mut st, false) {
            pr_err!("{}: commit after growing volume {} failed: {:?}\n", VOLUME_TARGET, id, e);
            return Err(CtrError { err: EIO, msg: c"Cannot grow the volume" });
        }
        pr_info!("{}: volume {} grown from {} to {} extents\n", VOLUME_TARGET, id, old, size);
        Ok(())
    }
}

/// Binds a new table of a live pool's mapped device to its core (a table
/// reload), after checking that it describes the same pool; the
/// constructor checked that the data device holds the table's
/// `data_extents`.
pub(super) fn bind(
    ctr: &mut Ctr<'_>,
    core: Arc<PoolCore>,
    config: PoolConfig,
    metadata_dev: Dev,
    data: Dev,
    data_extents: u64,
) -> Result<Pin<KBox<PoolTarget>>, CtrError> {
    let sp = &core.space;
    if metadata_dev.devt() != sp.meta_devt {
        pr_err!("{}: a live pool's metadata device cannot change on reload\n", POOL_TARGET);
        return Err(CtrError::inval(c"Different pool cannot replace a live pool"));
    }
    if data.devt() != sp.data_devt {
        pr_err!("{}: a live pool's data device cannot change on reload (grow the same device instead)\n", POOL_TARGET);
        return Err(CtrError::inval(c"Different data device cannot replace a live pool's"));
    }
    if config.extent_sectors != sp.config.extent_sectors {
        pr_err!(
            "{}: the pool's extent size is {} sectors, the table says {}\n",
            POOL_TARGET,
            sp.config.extent_sectors,
            config.extent_sectors
        );
        return Err(CtrError::inval(c"Extent size differs from the pool's"));
    }
    let (mut a, mut b) = (config.features, sp.config.features);
    a.error_if_no_space = false;
    b.error_if_no_space = false;
    if a != b {
        pr_err!(
            "{}: on a live pool's reload only error_if_no_space and the low water mark may change\n",
            POOL_TARGET
        );
        return Err(CtrError::inval(c"Features of a live pool cannot change"));
    }
    {
        let mut st = core.state.lock();
        let meta = st.meta.as_mut().ok_or(CtrError { err: EIO, msg: c"The pool is closed" })?;
        let dev = meta.pool.device_mut();
        let dev_blocks = dev.io.nr_sectors() / BLOCK_SECTORS;
        // A grown device may be used now (the resume sets it again, and
        // refuses a shrunk one); the pool grows into it only at resume.
        if dev_blocks > dev.blocks {
            dev.blocks = dev_blocks;
        }
        check_length(&mut meta.pool, data_extents, dev_blocks)?;
    }
    // The last table may be going: then this one cannot bind.
    sp.tables
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| if n == 0 { None } else { n.checked_add(1) })
        .map_err(|_| CtrError { err: EBUSY, msg: c"The pool is being removed" })?;
    let table = TableSide::new(ctr, data_extents);
    let t = PoolTarget { metadata_dev, data, config, core, table };
    // On failure `t` is dropped, which unbinds it again.
    KBox::pin(t, GFP_KERNEL).map_err(|_| CtrError::NOMEM)
}

/// A pool table's destructor: stops raising events on its table and
/// unbinds it; returns whether it was the pool's last table (which then
/// closes the pool).
pub(super) fn release(t: &PoolTarget) -> bool {
    {
        let mut ev = t.core.space.events.lock();
        if *ev == Some(t.table.events) {
            *ev = None;
        }
    }
    t.core.space.tables.fetch_sub(1, Ordering::AcqRel) == 1
}

/// The last table's destructor, once the metadata is closed: releases the
/// pool's devices to other pools.
pub(super) fn close(core: &PoolCore) {
    drop(core.space.claim.lock().take());
}

/// The pool table's `preresume`: makes it the table events are raised on,
/// applies its `error_if_no_space` and low water mark, grows the pool to
/// its length and to the metadata device's size (committed), and lets held
/// writes go on if space appeared.
pub(super) fn preresume(t: &PoolTarget) -> Result {
    let core = &t.core;
    *core.space.events.lock() = Some(t.table.events);
    let mut st = core.state.lock();
    st.space.error_if_no_space = t.config.features.error_if_no_space;
    st.space.low_water = t.config.low_water_extents;
    if st.space.error_if_no_space && st.space.since.is_some() {
        // Switched to error mode: held writes fail now.
        core.fail_held();
    }
    let meta = st.meta.as_mut().ok_or(EIO)?;
    let s = meta.pool.stats();
    let dev = meta.pool.device_mut();
    let dev_blocks = dev.io.nr_sectors() / BLOCK_SECTORS;
    if dev_blocks < s.meta_blocks {
        pr_err!(
            "{}: the metadata device has {} blocks, the pool uses {}: it must not shrink\n",
            POOL_TARGET,
            dev_blocks,
            s.meta_blocks
        );
        return Err(EINVAL);
    }
    let new_meta = dev_blocks;
    let new_data = t.table.data_extents;
    if new_data < s.data_extents {
        // Checked by the constructor; the pool cannot have shrunk since.
        return Err(EINVAL);
    }
    if new_data > s.data_extents || new_meta > s.meta_blocks {
        if t.config.features.read_only {
            pr_err!("{}: a read-only pool cannot grow\n", POOL_TARGET);
            return Err(EROFS);
        }
        dev.blocks = dev_blocks;
        meta.pool.grow(new_data, new_meta).map_err(|e| {
            pr_err!("{}: growing the pool failed: {:?}\n", POOL_TARGET, e);
            errno(e)
        })?;
        let n = meta.pool.stats();
        core.commit_locked(&mut st, false).map_err(|e| {
            pr_err!("{}: commit after growing the pool failed: {:?}\n", POOL_TARGET, e);
            EIO
        })?;
        pr_info!(
            "{}: pool grown to {} data extents (from {}, capacity {}), {} metadata blocks (from {}, capacity {})\n",
            POOL_TARGET,
            new_data,
            s.data_extents,
            s.data_capacity,
            new_meta,
            s.meta_blocks,
            s.meta_capacity
        );
        if n.extensions > s.extensions {
            pr_info!(
                "{}: growth extension {} of the space maps: {} metadata blocks, capacity now {} data extents, {} metadata blocks\n",
                POOL_TARGET,
                n.extensions,
                n.meta_fixed.saturating_sub(s.meta_fixed),
                n.data_capacity,
                n.meta_capacity
            );
        }
    }
    core.space_freed(&mut st);
    core.space_note(&mut st);
    Ok(())
}
