// SPDX-License-Identifier: GPL-2.0

//! The bio prison and the provisioning and sharing-break operations that
//! run outside the pool's lock (see `Documentation/snapshot-target.rst`,
//! "I/O path").
//!
//! A write to an unmapped extent (with zeroing) or to a shared one takes a
//! *cell*: one of [`CELLS`] preallocated operation slots of the pool,
//! keyed by (volume, virtual extent). Under the pool's lock the worker
//! prepares the operation in the pool core ([`Pool::prepare_provision`] or
//! [`Pool::prepare_break`]: the new extent is allocated and reserved but
//! not mapped, and a commit meanwhile writes it as free), then releases
//! the lock while the cell's work item zeroes or copies the extent, or
//! while the write itself, when it covers the whole extent, goes straight
//! to the new extent. The cell's work then retakes the lock to complete
//! (or cancel) the operation, so a mapping to a new extent never becomes
//! durable before its contents are on the data device. Every other bio of
//! that volume to that extent waits on the cell meanwhile (parked, no
//! allocation) and goes back to the volume's worker, in order, when the
//! cell is released. If no cell is free, the worker stops the batch and
//! puts it back (bios wait on the worker queue), to be retried when a cell
//! is released.
//!
//! [`Pool::prepare_provision`]: crate::pool::Pool::prepare_provision
//! [`Pool::prepare_break`]: crate::pool::Pool::prepare_break

use super::super::volume::VolumeCore;
use super::{PoolCore, PoolState, COPY_CHUNK};
use crate::target::errno;
use crate::kbind::dm::{Bio, BioKind, BioList, BlockIo, EndIo, HeldBio, IoBuf, OwnedBio, QueueHandle};
use crate::pool::{self, BreakPlan, Mapping};
use core::sync::atomic::{AtomicI32, Ordering};
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex, SpinLock};
use kernel::workqueue::{impl_has_work, new_work, Work, WorkItem};
use kernel::{new_mutex, new_spinlock};

/// Operations (provisions and breaks) in flight at once per pool: as many
/// as a queue depth of 16 asks for (each copies or zeroes synchronously on
/// its own work item, so fewer cells cap copy-on-write at that depth).
pub(super) const CELLS: usize = 16;
/// Per-bio word of a whole-extent write held by a cell: `HELD | cell`
/// (the volume's counted words have bit 63 set, FUA sector words are
/// below 2^61).
const HELD: u64 = 1 << 61;
/// The bits that tell the kinds of per-bio word apart.
const KIND_BITS: u64 = 0b111 << 61;

/// What a cell's operation does before it completes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Zero the new extent (a provision).
    Zero,
    /// Copy the old extent to the new one (a break).
    Copy,
    /// The write covering the whole extent was submitted to the new
    /// extent; its `end_io` queues the cell's work.
    Write,
}

/// A busy cell's operation, set by the worker under the pool's lock.
struct Job {
    /// The volume whose bio started it (keeps it and the pool alive).
    vol: Option<Arc<VolumeCore>>,
    op: Op,
    plan: BreakPlan,
    /// A provision (else a break).
    provision: bool,
    /// [`Op::Zero`] / [`Op::Copy`]: the bio that started the operation
    /// (its payload is merged into the new extent when it can be).
    bio: Option<OwnedBio>,
}

/// One operation slot: its work item runs the zeroing or copy without the
/// pool's lock, then completes the operation under it.
#[pin_data]
pub(super) struct Cell {
    idx: usize,
    #[pin]
    job: SpinLock<Job>,
    /// Bounce buffer for copies ([`COPY_CHUNK`] bytes); only the cell's
    /// work uses it.
    #[pin]
    buf: Mutex<IoBuf>,
    /// Completion status (an errno, 0: success) of an [`Op::Write`].
    status: AtomicI32,
    #[pin]
    work: Work<Cell>,
}

impl_has_work! {
    impl HasWork<Self> for Cell { self.work }
}

impl WorkItem for Cell {
    type Pointer = Arc<Cell>;

    fn run(this: Arc<Cell>) {
        let (vol, op, plan, provision, first) = {
            let mut j = this.job.lock();
            (j.vol.clone(), j.op, j.plan, j.provision, j.bio.take())
        };
        match vol {
            Some(v) => {
                let pool = v.pool.clone();
                pool.finish_cell(&this, &v, op, &plan, provision, first);
            }
            // Not reached (the worker sets both together); never leak a bio.
            None => {
                if let Some(b) = first {
                    b.end(Some(EIO));
                }
            }
        }
    }
}

/// The cells of a pool (immutable after the constructor) and the handle
/// `end_io` queues their work with.
pub(super) struct Prison {
    cells: KVec<Arc<Cell>>,
    wq: QueueHandle,
}

impl Prison {
    /// Allocates the cells (and their copy buffers).
    pub(super) fn new(wq: QueueHandle) -> Result<Self> {
        let mut cells = KVec::with_capacity(CELLS, GFP_KERNEL)?;
        for idx in 0..CELLS {
            let buf = IoBuf::new(COPY_CHUNK)?;
            let empty = BreakPlan { volume: 0, vext: 0, old: 0, new: 0, uid: 0, token: 0 };
            let c = Arc::pin_init(
                pin_init!(Cell {
                    idx,
                    job <- new_spinlock!(Job { vol: None, op: Op::Zero, plan: empty, provision: false, bio: None }),
                    buf <- new_mutex!(buf),
                    status: AtomicI32::new(0),
                    work <- new_work!("snapguard cell"),
                }),
                GFP_KERNEL,
            )?;
            cells.push(c, GFP_KERNEL)?;
        }
        Ok(Prison { cells, wq })
    }
}

/// A cell's state as the worker sees it (under the pool's lock).
struct Slot {
    busy: bool,
    uid: u64,
    vext: u64,
    /// The `VolumeCore` (address, identity only) whose bios park here.
    vol: usize,
    /// [`Op::Write`]: the submitted whole-extent write.
    held: Option<HeldBio>,
    /// Later bios to the extent, in arrival order.
    parked: BioList,
}

/// The held extents of a pool: part of the state under the pool's lock.
pub(super) struct PrisonState {
    slots: [Slot; CELLS],
}

impl PrisonState {
    pub(super) fn new() -> Self {
        PrisonState {
            slots: core::array::from_fn(|_| Slot {
                busy: false,
                uid: 0,
                vext: 0,
                vol: 0,
                held: None,
                parked: BioList::new(),
            }),
        }
    }

    fn find(&mut self, uid: u64, vext: u64) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.busy && s.uid == uid && s.vext == vext)
    }

    /// Whether an operation holds extent `vext` of volume `uid`.
    pub(super) fn holds(&self, uid: u64, vext: u64) -> bool {
        self.slots.iter().any(|s| s.busy && s.uid == uid && s.vext == vext)
    }

    fn any_busy(&self) -> bool {
        self.slots.iter().any(|s| s.busy)
    }
}

/// What the worker does with a bio after the prison saw it.
pub(super) enum Admit {
    /// The usual path (lookup, submit).
    Go(OwnedBio),
    /// The prison took it (parked, started an operation, or ended it).
    Taken,
    /// It must wait for a cell: stop the batch and retry later.
    Wait(OwnedBio),
}

/// Copies extent `from` to `to` (`es` sectors) through `buf` (the cells'
/// copies and the worker's own, `PoolCore::copy_extent`).
pub(super) fn copy_extent(data: &BlockIo, buf: &mut IoBuf, from: u64, to: u64, es: u64) -> Result<(), pool::Error> {
    fill_extent(data, buf, Some(from), to, es, None)
}

/// Writes extent `to` (`es` sectors) chunk by chunk through `buf`: each
/// chunk holds extent `from`'s bytes (read first) or, with `None`, zeroes,
/// except where the write `merge` (a bio and its first sector within the
/// extent, inside it) covers the chunk: there its payload. A chunk that is
/// to be zeroed and meets no payload is zeroed on the device instead
/// (`REQ_OP_WRITE_ZEROES` where the device has it).
fn fill_extent(
    data: &BlockIo,
    buf: &mut IoBuf,
    from: Option<u64>,
    to: u64,
    es: u64,
    merge: Option<(&OwnedBio, u64)>,
) -> Result<(), pool::Error> {
    let csec = ((COPY_CHUNK / 512) as u64).min(es);
    let steps = es.checked_div(csec).unwrap_or(0);
    let len = usize::try_from(csec.saturating_mul(512)).map_err(|_| pool::Error::Invalid)?;
    let dst0 = to.checked_mul(es).ok_or(pool::Error::Invalid)?;
    for i in 0..steps {
        let off = i.checked_mul(csec).ok_or(pool::Error::Invalid)?;
        let dst = dst0.checked_add(off).ok_or(pool::Error::Invalid)?;
        // The part of the write in this chunk: sectors [a, b) of the extent.
        let part = merge.and_then(|(b, ws)| {
            let a = ws.max(off);
            let e = ws.saturating_add(b.sectors()).min(off.saturating_add(csec));
            (a < e).then_some((b, ws, a, e))
        });
        match from {
            Some(f) => {
                let src = f.checked_mul(es).and_then(|s| s.checked_add(off)).ok_or(pool::Error::Invalid)?;
                data.read_part(src, buf, len).map_err(|_| pool::Error::Io)?;
            }
            None if part.is_none() => {
                data.zero_out(dst, csec).map_err(|_| pool::Error::Io)?;
                continue;
            }
            None => buf.as_mut_slice().fill(0),
        }
        if let Some((b, ws, a, e)) = part {
            let at = usize::try_from(a.saturating_sub(off).saturating_mul(512)).map_err(|_| pool::Error::Invalid)?;
            let n = usize::try_from(e.saturating_sub(a).saturating_mul(512)).map_err(|_| pool::Error::Invalid)?;
            let skip = usize::try_from(a.saturating_sub(ws).saturating_mul(512)).map_err(|_| pool::Error::Invalid)?;
            let dst_bytes = at
                .checked_add(n)
                .and_then(|end| buf.as_mut_slice().get_mut(at..end))
                .ok_or(pool::Error::Invalid)?;
            b.copy_data_to(skip, dst_bytes).map_err(|_| pool::Error::Invalid)?;
        }
        data.write_part(dst, buf, len).map_err(|_| pool::Error::Io)?;
    }
    Ok(())
}

impl PoolCore {
    /// The worker's prison step for bio `b` of volume `v`, under the
    /// pool's lock: a bio to a held extent parks on its cell; a write that
    /// needs a new extent (unmapped with zeroing, or shared) starts an
    /// operation in a free cell.
    pub(super) fn prison_admit(&self, st: &mut PoolState, v: &Arc<VolumeCore>, b: OwnedBio) -> Admit {
        let kind = b.kind();
        if !matches!(kind, BioKind::Read | BioKind::Write | BioKind::Discard) {
            return Admit::Go(b);
        }
        let es = self.extent_sectors;
        let sector = b.target_sector();
        let vext = sector.checked_shr(self.extent_shift).unwrap_or(0);
        let me = Arc::as_ptr(v) as usize;
        if let Some(s) = st.prison.find(v.uid, vext) {
            if s.vol != me {
                // Another table of the same volume holds it: rare (a
                // reload); its bios cannot share this cell's list.
                return Admit::Wait(b);
            }
            s.parked.push(b);
            return Admit::Taken;
        }
        if kind != BioKind::Write {
            return Admit::Go(b);
        }
        let Some(meta) = st.meta.as_mut() else {
            b.end(Some(EIO));
            return Admit::Taken;
        };
        let m = meta.pool.lookup(v.id, vext);
        // A read-only or failed pool starts no operation: `plan` ends the
        // write with the mode's error.
        if let Ok(m) = m {
            if self.fail.check_write(m).is_err() {
                return Admit::Go(b);
            }
        }
        let provision = match m {
            Ok(Mapping::Unmapped) if self.zero_new => true,
            Ok(Mapping::Mapped { shared: true, .. }) => false,
            Ok(_) => return Admit::Go(b),
            Err(e) => {
                b.end(Some(errno(e)));
                return Admit::Taken;
            }
        };
        let Some(idx) = st.prison.slots.iter().position(|s| !s.busy) else {
            return Admit::Wait(b);
        };
        let plan =
            if provision { meta.pool.prepare_provision(v.id, vext) } else { meta.pool.prepare_break(v.id, vext) };
        let plan = match plan {
            Ok(p) if p.new == p.old => return Admit::Go(b),
            Ok(p) => p,
            // The pending table is full: wait for an operation to end.
            Err(pool::Error::Busy) if st.prison.any_busy() => return Admit::Wait(b),
            // Out of space, a failed pool...: the usual path (`plan`)
            // meets the same error and applies the pool's policy.
            Err(_) => return Admit::Go(b),
        };
        let (Some(cell), Some(slot), Some(data)) =
            (self.prison.cells.get(idx), st.prison.slots.get_mut(idx), st.data.as_ref())
        else {
            b.end(Some(EIO));
            return Admit::Taken;
        };
        let whole = sector & es.wrapping_sub(1) == 0 && b.sectors() == es;
        let op = match (whole, provision) {
            (true, _) => Op::Write,
            (false, true) => Op::Zero,
            (false, false) => Op::Copy,
        };
        slot.busy = true;
        slot.uid = v.uid;
        slot.vext = vext;
        slot.vol = me;
        {
            let mut j = cell.job.lock();
            j.vol = Some(v.clone());
            j.op = op;
            j.plan = plan;
            j.provision = provision;
        }
        cell.status.store(0, Ordering::Relaxed);
        if op == Op::Write {
            // Straight to the new extent, no zeroing or copy: the cell
            // completes the operation when the write has ended (`end_io`
            // queues its work), which cannot happen before the slot is
            // filled: the work takes the pool's lock, held here.
            let mut b = b;
            b.set_per_bio(HELD | idx as u64);
            slot.held = Some(b.submit_held(data, plan.new.saturating_mul(es)));
        } else {
            cell.job.lock().bio = Some(b);
            let back = {
                let g = self.wq.lock();
                g.as_ref().map(|q| q.get().enqueue(cell.clone()))
            };
            // The queue is closed only once no volume is left.
            drop(back);
        }
        Admit::Taken
    }

    /// The worker met a bio that must wait for a cell: puts it and the rest
    /// of its batch back in front of the volume's deferred bios; the
    /// volume is kicked when a cell is released. Called under the pool's
    /// lock, so no cell can be released in between.
    pub(super) fn prison_wait(&self, v: &Arc<VolumeCore>, b: OwnedBio, rest: BioList) {
        let mut list = BioList::new();
        list.push(b);
        list.append(rest);
        v.requeue_front(list);
        v.set_stalled();
    }

    /// `end_io` of a volume's bio with per-bio word `word`: a held
    /// whole-extent write records its status and queues its cell's work,
    /// which ends it again (interrupt context: atomics and `queue_work`
    /// only). `None`: not a held bio.
    pub(crate) fn held_end_io(&self, word: u64, bio: &Bio<'_>) -> Option<EndIo> {
        if word & KIND_BITS != HELD {
            return None;
        }
        let idx = usize::try_from(word & !KIND_BITS).ok()?;
        let cell = self.prison.cells.get(idx)?;
        let e = bio.status().map_or(0, |e| e.to_errno());
        cell.status.store(e, Ordering::Release);
        // SAFETY: the pool's queue is dropped only once no volume of the
        // pool is left, and this volume cannot go while this bio (not
        // ended for good) is outstanding.
        let q = unsafe { self.prison.wq.get() };
        // Not queued already: one `end_io` per operation.
        drop(q.enqueue(cell.clone()));
        Some(EndIo::Incomplete)
    }

    /// A cell's work: zeroes or copies without the pool's lock (or takes
    /// the whole-extent write's status), then completes or cancels the
    /// operation under it, ends or requeues the cell's bios and releases
    /// the cell.
    fn finish_cell(
        self: &Arc<Self>,
        cell: &Cell,
        v: &Arc<VolumeCore>,
        op: Op,
        plan: &BreakPlan,
        provision: bool,
        first: Option<OwnedBio>,
    ) {
        let es = self.extent_sectors;
        let data = &self.data_fast;
        // The write that started a zeroing or copy goes into the new
        // extent with it (one write of the extent instead of that and a
        // second one of the payload) unless it is FUA or carries a
        // preflush: those complete through the worker's commit.
        let merge = first.as_ref().and_then(|b| {
            let at = b.target_sector() & es.wrapping_sub(1);
            let plain = b.kind() == BioKind::Write && !b.is_fua() && !b.has_preflush();
            (plain && at.saturating_add(b.sectors()) <= es).then_some((b, at))
        });
        let merged = merge.is_some();
        let io: Result<(), pool::Error> = match op {
            Op::Zero => fill_extent(data, &mut cell.buf.lock(), None, plan.new, es, merge),
            Op::Copy => fill_extent(data, &mut cell.buf.lock(), Some(plan.old), plan.new, es, merge),
            Op::Write => match cell.status.load(Ordering::Acquire) {
                0 => Ok(()),
                _ => Err(pool::Error::Io),
            },
        };
        let mut st = self.state.lock();
        let done = match (io, st.meta.as_mut()) {
            (Ok(()), Some(m)) if provision => m.pool.complete_provision(plan),
            (Ok(()), Some(m)) => m.pool.complete_break(plan),
            (Err(e), Some(m)) => {
                // Frees the new extent; never mapped.
                let _ = if provision { m.pool.cancel_provision(plan) } else { m.pool.cancel_break(plan) };
                Err(e)
            }
            (_, None) => Err(pool::Error::Io),
        };
        match (&done, provision) {
            (Ok(()), true) => self.stats.provision(),
            (Ok(()), false) => self.stats.sharing_break(),
            _ => {}
        }
        let Some(slot) = st.prison.slots.get_mut(cell.idx) else {
            // Not reached (`idx` < CELLS); never leak a bio.
            drop(st);
            if let Some(b) = first {
                b.end(Some(EIO));
            }
            return;
        };
        let held = slot.held.take();
        let mut redo = BioList::new();
        redo.append(slot.parked.take());
        slot.busy = false;
        let old = cell.job.lock().vol.take();
        // A whole-extent write ends after the completion, and a FUA one
        // after a commit covering it.
        let mut ended = None;
        if let Some(h) = held {
            // SAFETY: an `Op::Write` cell's work is queued only by the
            // write's `end_io` (`held_end_io`), which answered
            // `Incomplete`.
            let mut b = unsafe { h.reclaim() };
            b.set_per_bio(0);
            let r = match done {
                Ok(()) if b.is_fua() => self.commit_locked(&mut st, true),
                r => r,
            };
            ended = Some((b, r));
        }
        let dirty = Self::dirty(&st);
        drop(st);
        drop(old);
        if let Some((b, r)) = ended {
            b.end(r.err().map(errno));
        }
        let mut front = BioList::new();
        if let Some(mut b) = first {
            match done {
                // Its payload is in the extent now mapped: done.
                Ok(()) if merged => {
                    b.set_per_bio(0);
                    b.end(None);
                }
                // Done, or the plan went stale: the worker redoes the
                // write from a new lookup.
                Ok(()) | Err(pool::Error::Busy) => front.push(b),
                Err(e) => b.end(Some(errno(e))),
            }
        }
        front.append(redo);
        v.requeue_front(front);
        if dirty {
            PoolCore::schedule_commit(self);
        }
        // Volumes that waited for a cell, and this one.
        for a in self.active.lock().iter() {
            VolumeCore::kick(a.clone());
        }
    }
}
