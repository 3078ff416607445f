// SPDX-License-Identifier: GPL-2.0

//! The `snapguard` (volume) target: `0 <sectors> snapguard <pool dev>
//! <volume id>`.
//!
//! `map` never sleeps nor allocates: it appends the bio to the volume's
//! deferred list (a spinlock-protected intrusive list) and queues the
//! volume's work item on the pool's workqueue. The worker
//! ([`PoolCore::process`]) does everything else under the pool's lock:
//! lookups, provisioning (zeroed), sharing breaks (copied), remapping and
//! submission, zero-filled reads of unmapped extents, and one commit per
//! batch for flushes and FUA writes. See
//! `Documentation/snapshot-target.rst`.

use super::pool::PoolCore;
use super::{find_pool, refuse};
use crate::dmtarget::{parse_volume_table, write_volume_table, VOLUME_TARGET};
use crate::kbind::dm::{
    Bio, BioKind, BioList, Ctr, CtrError, Dev, Devices, Emit, Limits, MapResult, OwnedBio, StatusType, Target,
};
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::{Arc, SpinLock};
use kernel::workqueue::{impl_has_work, new_work, Work, WorkItem};

/// Per-bio word: set when the worker submitted the bio as a write it
/// counts in [`VolumeCore::inflight`] (the end of such a bio uncounts it).
/// Other bits hold the data sector of a FUA write waiting for a commit.
const COUNTED: u64 = 1 << 63;
/// Most batches one run of the worker takes before it queues itself again
/// (so that other volumes' work gets the pool's lock in between).
const MAX_ROUNDS: usize = 16;

/// A volume's state shared by its target, the pool and the worker.
#[pin_data]
pub(crate) struct VolumeCore {
    pub(crate) id: u32,
    pool: Arc<PoolCore>,
    /// Bios `map` deferred to the worker, in arrival order.
    #[pin]
    deferred: SpinLock<BioList>,
    /// Writes the worker submitted that have not ended yet.
    inflight: AtomicUsize,
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
        }
        Self::kick(this);
    }
}

impl VolumeCore {
    /// Queues the worker (a no-op if it is queued already).
    fn kick(this: Arc<VolumeCore>) {
        let pool = this.pool.clone();
        let (open, back) = pool.enqueue_volume(this);
        if let (false, Some(v)) = (open, back.as_ref()) {
            // The pool is going: fail what is left.
            let left = v.deferred.lock().take();
            drop(left);
        }
        drop(back);
    }

    /// Counts `b` as an in-flight write before it is submitted.
    pub(crate) fn count_write(&self, b: &mut OwnedBio) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        b.set_per_bio(COUNTED);
    }

    /// Counts a write `map` remaps inline.
    pub(crate) fn count_inline_write(&self, b: &mut Bio<'_>) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        b.set_per_bio(COUNTED);
    }

    /// Writes submitted and not ended.
    pub(crate) fn inflight_writes(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
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
        let size = match pool.volume_sectors(id) {
            Ok(s) => s,
            Err(crate::pool::Error::NotFound) => {
                pr_err!("{}: the pool has no volume {}\n", VOLUME_TARGET, id);
                return Err(CtrError { err: ENOENT, msg: c"Unknown volume" });
            }
            Err(e) => {
                pr_err!("{}: cannot read volume {}: {:?}\n", VOLUME_TARGET, id, e);
                return Err(CtrError { err: Error::from_errno(-e.to_errno()), msg: c"Cannot read the volume" });
            }
        };
        if ctr.len() > size {
            pr_err!("{}: table length {} sectors exceeds volume {} ({} sectors)\n", VOLUME_TARGET, ctr.len(), id, size);
            return Err(CtrError::inval(c"Table longer than the volume"));
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
                inflight: AtomicUsize::new(0),
                work <- new_work!("snapguard volume worker"),
            }),
            GFP_KERNEL,
        )
        .map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate memory" })?;
        pool.attach(core.clone()).map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate memory" })?;
        let t = VolumeTarget { pool_dev, core };
        // On failure `t` is dropped, which detaches the volume again.
        KBox::pin(t, GFP_KERNEL).map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate memory" })
    }

    fn map(&self, _devs: &Devices, bio: &mut Bio<'_>) -> MapResult {
        bio.set_per_bio(0);
        if let Some(r) = self.core.pool.map_inline(&self.core, bio) {
            return r;
        }
        // Returning `Submitted` hands the bio over to the worker.
        let owned = bio.take();
        self.core.deferred.lock().push(owned);
        VolumeCore::kick(self.core.clone());
        MapResult::Submitted
    }

    fn end_io(&self, bio: &mut Bio<'_>) {
        if bio.kind() == BioKind::Write && bio.per_bio() & COUNTED != 0 {
            self.core.inflight.fetch_sub(1, Ordering::AcqRel);
        }
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

    fn postsuspend(&self) {
        if let Err(e) = self.core.pool.commit() {
            pr_err!("{}: commit at suspend failed: {:?}\n", VOLUME_TARGET, e);
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
