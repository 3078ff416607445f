// SPDX-License-Identifier: GPL-2.0

//! The `snapguard` (volume) target: `0 <sectors> snapguard <pool dev>
//! <volume id>`.
//!
//! `map` never sleeps nor allocates: it appends the bio to the volume's
//! deferred list (a spinlock-protected intrusive list) and queues the
//! volume's work item on the pool's workqueue. The worker
//! ([`PoolCore::process`]) does everything else under the pool's lock:
//! lookups, remapping and submission, zero-filled reads of unmapped
//! extents, and one commit per batch for flushes and FUA writes;
//! provisioning (zeroed) and sharing breaks (copied) are prepared there and
//! run outside the lock by the pool's bio prison (`prison.rs`). See
//! `Documentation/snapshot-target.rst`.

use super::pool::PoolCore;
use super::{errno, find_pool, refuse};
use crate::dmtarget::{parse_volume_table, write_volume_table, VOLUME_TARGET};
use crate::kbind::dm::{
    Bio, BioList, Ctr, CtrError, Dev, Devices, Emit, EndIo, Limits, MapResult, OwnedBio, StatusType, Target,
};
use core::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::{Arc, SpinLock};
use kernel::time::{delay::fsleep, Delta};
use kernel::workqueue::{impl_has_work, new_work, Work, WorkItem};

/// Per-bio word: set when the bio is a read or write counted in
/// [`VolumeCore::inflight`] (its end uncounts it), with the generation in
/// [`GEN_BIT`]. Otherwise the word holds the data sector of a FUA write
/// waiting for a commit, or 0.
const COUNTED: u64 = 1 << 63;
/// The generation (0 or 1) of a counted write.
const GEN_BIT: u64 = 1 << 62;
/// Longest wait (ms) in [`VolumeCore::drain`].
const DRAIN_MS: u32 = 10_000;
/// Most batches one run of the worker takes before it queues itself again
/// (so that other volumes' work gets the pool's lock in between).
const MAX_ROUNDS: usize = 16;

/// A volume's state shared by its target, the pool and the worker.
#[pin_data]
pub(crate) struct VolumeCore {
    pub(crate) id: u32,
    pub(crate) pool: Arc<PoolCore>,
    /// Bios `map` deferred to the worker, in arrival order.
    #[pin]
    deferred: SpinLock<BioList>,
    /// Bios that need space the pool does not have, held until space
    /// appears or the bound passes (`space.rs`).
    #[pin]
    pub(crate) held: SpinLock<BioList>,
    /// Writes counted by generation (see [`VolumeCore::enter`]): remapped
    /// or submitted and not ended, or being looked up in `map`.
    inflight: [AtomicUsize; 2],
    /// The current generation (its low bit indexes `inflight`).
    gen: AtomicUsize,
    /// Identity of the volume in the pool (keys the pool's fast map).
    pub(crate) uid: u64,
    /// A `--noflush` suspend is under way: writes that would be held for
    /// space go back to dm's core instead (`space.rs`). Set and read under
    /// the pool's lock.
    pub(crate) requeue: AtomicBool,
    /// The worker put bios back to wait for a prison cell: its run ends
    /// (the cell's release kicks it again).
    stalled: AtomicBool,
    #[pin]
    work: Work<VolumeCore>,
}

impl_has_work! {
    impl HasWork<Self> for VolumeCore { self.work }
}

impl WorkItem for VolumeCore {
    type Pointer = Arc<VolumeCore>;

    fn run(this: Arc<VolumeCore>) {
        for _ in 0..MAX_ROUNDS {
            let batch = this.deferred.lock().take();
            if batch.is_empty() {
                return;
            }
            if this.pool.process(&this, batch) {
                PoolCore::schedule_commit(&this.pool);
            }
            if this.stalled.swap(false, Ordering::AcqRel) {
                return;
            }
        }
        Self::kick(this);
    }
}

impl VolumeCore {
    /// Queues the worker (a no-op if it is queued already).
    pub(crate) fn kick(this: Arc<VolumeCore>) {
        let pool = this.pool.clone();
        let (open, back) = pool.enqueue_volume(this);
        if let (false, Some(v)) = (open, back.as_ref()) {
            // The pool is going: fail what is left.
            let left = v.deferred.lock().take();
            drop(left);
        }
        drop(back);
    }

    /// Puts `list` back in front of the deferred bios (the prison: bios
    /// that waited on a cell or for one, in order).
    pub(crate) fn requeue_front(&self, list: BioList) {
        self.deferred.lock().prepend(list);
    }

    /// Ends the worker's current run after this batch (see `stalled`).
    pub(crate) fn set_stalled(&self) {
        self.stalled.store(true, Ordering::Release);
    }

    /// Puts the held bios back in front of the deferred ones and queues
    /// the worker (space appeared); returns whether there were any.
    pub(crate) fn requeue_held(this: &Arc<VolumeCore>) -> bool {
        let held = this.held.lock().take();
        if held.is_empty() {
            return false;
        }
        this.requeue_front(held);
        Self::kick(this.clone());
        true
    }

    /// Counts a read or write in the current generation, before its extent is
    /// looked up; returns the per-bio word to store if the write goes on
    /// ([`VolumeCore::leave`] with it otherwise). A SRCU-like pair of
    /// counters: [`VolumeCore::drain`] waits only for the generation it
    /// closes, so writes that keep coming cannot starve it.
    pub(crate) fn enter(&self) -> u64 {
        let g = self.gen.load(Ordering::SeqCst) & 1;
        if let Some(c) = self.inflight.get(g) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        // Pairs with the fence in `drain`: either `drain` sees this count,
        // or the lookup after this sees the invalidation made before it.
        fence(Ordering::SeqCst);
        COUNTED | if g == 1 { GEN_BIT } else { 0 }
    }

    /// Uncounts a write counted with per-bio word `word`.
    pub(crate) fn leave(&self, word: u64) {
        if word & COUNTED == 0 {
            return;
        }
        let g = usize::from(word & GEN_BIT != 0);
        if let Some(c) = self.inflight.get(g) {
            c.fetch_sub(1, Ordering::Release);
        }
    }

    /// Counts `b` (a read or write) as in flight before the worker submits
    /// it.
    pub(crate) fn count_io(&self, b: &mut OwnedBio) {
        let w = self.enter();
        b.set_per_bio(w);
    }

    /// Waits (bounded) until every write counted before this call has
    /// ended: closes the current generation and waits for its count to
    /// reach zero. Called after an invalidation of the pool's fast map
    /// (snapshot, discard), under the pool's lock (so calls do not
    /// overlap), it guarantees no write remapped from a stale entry is
    /// still in flight.
    pub(crate) fn drain(&self) -> Result {
        fence(Ordering::SeqCst);
        let old = self.gen.fetch_add(1, Ordering::SeqCst) & 1;
        let Some(c) = self.inflight.get(old) else { return Ok(()) };
        for _ in 0..DRAIN_MS {
            if c.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            fsleep(Delta::from_millis(1));
        }
        Err(EBUSY)
    }
}

/// A volume of a pool.
pub(crate) struct VolumeTarget {
    pool_dev: Dev,
    core: Arc<VolumeCore>,
}

impl Drop for VolumeTarget {
    fn drop(&mut self) {
        // device-mapper ended every bio before the destructor; the worker
        // may still be finishing a run, which holds its own reference.
        self.core.pool.detach(&self.core);
    }
}

impl Target for VolumeTarget {
    const NAME: &'static CStr = c"snapguard";
    const VERSION: [u32; 3] = [0, 2, 0];
    const FEATURES: u32 = 0;

    fn ctr(ctr: &mut Ctr<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
        let table = parse_volume_table(ctr.args()).map_err(|e| refuse(VOLUME_TARGET, ctr.args(), e))?;
        let id = table.volume_id;
        let write = ctr.table_writable();
        let pool_dev = ctr.get_device(0, write, c"Error opening pool device")?;
        let Some(pool) = find_pool(pool_dev.devt()) else {
            pr_err!(
                "{}: device {} is not a live snapguard pool\n",
                VOLUME_TARGET,
                ctr.args().first().map_or("?", |a| core::str::from_utf8(a).unwrap_or("?"))
            );
            return Err(CtrError::inval(c"Not a snapguard pool device"));
        };
        let (size, uid) = match pool.volume_sectors(id) {
            Ok(s) => s,
            Err(crate::pool::Error::NotFound) => {
                pr_err!("{}: the pool has no volume {}\n", VOLUME_TARGET, id);
                return Err(CtrError { err: ENOENT, msg: c"Unknown volume" });
            }
            Err(e) => {
                pr_err!("{}: cannot read volume {}: {:?}\n", VOLUME_TARGET, id, e);
                return Err(CtrError { err: errno(e), msg: c"Cannot read the volume" });
            }
        };
        if ctr.len() > size {
            // A longer table grows the volume (`space.rs`).
            pool.grow_volume(id, ctr.len())?;
        }
        ctr.set_deferred_io(pool.extent_sectors)?;
        if pool.discard {
            ctr.enable_discards();
        }
        let pool2 = pool.clone();
        let core = Arc::pin_init(
            pin_init!(VolumeCore {
                id,
                pool: pool2,
                deferred <- new_spinlock!(BioList::new()),
                held <- new_spinlock!(BioList::new()),
                inflight: [AtomicUsize::new(0), AtomicUsize::new(0)],
                gen: AtomicUsize::new(0),
                uid,
                requeue: AtomicBool::new(false),
                stalled: AtomicBool::new(false),
                work <- new_work!("snapguard volume worker"),
            }),
            GFP_KERNEL,
        )
        .map_err(|_| CtrError::NOMEM)?;
        pool.attach(core.clone())?;
        let t = VolumeTarget { pool_dev, core };
        // On failure `t` is dropped, which detaches the volume again.
        KBox::pin(t, GFP_KERNEL).map_err(|_| CtrError::NOMEM)
    }

    fn map(&self, _devs: &Devices, bio: &mut Bio<'_>) -> MapResult {
        bio.set_per_bio(0);
        if let Some(r) = self.core.pool.map_inline(&self.core, bio) {
            self.core.pool.stats.inline();
            return r;
        }
        self.core.pool.stats.deferred();
        // Returning `Submitted` hands the bio over to the worker.
        let owned = bio.take();
        self.core.deferred.lock().push(owned);
        VolumeCore::kick(self.core.clone());
        MapResult::Submitted
    }

    fn end_io(&self, bio: &mut Bio<'_>) -> EndIo {
        let word = bio.per_bio();
        // A whole-extent write held by the pool's prison.
        if let Some(r) = self.core.pool.held_end_io(word, bio) {
            return r;
        }
        // Flushes, discards and bios ended by the target carry no count.
        self.core.leave(word);
        EndIo::Done
    }

    fn limits_device(&self) -> Option<Dev> {
        // The pool device, which stacks on the data device.
        Some(self.pool_dev)
    }

    fn io_hints(&self, limits: &mut Limits<'_>) {
        if self.core.pool.discard {
            limits.set_discard(u32::try_from(self.core.pool.extent_sectors).unwrap_or(u32::MAX));
        }
    }

    fn presuspend(&self, noflush: bool) {
        // A normal suspend waits for every bio the target holds (a held
        // write: until space appears or the no-space bound passes). With
        // `--noflush` (what LVM uses for thin volumes) they go back to
        // dm's core, which keeps them across the suspend and maps them
        // again after the resume, as dm-thin's requeue mode does.
        if noflush {
            self.core.pool.requeue_for_suspend(&self.core);
        }
    }

    fn presuspend_undo(&self) {
        self.core.pool.end_requeue(&self.core);
    }

    fn postsuspend(&self) {
        // Held bios (none now) may be kept again after the resume.
        self.core.pool.end_requeue(&self.core);
        if let Err(e) = self.core.pool.commit() {
            if self.core.pool.fail.log_commit_error() {
                pr_err!("{}: commit at suspend failed: {:?}\n", VOLUME_TARGET, e);
            }
        }
    }

    fn status(&self, devs: &Devices, kind: StatusType, out: &mut Emit<'_>) {
        let _ = match kind {
            StatusType::Table => write_volume_table(out, devs.name(self.pool_dev), self.core.id),
            StatusType::Info => self.core.pool.volume_status(self.core.id).write(out),
            StatusType::Ima => Ok(()),
        };
    }
}
