//! Volume operations.

use super::block::{rd_u16, rd_u32, rd_u64, wr_u16, wr_u32, wr_u64};
use super::cache::SLOT_PENDING;
use super::geom::{Kind, SmKind, MAX_DEPTH};
use super::read::{self, Cached, VolRec, REC_DELETING};
use super::{
    BgItem, BgProgress, BreakPlan, Error, GroupOp, Mapping, MetaDevice, Pool, VolumeInfo,
    BLOCK_SIZE, MAX_GROUP_OPS, MAX_PENDING_BREAKS, MAX_PENDING_PER_VOLUME, MAX_VOLUME_EXTENTS,
    PENDING_ENTRY,
};

/// Pending-break entry flag: the extent's mapping may have changed since
/// the break was prepared; completing it only frees its new extent.
const PENDING_STALE: u16 = 1;
/// The entry's new extent is beyond the data size it was reset to (it was
/// allocated in a growth the reset dropped): the entry holds no extent, so
/// its completion or cancellation frees nothing and the space map never
/// counts it (the extent may exist again after a later growth, free).
pub(crate) const PENDING_GONE: u16 = 2;
/// Pending-break entries per pinned slot.
const PENDING_PER_SLOT: usize = BLOCK_SIZE / PENDING_ENTRY;

impl<D: MetaDevice> Pool<'_, D> {
    fn rec(&mut self, id: u32) -> Result<Option<VolRec>, Error> {
        let geo = self.geo;
        let gen = self.gen();
        let root = self.work.dir_root;
        read::rec_get(&mut self.loader(), &geo, root, id, gen)
    }

    /// The record of a volume that exists and is not being deleted.
    fn rec_req(&mut self, id: u32) -> Result<VolRec, Error> {
        self.rec(id)?
            .filter(|r| !r.deleting())
            .ok_or(Error::NotFound)
    }

    /// Checks that an ordinary operation may allocate `n` metadata blocks.
    fn need_meta(&self, n: u64) -> Result<(), Error> {
        if self.meta_avail_normal() < n {
            Err(Error::NoMetadataSpace)
        } else {
            Ok(())
        }
    }

    /// Checks that a space-freeing operation may allocate `n` metadata
    /// blocks (it may use the reserve).
    fn need_meta_freeing(&self, n: u64) -> Result<(), Error> {
        if self.meta_avail() < n {
            Err(Error::NoMetadataSpace)
        } else {
            Ok(())
        }
    }

    /// A new volume identity.
    fn new_uid(&mut self) -> u64 {
        let u = self.work.next_uid;
        self.work.next_uid = u.saturating_add(1);
        u
    }

    fn raw(&mut self, rec: &VolRec, vext: u64) -> Result<u64, Error> {
        let geo = self.geo;
        let gen = self.gen();
        read::vol_raw(&mut self.loader(), &geo, rec, vext, gen)
    }

    /// Sets the value of `vext` (shadowing the path); returns the old one.
    fn vol_set(&mut self, rec: &mut VolRec, vext: u64, v: u64) -> Result<u64, Error> {
        let depth = Kind::Vol.depth_for(rec.size)?;
        let (root, leaf) = self.path_mut(rec.root, Kind::Vol, depth, vext, 0)?;
        rec.root = root;
        let idx = Kind::Vol.index(0, vext)?;
        let old = self.node_entry(leaf, Kind::Vol, 0, idx)?;
        self.node_set(leaf, Kind::Vol, 0, idx, v)?;
        Ok(old)
    }

    /// Creates an empty (unmapped) volume `id` of `size` extents.
    pub fn create_volume(&mut self, id: u32, size: u64) -> Result<(), Error> {
        self.check_writable()?;
        if size == 0 || size > MAX_VOLUME_EXTENTS {
            return Err(Error::Invalid);
        }
        if self.rec(id)?.is_some() {
            return Err(Error::Exists);
        }
        self.need_meta(u64::from(self.geo.dir_depth))?;
        self.mutate(true, |p| {
            let rec = VolRec {
                size,
                uid: p.new_uid(),
                ..VolRec::default()
            };
            p.rec_put(id, Some(&rec))?;
            p.work.volumes = p.work.volumes.saturating_add(1);
            Ok(())
        })
    }

    /// Deletes volume `id`, freeing every node and extent only it used
    /// (also finishes a deletion begun by [`Pool::delete_volume_step`]).
    /// The work is proportional to what only this volume maps: use
    /// [`Pool::delete_volume_step`] for a bounded lock hold time.
    pub fn delete_volume(&mut self, id: u32) -> Result<(), Error> {
        self.check_writable()?;
        let rec = self.rec(id)?.ok_or(Error::NotFound)?;
        self.need_meta_freeing(u64::from(self.geo.dir_depth))?;
        self.mutate(true, |p| {
            p.pending_invalidate(id, 0, u64::MAX)?;
            let depth = Kind::Vol.depth_for(rec.size)?;
            p.dec_tree(rec.root, Kind::Vol, depth.saturating_sub(1))?;
            p.rec_put(id, None)?;
            p.work.volumes = p.work.volumes.saturating_sub(1);
            Ok(())
        })
    }

    /// A bounded step of deleting volume `id`. The first step marks the
    /// volume *deleting* in its record: from then on (and across commits,
    /// crashes and reopens) it is hidden from every operation
    /// ([`Pool::volume`] included) but [`Pool::next_volume`] (which shows
    /// [`VolumeInfo::deleting`]), [`Pool::next_mapping`] and the deletion;
    /// its pending breaks become stale and its id is not free. Each step
    /// then unmaps from the start of the volume as [`Pool::discard_step`]
    /// does, with a budget of `max_leaves` table nodes (each: one node
    /// read and freed, with the count changes of its at most 678 entries;
    /// a shared subtree dropped with one decrement counts one), and
    /// returns how many extents from the start are unmapped. A table or
    /// subtree whose freeing fits in what is left of the budget is
    /// dropped whole, as [`Pool::delete_volume`] drops it: nothing below
    /// a shared node is read, and no node is shadowed (a snapshot's
    /// shared table goes in one step with one decrement); only a subtree
    /// that frees more is descended, shadowing the path the step stops
    /// in, which the next step (or transaction) continues. When the
    /// volume's size is reached the step also removes the record: the
    /// volume is gone and the id free. The kernel loops, releasing its
    /// lock (and committing when it likes) between steps, and resumes a
    /// deleting volume found after a reopen. May use the metadata reserve.
    pub fn delete_volume_step(&mut self, id: u32, max_leaves: u64) -> Result<u64, Error> {
        self.check_writable()?;
        if max_leaves == 0 {
            return Err(Error::Invalid);
        }
        let rec = self.rec(id)?.ok_or(Error::NotFound)?;
        let depth = Kind::Vol.depth_for(rec.size)?;
        let tree = if rec.root == 0 {
            0
        } else {
            Kind::Vol.path_nodes(depth, 0, rec.size)?.min(
                max_leaves
                    .saturating_add(2)
                    .saturating_mul(u64::from(depth)),
            )
        };
        self.need_meta_freeing(tree.saturating_add(u64::from(self.geo.dir_depth)))?;
        self.mutate(true, |p| {
            let mut rec = rec;
            if !rec.deleting() {
                rec.flags |= REC_DELETING;
                p.pending_invalidate(id, 0, u64::MAX)?;
                // No entry of this uid is inserted again (every lookup
                // path refuses a deleting volume), so later steps need no
                // invalidation.
                p.fast_invalidate(rec.uid, 0, rec.size);
                p.rec_put(id, Some(&rec))?;
            }
            let reached = if rec.root == 0 {
                rec.size
            } else {
                p.discard_bounded(id, rec, 0, rec.size, Some(max_leaves), false)?
            };
            if reached >= rec.size {
                // Everything is unmapped and emptied nodes were pruned;
                // drop whatever is left of the table (nothing, normally).
                let r = p.rec(id)?.ok_or(Error::Corrupt)?;
                p.dec_tree(r.root, Kind::Vol, depth.saturating_sub(1))?;
                p.rec_put(id, None)?;
                p.work.volumes = p.work.volumes.saturating_sub(1);
            }
            Ok(reached.min(rec.size))
        })
    }

    /// Creates volume `dst` as a snapshot of `src`: O(1), the new volume
    /// shares the source's whole table.
    pub fn snapshot(&mut self, src: u32, dst: u32) -> Result<(), Error> {
        self.apply_group(&[GroupOp::Snapshot { src, dst }])
    }

    /// Shares `len` extents of `src` from `src_vext` into `dst` at
    /// `dst_vext`, replacing what `dst` mapped there (unmapped source
    /// extents unmap the destination). `src` may equal `dst`; overlapping
    /// ranges behave like `memmove`.
    pub fn copy_range(
        &mut self,
        src: u32,
        src_vext: u64,
        dst: u32,
        dst_vext: u64,
        len: u64,
    ) -> Result<(), Error> {
        self.apply_group(&[GroupOp::Copy {
            src,
            src_vext,
            dst,
            dst_vext,
            len,
        }])
    }

    /// Size of volume `id` as of just before `ops[upto]` of a group.
    fn group_size(
        &mut self,
        ops: &[GroupOp],
        upto: usize,
        id: u32,
    ) -> Result<Option<Option<u64>>, Error> {
        let mut id = id;
        let mut upto = upto.min(ops.len());
        let mut steps = 0usize;
        'chain: while steps <= ops.len() {
            steps = steps.saturating_add(1);
            let mut j = upto;
            while j > 0 {
                j = j.saturating_sub(1);
                if let Some(GroupOp::Snapshot { src, dst }) = ops.get(j) {
                    if *dst == id {
                        id = *src;
                        upto = j;
                        continue 'chain;
                    }
                }
            }
            // A volume being deleted exists (its id is taken) but cannot
            // be used: `Some(None)`.
            return Ok(self.rec(id)?.map(|r| (!r.deleting()).then_some(r.size)));
        }
        Err(Error::Invalid)
    }

    /// Applies snapshot and copy operations atomically: all of them are in
    /// the open transaction, or (on a validation or space error) none.
    /// Operations see the effect of the earlier ones (a copy may target a
    /// snapshot made earlier in the group).
    pub fn apply_group(&mut self, ops: &[GroupOp]) -> Result<(), Error> {
        self.check_writable()?;
        if ops.len() > MAX_GROUP_OPS {
            return Err(Error::Invalid);
        }
        let dir = u64::from(self.geo.dir_depth);
        let mut need = 0u64;
        for (i, op) in ops.iter().enumerate() {
            match *op {
                GroupOp::Snapshot { src, dst } => {
                    if src >= self.geo.max_volumes || dst >= self.geo.max_volumes {
                        return Err(Error::Invalid);
                    }
                    self.group_size(ops, i, src)?
                        .flatten()
                        .ok_or(Error::NotFound)?;
                    if self.group_size(ops, i, dst)?.is_some() {
                        return Err(Error::Exists);
                    }
                    need = need.saturating_add(dir);
                }
                GroupOp::Copy {
                    src,
                    src_vext,
                    dst,
                    dst_vext,
                    len,
                } => {
                    if src >= self.geo.max_volumes || dst >= self.geo.max_volumes {
                        return Err(Error::Invalid);
                    }
                    let ss = self
                        .group_size(ops, i, src)?
                        .flatten()
                        .ok_or(Error::NotFound)?;
                    let ds = self
                        .group_size(ops, i, dst)?
                        .flatten()
                        .ok_or(Error::NotFound)?;
                    let se = src_vext.checked_add(len).ok_or(Error::Invalid)?;
                    let de = dst_vext.checked_add(len).ok_or(Error::Invalid)?;
                    if se > ss || de > ds {
                        return Err(Error::Invalid);
                    }
                    let depth = Kind::Vol.depth_for(ds)?;
                    need = need
                        .saturating_add(Kind::Vol.path_nodes(depth, dst_vext, len)?)
                        .saturating_add(dir);
                }
            }
        }
        self.need_meta(need)?;
        if ops.is_empty() {
            return Ok(());
        }
        self.mutate(true, |p| {
            for op in ops {
                match *op {
                    GroupOp::Snapshot { src, dst } => p.snapshot_inner(src, dst)?,
                    GroupOp::Copy {
                        src,
                        src_vext,
                        dst,
                        dst_vext,
                        len,
                    } => p.copy_inner(src, src_vext, dst, dst_vext, len)?,
                }
            }
            Ok(())
        })
    }

    fn snapshot_inner(&mut self, src: u32, dst: u32) -> Result<(), Error> {
        // Everything of `src` becomes shared.
        self.fast_invalidate_all();
        let s = self.rec_req(src)?;
        if s.root != 0 {
            self.inc(SmKind::Meta, s.root)?;
        }
        let rec = VolRec {
            size: s.size,
            root: s.root,
            bg_cursor: 0,
            bg_done: 0,
            uid: self.new_uid(),
            flags: 0,
        };
        self.rec_put(dst, Some(&rec))?;
        self.work.volumes = self.work.volumes.saturating_add(1);
        Ok(())
    }

    fn copy_inner(&mut self, src: u32, a: u64, dst: u32, b: u64, len: u64) -> Result<(), Error> {
        let srec = self.rec_req(src)?;
        let mut drec = self.rec_req(dst)?;
        let orig_root = drec.root;
        self.pending_invalidate(dst, b, b.saturating_add(len))?;
        // Destination mappings change, source extents become shared.
        self.fast_invalidate(drec.uid, b, b.saturating_add(len));
        self.fast_invalidate(srec.uid, a, a.saturating_add(len));
        let depth = Kind::Vol.depth_for(drec.size)?;
        let leaf_n = Kind::Vol.leaf_entries();
        // A destination key whose leaf got an unmapping: pruned when the
        // copy leaves that leaf (once per leaf, not per extent).
        let mut unmapped: Option<u64> = None;
        let backwards = src == dst && b > a;
        for n in 0..len {
            let i = if backwards {
                len.saturating_sub(1).saturating_sub(n)
            } else {
                n
            };
            let (sa, db) = (a.saturating_add(i), b.saturating_add(i));
            if let Some(k) = unmapped {
                if k.checked_div(leaf_n) != db.checked_div(leaf_n) {
                    self.prune_path(&mut drec, depth, k)?;
                    unmapped = None;
                }
            }
            let sr = if src == dst { drec } else { srec };
            let v = self.raw(&sr, sa)?;
            let cur = self.raw(&drec, db)?;
            if v == cur {
                continue;
            }
            if v != 0 {
                self.inc(SmKind::Data, v.saturating_sub(1))?;
            }
            let old = self.vol_set(&mut drec, db, v)?;
            if old != 0 {
                self.dec(SmKind::Data, old.saturating_sub(1))?;
            }
            if v == 0 {
                unmapped = Some(db);
            }
        }
        if let Some(k) = unmapped {
            self.prune_path(&mut drec, depth, k)?;
        }
        if drec.root != orig_root {
            self.rec_put(dst, Some(&drec))?;
        }
        Ok(())
    }

    /// Looks up `vext` of volume `id`, loading metadata as needed.
    pub fn lookup(&mut self, id: u32, vext: u64) -> Result<Mapping, Error> {
        let rec = self.rec_req(id)?;
        let geo = self.geo;
        let gen = self.gen();
        let m = read::vol_lookup(&mut self.loader(), &geo, &rec, vext, gen)?;
        if let Mapping::Mapped {
            pext,
            shared: false,
        } = m
        {
            self.fast_insert(rec.uid, vext, pext);
        }
        Ok(m)
    }

    /// Looks up `vext` of volume `id` from the cache only: never does I/O,
    /// returns [`Error::WouldBlock`] if a needed block is not cached (the
    /// caller then defers to a context that may call [`Pool::lookup`]).
    /// Blocks it finds count as recently used: the only write is a relaxed
    /// atomic flag per block, so any number of readers may run this
    /// concurrently (e.g. under the read side of a lock).
    pub fn lookup_cached(&self, id: u32, vext: u64) -> Result<Mapping, Error> {
        let gen = self.gen();
        let mut s = Cached { cache: &self.cache };
        let rec = read::rec_get(&mut s, &self.geo, self.work.dir_root, id, gen)?
            .filter(|r| !r.deleting())
            .ok_or(Error::NotFound)?;
        read::vol_lookup(&mut s, &self.geo, &rec, vext, gen)
    }

    /// Maps the unmapped `vext` of volume `id` to a newly allocated
    /// physical extent (near the previous allocation) and returns it.
    pub fn provision(&mut self, id: u32, vext: u64) -> Result<u64, Error> {
        self.check_writable()?;
        let rec = self.rec_req(id)?;
        if self.raw(&rec, vext)? != 0 {
            return Err(Error::Exists);
        }
        let depth = Kind::Vol.depth_for(rec.size)?;
        self.need_meta(u64::from(depth).saturating_add(u64::from(self.geo.dir_depth)))?;
        if self.data_avail() == 0 {
            return Err(Error::NoSpace);
        }
        self.mutate(true, |p| {
            let mut rec = rec;
            let pext = p.alloc(SmKind::Data, false)?;
            let orig = rec.root;
            p.vol_set(&mut rec, vext, pext.saturating_add(1))?;
            if rec.root != orig {
                p.rec_put(id, Some(&rec))?;
            }
            p.fast_insert(rec.uid, vext, pext);
            Ok(pext)
        })
    }

    /// Slot and offset of pending-break entry `i`.
    fn pending_loc(i: usize) -> (usize, usize) {
        (
            SLOT_PENDING.saturating_add(i / PENDING_PER_SLOT),
            (i % PENDING_PER_SLOT).saturating_mul(PENDING_ENTRY),
        )
    }

    pub(crate) fn pending_get(&self, i: usize) -> Result<BreakPlan, Error> {
        if i >= self.npending {
            return Err(Error::NotFound);
        }
        let (slot, o) = Self::pending_loc(i);
        let b = self.cache.buf(slot)?;
        Ok(BreakPlan {
            volume: rd_u32(b, o)?,
            vext: rd_u64(b, o.saturating_add(8))?,
            old: rd_u64(b, o.saturating_add(16))?,
            new: rd_u64(b, o.saturating_add(24))?,
            uid: rd_u64(b, o.saturating_add(32))?,
            token: rd_u64(b, o.saturating_add(40))?,
        })
    }

    /// Metadata reserved by entry `i` and its flags.
    pub(crate) fn pending_meta(&self, i: usize) -> Result<(u64, u16), Error> {
        let (slot, o) = Self::pending_loc(i);
        let b = self.cache.buf(slot)?;
        Ok((
            u64::from(rd_u16(b, o.saturating_add(4))?),
            rd_u16(b, o.saturating_add(6))?,
        ))
    }

    fn pending_write(
        &mut self,
        i: usize,
        p: &BreakPlan,
        need: u16,
        flags: u16,
    ) -> Result<(), Error> {
        if i >= MAX_PENDING_BREAKS {
            return Err(Error::Busy);
        }
        let (slot, o) = Self::pending_loc(i);
        let b = self.cache.buf_mut(slot)?;
        wr_u32(b, o, p.volume)?;
        wr_u16(b, o.saturating_add(4), need)?;
        wr_u16(b, o.saturating_add(6), flags)?;
        wr_u64(b, o.saturating_add(8), p.vext)?;
        wr_u64(b, o.saturating_add(16), p.old)?;
        wr_u64(b, o.saturating_add(24), p.new)?;
        wr_u64(b, o.saturating_add(32), p.uid)?;
        wr_u64(b, o.saturating_add(40), p.token)
    }

    /// Marks entry `i` stale and releases its metadata reservation.
    pub(crate) fn pending_mark_stale(&mut self, i: usize) -> Result<(), Error> {
        let p = self.pending_get(i)?;
        let (need, flags) = self.pending_meta(i)?;
        let mut flags = flags | PENDING_STALE;
        if p.new >= self.geo.data_extents {
            flags |= PENDING_GONE;
        }
        self.pending_write(i, &p, 0, flags)?;
        self.meta_reserved = self.meta_reserved.saturating_sub(need);
        Ok(())
    }

    /// Marks stale every pending break of `volume` in `[start, end)`: the
    /// caller is about to change those mappings (whatever the new values,
    /// even the old one again, the copies made for them are outdated).
    fn pending_invalidate(&mut self, volume: u32, start: u64, end: u64) -> Result<(), Error> {
        for i in 0..self.npending {
            let p = self.pending_get(i)?;
            if p.volume == volume && p.vext >= start && p.vext < end {
                self.pending_mark_stale(i)?;
            }
        }
        Ok(())
    }

    fn pending_find(&self, volume: u32, vext: u64) -> Result<Option<usize>, Error> {
        for i in 0..self.npending {
            let p = self.pending_get(i)?;
            if p.volume == volume && p.vext == vext {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn pending_count(&self, volume: u32) -> Result<usize, Error> {
        let mut n = 0usize;
        for i in 0..self.npending {
            if self.pending_get(i)?.volume == volume {
                n = n.saturating_add(1);
            }
        }
        Ok(n)
    }

    fn pending_remove(&mut self, i: usize) -> Result<(), Error> {
        let last = self.npending.checked_sub(1).ok_or(Error::NotFound)?;
        let (need, _) = self.pending_meta(i)?;
        let p = self.pending_get(last)?;
        let (n, f) = self.pending_meta(last)?;
        // Rewritten even when `i == last`: the table changes either way.
        self.pending_write(i, &p, n as u16, f)?;
        self.npending = last;
        self.meta_reserved = self.meta_reserved.saturating_sub(need);
        Ok(())
    }

    /// First half of breaking the sharing of `vext` before a write:
    /// allocates a new physical extent and reserves the metadata needed to
    /// remap. Nothing visible changes: lookups still return `old` until
    /// [`Pool::complete_break`]. The caller copies extent `old` to `new`
    /// (holding other I/O to this extent), then completes or cancels.
    ///
    /// If the extent is not shared, returns a plan with `new == old` and
    /// reserves nothing. Unmapped: [`Error::NotFound`]. A break already
    /// pending for this extent, [`MAX_PENDING_BREAKS`] pending, or
    /// [`MAX_PENDING_PER_VOLUME`] pending for this volume: [`Error::Busy`].
    pub fn prepare_break(&mut self, id: u32, vext: u64) -> Result<BreakPlan, Error> {
        self.check_writable()?;
        let rec = self.rec_req(id)?;
        let (old, shared) = match self.lookup(id, vext)? {
            Mapping::Unmapped => return Err(Error::NotFound),
            Mapping::Mapped { pext, shared } => (pext, shared),
        };
        if !shared {
            return Ok(BreakPlan {
                volume: id,
                vext,
                old,
                new: old,
                uid: rec.uid,
                token: 0,
            });
        }
        if self.pending_find(id, vext)?.is_some()
            || self.npending >= MAX_PENDING_BREAKS
            || self.pending_count(id)? >= MAX_PENDING_PER_VOLUME
        {
            return Err(Error::Busy);
        }
        let depth = Kind::Vol.depth_for(rec.size)?;
        let need = u16::from(depth).saturating_add(u16::from(self.geo.dir_depth));
        self.need_meta(u64::from(need))?;
        if self.data_avail() == 0 {
            return Err(Error::NoSpace);
        }
        // A prepared break alone needs no commit: its extent is committed
        // as free until the break completes.
        self.mutate(false, |p| {
            let new = p.alloc(SmKind::Data, false)?;
            let plan = BreakPlan {
                volume: id,
                vext,
                old,
                new,
                uid: rec.uid,
                token: p.next_token,
            };
            p.pending_write(p.npending, &plan, need, 0)?;
            p.next_token = p.next_token.saturating_add(1);
            p.npending = p.npending.saturating_add(1);
            p.meta_reserved = p.meta_reserved.saturating_add(u64::from(need));
            Ok(plan)
        })
    }

    fn pending_index(&self, plan: &BreakPlan) -> Result<usize, Error> {
        let i = self
            .pending_find(plan.volume, plan.vext)?
            .ok_or(Error::NotFound)?;
        if self.pending_get(i)? != *plan {
            return Err(Error::NotFound);
        }
        Ok(i)
    }

    /// Second half of a sharing break, after the data was copied: maps
    /// `vext` to `new` in the open transaction (it becomes durable with
    /// the next commit) and drops the reference to `old`. If the mapping
    /// changed meanwhile (discard, copy, delete), the break is cancelled
    /// and [`Error::Busy`] returned: redo the write from the lookup.
    pub fn complete_break(&mut self, plan: &BreakPlan) -> Result<(), Error> {
        self.check_writable()?;
        if plan.new == plan.old {
            return Ok(());
        }
        self.finish_pending(plan, plan.old.saturating_add(1))
    }

    /// The second half of a break or a provision: unless the plan went
    /// stale, maps `plan.vext` to `plan.new` if the volume's raw entry
    /// there is still `want` (the old extent + 1, or 0 for a provision),
    /// dropping the reference to what it replaces; otherwise frees `new`
    /// and returns [`Error::Busy`]. The pending entry goes last: if the
    /// pool fails half way, the operation is still known (and its extent
    /// still allocated).
    fn finish_pending(&mut self, plan: &BreakPlan, want: u64) -> Result<(), Error> {
        let i = self.pending_index(plan)?;
        let (_, flags) = self.pending_meta(i)?;
        let mut rec = None;
        if flags & PENDING_STALE == 0 {
            // Not stale: nothing changed the mapping since the prepare (any
            // change marks the plan stale); verify anyway.
            if let Some(r) = self.rec(plan.volume)? {
                if r.uid == plan.uid
                    && !r.deleting()
                    && plan.vext < r.size
                    && self.raw(&r, plan.vext)? == want
                {
                    rec = Some(r);
                }
            }
        }
        let applied = self.mutate(true, |p| {
            let applied = match rec {
                Some(mut r) => {
                    let orig = r.root;
                    let old = p.vol_set(&mut r, plan.vext, plan.new.saturating_add(1))?;
                    if old != 0 {
                        p.dec(SmKind::Data, old.saturating_sub(1))?;
                    }
                    if r.root != orig {
                        p.rec_put(plan.volume, Some(&r))?;
                    }
                    p.fast_insert(r.uid, plan.vext, plan.new);
                    true
                }
                None => {
                    if flags & PENDING_GONE == 0 {
                        p.dec(SmKind::Data, plan.new)?;
                    }
                    false
                }
            };
            p.pending_remove(i)?;
            Ok(applied)
        })?;
        if applied {
            Ok(())
        } else {
            Err(Error::Busy)
        }
    }

    /// Abandons a prepared break: frees its new extent.
    pub fn cancel_break(&mut self, plan: &BreakPlan) -> Result<(), Error> {
        self.check_writable()?;
        if plan.new == plan.old {
            return Ok(());
        }
        let i = self.pending_index(plan)?;
        let (_, flags) = self.pending_meta(i)?;
        self.mutate(true, |p| {
            if flags & PENDING_GONE == 0 {
                p.dec(SmKind::Data, plan.new)?;
            }
            p.pending_remove(i)
        })
    }

    /// Breaks sharing in one step (prepare + complete) for callers that
    /// copy the data before committing anyway; returns the plan
    /// (`new == old`: it was not shared).
    pub fn break_sharing(&mut self, id: u32, vext: u64) -> Result<BreakPlan, Error> {
        let plan = self.prepare_break(id, vext)?;
        if plan.new != plan.old {
            self.complete_break(&plan)?;
        }
        Ok(plan)
    }

    /// Unmaps `len` extents from `vext`, freeing what only they used.
    /// Whole subtrees inside the range are dropped without being visited
    /// (unless this frees them).
    pub fn discard(&mut self, id: u32, vext: u64, len: u64) -> Result<(), Error> {
        self.check_writable()?;
        let rec = self.rec_req(id)?;
        let end = vext.checked_add(len).ok_or(Error::Invalid)?;
        if end > rec.size {
            return Err(Error::Invalid);
        }
        if len == 0 || rec.root == 0 {
            return Ok(());
        }
        let depth = Kind::Vol.depth_for(rec.size)?;
        // Subtrees inside the range are detached from their parent, so
        // only the (at most two) partially covered nodes per level are
        // shadowed: the paths to the range's two ends.
        let need = Kind::Vol
            .path_nodes(depth, vext, len)?
            .min(u64::from(depth).saturating_mul(2))
            .saturating_add(u64::from(self.geo.dir_depth));
        self.need_meta_freeing(need)?;
        self.mutate(true, |p| {
            p.pending_invalidate(id, vext, end)?;
            p.discard_inner(id, rec, vext, end)
        })
    }

    fn discard_inner(&mut self, id: u32, rec: VolRec, start: u64, end: u64) -> Result<(), Error> {
        self.discard_bounded(id, rec, start, end, None, true)
            .map(|_| ())
    }

    /// Discards `[start, end)`; with `budget`, frees at most that many
    /// table nodes (or unmaps part of a leaf, counting one; a shared
    /// subtree dropped counts one) and descends into a subtree instead of
    /// freeing it whole only when freeing it needs more than the budget
    /// has left ([`Pool::free_cost`]), so the work is bounded; returns the
    /// position reached (`end` when done).
    fn discard_bounded(
        &mut self,
        id: u32,
        rec: VolRec,
        start: u64,
        end: u64,
        budget: Option<u64>,
        inval: bool,
    ) -> Result<u64, Error> {
        if inval {
            self.fast_invalidate(rec.uid, start, end);
        }
        let mut rec = rec;
        let orig_root = rec.root;
        let depth = Kind::Vol.depth_for(rec.size)?;
        let top = depth.saturating_sub(1);
        // The whole table, when it is in the range and freeing it fits in
        // the budget (a shared table frees nothing: one decrement): no
        // node is shadowed.
        if start == 0 && end == rec.size {
            let fits = match budget {
                None => true,
                Some(b) => self.free_cost(rec.root, Kind::Vol, top, b)? <= b,
            };
            if fits {
                self.dec_tree(rec.root, Kind::Vol, top)?;
                rec.root = 0;
            }
        }
        let mut used = 0u64;
        let mut pos = start;
        'outer: while pos < end {
            let mut ptr = rec.root;
            let mut level = top;
            if ptr == 0 {
                pos = end;
                break;
            }
            if budget.map(|b| used >= b).unwrap_or(false) {
                break;
            }
            loop {
                if level == 0 {
                    let first = Kind::Vol.index(0, pos)?;
                    let base = pos.saturating_sub(first as u64);
                    let leaf_end = base.saturating_add(Kind::Vol.leaf_entries()).min(rec.size);
                    let e = leaf_end.min(end);
                    let mut any = false;
                    for k in pos..e {
                        if self.node_entry(ptr, Kind::Vol, 0, Kind::Vol.index(0, k)?)? != 0 {
                            any = true;
                            break;
                        }
                    }
                    if any {
                        self.discard_leaf(&mut rec, depth, pos, e)?;
                        used = used.saturating_add(1);
                    }
                    pos = e;
                    continue 'outer;
                }
                let idx = Kind::Vol.index(level, pos)?;
                let child = self.node_entry(ptr, Kind::Vol, level, idx)?;
                let c = Kind::Vol.cover(level.saturating_sub(1))?;
                let cb = pos.saturating_sub(pos.checked_rem(c).unwrap_or(0));
                let ce = cb.saturating_add(c).min(rec.size);
                if child == 0 {
                    pos = ce;
                    continue 'outer;
                }
                let below = level.saturating_sub(1);
                let whole = cb == pos && ce <= end;
                // The nodes dropping this subtree frees (a leaf: 1; a
                // shared subtree: 0), counted up to what the budget has
                // left; more, and it is descended into instead, to be
                // freed a leaf at a time (the parent path is shadowed).
                let mut cost = 1u64;
                if whole && below > 0 {
                    if let Some(b) = budget {
                        let left = b.saturating_sub(used);
                        cost = self.free_cost(child, Kind::Vol, below, left)?;
                        if cost > left {
                            ptr = child;
                            level = below;
                            continue;
                        }
                    }
                }
                if whole {
                    used = used.saturating_add(cost.max(1));
                    let (root, parent) = self.path_mut(rec.root, Kind::Vol, depth, pos, level)?;
                    rec.root = root;
                    self.node_set(parent, Kind::Vol, level, idx, 0)?;
                    self.dec_tree(child, Kind::Vol, level.saturating_sub(1))?;
                    // The parent may now be empty: free it (and up).
                    self.prune_path(&mut rec, depth, pos)?;
                    pos = ce;
                    continue 'outer;
                }
                ptr = child;
                level = level.saturating_sub(1);
            }
        }
        if rec.root != orig_root {
            self.rec_put(id, Some(&rec))?;
        }
        Ok(pos.min(end))
    }

    /// A bounded step of [`Pool::discard`]: unmaps from `vext` on, handling
    /// at most `max_leaves` table nodes (each: one leaf partly unmapped, or
    /// one node freed; a subtree inside the range whose freeing fits in
    /// what is left is dropped whole, counting the nodes it frees), and
    /// returns how many extents from `vext` are done (`len` when
    /// finished; more than 0 when `len > 0`). The kernel loops, releasing its lock (and committing
    /// when it likes) between steps, so a huge discard or the emptying of
    /// a volume before [`Pool::delete_volume`] never holds the pool for
    /// long. Shared subtrees inside the range are still dropped whole (one
    /// reference decrement). May use the metadata reserve.
    pub fn discard_step(
        &mut self,
        id: u32,
        vext: u64,
        len: u64,
        max_leaves: u64,
    ) -> Result<u64, Error> {
        self.check_writable()?;
        if max_leaves == 0 {
            return Err(Error::Invalid);
        }
        let rec = self.rec_req(id)?;
        let end = vext.checked_add(len).ok_or(Error::Invalid)?;
        if end > rec.size {
            return Err(Error::Invalid);
        }
        if len == 0 || rec.root == 0 {
            return Ok(len);
        }
        let depth = Kind::Vol.depth_for(rec.size)?;
        let need = Kind::Vol
            .path_nodes(depth, vext, len)?
            .min(
                max_leaves
                    .saturating_add(2)
                    .saturating_mul(u64::from(depth)),
            )
            .saturating_add(u64::from(self.geo.dir_depth));
        self.need_meta_freeing(need)?;
        let reached = self.mutate(true, |p| {
            p.pending_invalidate(id, vext, end)?;
            p.discard_bounded(id, rec, vext, end, Some(max_leaves), true)
        })?;
        Ok(reached.saturating_sub(vext))
    }

    /// A bounded step of [`Pool::copy_range`]: copies at most
    /// `max_extents` extents from the start of the range and returns how
    /// many (the kernel loops, releasing its lock between steps; a crash
    /// between steps leaves a prefix copied, and running the copy again
    /// completes it). Overlapping ranges of one volume: [`Error::Invalid`]
    /// (use [`Pool::copy_range`]).
    pub fn copy_range_step(
        &mut self,
        src: u32,
        src_vext: u64,
        dst: u32,
        dst_vext: u64,
        len: u64,
        max_extents: u64,
    ) -> Result<u64, Error> {
        if max_extents == 0 {
            return Err(Error::Invalid);
        }
        let se = src_vext.checked_add(len).ok_or(Error::Invalid)?;
        let de = dst_vext.checked_add(len).ok_or(Error::Invalid)?;
        if src == dst && len > 0 && src_vext < de && dst_vext < se {
            return Err(Error::Invalid);
        }
        let n = len.min(max_extents);
        self.copy_range(src, src_vext, dst, dst_vext, n)?;
        Ok(n)
    }

    /// Whether every entry of node `ptr` is zero.
    fn node_empty(&mut self, ptr: u64, level: u8) -> Result<bool, Error> {
        let i = self.node_slot(ptr, Kind::Vol, level)?;
        let b = self.cache.buf(i)?;
        let n = Kind::Vol.entries(level) as usize;
        for idx in 0..n {
            if read::entry(b, Kind::Vol, level, idx)? != 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Frees the nodes on the path to `key` that became empty, bottom up
    /// (a leaf whose last mapping went, then a parent whose last child
    /// went, ...), so that unmapping never leaves empty nodes behind. The
    /// path was shadowed by the caller in this operation: this allocates
    /// nothing.
    fn prune_path(&mut self, rec: &mut VolRec, depth: u8, key: u64) -> Result<(), Error> {
        let top = depth.checked_sub(1).ok_or(Error::Invalid)?;
        let mut path = [0u64; MAX_DEPTH];
        let mut ptr = rec.root;
        let mut level = top;
        loop {
            *path.get_mut(usize::from(level)).ok_or(Error::Corrupt)? = ptr;
            if ptr == 0 || level == 0 {
                break;
            }
            ptr = self.node_entry(ptr, Kind::Vol, level, Kind::Vol.index(level, key)?)?;
            level = level.saturating_sub(1);
        }
        let mut l = 0u8;
        while l <= top {
            let n = *path.get(usize::from(l)).ok_or(Error::Corrupt)?;
            if n != 0 {
                if !self.node_empty(n, l)? {
                    break;
                }
                if l == top {
                    self.dec_tree(n, Kind::Vol, top)?;
                    rec.root = 0;
                    break;
                }
                let up = l.saturating_add(1);
                let (root, parent) = self.path_mut(rec.root, Kind::Vol, depth, key, up)?;
                rec.root = root;
                self.node_set(parent, Kind::Vol, up, Kind::Vol.index(up, key)?, 0)?;
                self.dec_tree(n, Kind::Vol, l)?;
                // The parent may have been shadowed just now.
                *path.get_mut(usize::from(up)).ok_or(Error::Corrupt)? = parent;
            }
            l = l.saturating_add(1);
        }
        Ok(())
    }

    /// Unmaps `[pos, e)` within one leaf; frees the leaf (and parents) if
    /// they empty.
    fn discard_leaf(&mut self, rec: &mut VolRec, depth: u8, pos: u64, e: u64) -> Result<(), Error> {
        let (root, leaf) = self.path_mut(rec.root, Kind::Vol, depth, pos, 0)?;
        rec.root = root;
        for k in pos..e {
            let idx = Kind::Vol.index(0, k)?;
            let old = self.node_entry(leaf, Kind::Vol, 0, idx)?;
            if old != 0 {
                self.node_set(leaf, Kind::Vol, 0, idx, 0)?;
                self.dec(SmKind::Data, old.saturating_sub(1))?;
            }
        }
        self.prune_path(rec, depth, pos)
    }

    /// Resizes volume `id` to `size` extents. Growing adds levels on top of
    /// the table when the new size needs them (O(levels)); shrinking unmaps
    /// the tail like [`Pool::discard`] (it frees space, so it may use the
    /// metadata reserve), removes the levels no longer needed and clamps
    /// the background-copy cursor.
    pub fn resize_volume(&mut self, id: u32, size: u64) -> Result<(), Error> {
        self.check_writable()?;
        if size == 0 || size > MAX_VOLUME_EXTENTS {
            return Err(Error::Invalid);
        }
        let rec = self.rec_req(id)?;
        let d0 = Kind::Vol.depth_for(rec.size)?;
        let d1 = Kind::Vol.depth_for(size)?;
        let dir = u64::from(self.geo.dir_depth);
        if size == rec.size {
            return Ok(());
        }
        if size > rec.size {
            self.need_meta(u64::from(d1.saturating_sub(d0)).saturating_add(dir))?;
            return self.mutate(true, |p| {
                let mut rec = rec;
                if rec.root != 0 {
                    let mut level = d0;
                    while level < d1 {
                        let nb = p.shadow(0, Kind::Vol, level)?;
                        p.node_set(nb, Kind::Vol, level, 0, rec.root)?;
                        rec.root = nb;
                        level = level.saturating_add(1);
                    }
                }
                rec.size = size;
                p.rec_put(id, Some(&rec))
            });
        }
        let len = rec.size.saturating_sub(size);
        let need = Kind::Vol
            .path_nodes(d0, size, len)?
            .min(u64::from(d0).saturating_mul(2))
            .saturating_add(dir);
        self.need_meta_freeing(need)?;
        self.mutate(true, |p| {
            p.pending_invalidate(id, size, u64::MAX)?;
            if rec.root != 0 {
                p.discard_inner(id, rec, size, rec.size)?;
            }
            let mut rec = p.rec_req(id)?;
            let mut level = d0;
            while level > d1 {
                let top = level.saturating_sub(1);
                if rec.root != 0 {
                    let c = p.node_entry(rec.root, Kind::Vol, top, 0)?;
                    if c != 0 {
                        p.inc(SmKind::Meta, c)?;
                    }
                    p.dec_tree(rec.root, Kind::Vol, top)?;
                    rec.root = c;
                }
                level = top;
            }
            rec.size = size;
            rec.bg_cursor = rec.bg_cursor.min(size);
            p.rec_put(id, Some(&rec))
        })
    }

    /// Volume `id` (`NotFound` for a volume being deleted: it is listed by
    /// [`Pool::next_volume`] only).
    pub fn volume(&mut self, id: u32) -> Result<VolumeInfo, Error> {
        let r = self.rec_req(id)?;
        Ok(VolumeInfo {
            id,
            size: r.size,
            bg_cursor: r.bg_cursor,
            bg_done: r.bg_done,
            uid: r.uid,
            deleting: r.deleting(),
        })
    }

    /// The volume with the smallest id >= `from` (for listing), including
    /// volumes being deleted ([`VolumeInfo::deleting`]).
    pub fn next_volume(&mut self, from: u32) -> Result<Option<VolumeInfo>, Error> {
        let geo = self.geo;
        let gen = self.gen();
        let root = self.work.dir_root;
        let r = read::next_rec(&mut self.loader(), &geo, root, u64::from(from), gen)?;
        Ok(r.map(|(id, r)| VolumeInfo {
            id,
            size: r.size,
            bg_cursor: r.bg_cursor,
            bg_done: r.bg_done,
            uid: r.uid,
            deleting: r.deleting(),
        }))
    }

    /// The first mapped extent >= `from` of volume `id` (for dumping);
    /// unmapped subtrees are skipped without visiting their extents.
    pub fn next_mapping(&mut self, id: u32, from: u64) -> Result<Option<(u64, Mapping)>, Error> {
        let rec = self.rec(id)?.ok_or(Error::NotFound)?;
        let geo = self.geo;
        let gen = self.gen();
        let Some((k, _)) = read::next_mapped_raw(&mut self.loader(), &geo, &rec, from, gen)? else {
            return Ok(None);
        };
        let m = read::vol_lookup(&mut self.loader(), &geo, &rec, k, gen)?;
        Ok(Some((k, m)))
    }

    /// Reference count of physical extent `pext` (number of table leaves
    /// that map it; a leaf shared by snapshots counts once).
    pub fn data_refcount(&mut self, pext: u64) -> Result<u32, Error> {
        if pext >= self.geo.data_extents {
            return Err(Error::Invalid);
        }
        self.rc(SmKind::Data, pext)
    }

    /// Next shared extent at or after the background-copy cursor of volume
    /// `id`. The background copier breaks its sharing
    /// ([`Pool::prepare_break`], copy, [`Pool::complete_break`]) and then
    /// calls [`Pool::bg_advance`] with the item.
    pub fn bg_next(&mut self, id: u32) -> Result<Option<BgItem>, Error> {
        let rec = self.rec_req(id)?;
        Ok(self
            .next_shared(&rec, rec.bg_cursor)?
            .map(|(vext, pext)| BgItem {
                volume: id,
                uid: rec.uid,
                vext,
                pext,
            }))
    }

    fn next_shared(&mut self, rec: &VolRec, from: u64) -> Result<Option<(u64, u64)>, Error> {
        let geo = self.geo;
        let gen = self.gen();
        let mut pos = from;
        while pos < rec.size {
            let Some((k, _)) = read::next_mapped_raw(&mut self.loader(), &geo, rec, pos, gen)?
            else {
                return Ok(None);
            };
            if let Mapping::Mapped { pext, shared: true } =
                read::vol_lookup(&mut self.loader(), &geo, rec, k, gen)?
            {
                return Ok(Some((k, pext)));
            }
            pos = k.saturating_add(1);
        }
        Ok(None)
    }

    /// Moves the background-copy cursor of the item's volume past its
    /// extent and counts one extent done (in the open transaction). An
    /// item of a volume that was deleted since (even if re-created under
    /// the same id): [`Error::NotFound`].
    pub fn bg_advance(&mut self, item: &BgItem) -> Result<(), Error> {
        self.check_writable()?;
        let rec = self.rec_req(item.volume)?;
        if rec.uid != item.uid {
            return Err(Error::NotFound);
        }
        if item.vext >= rec.size {
            return Err(Error::Invalid);
        }
        self.need_meta(u64::from(self.geo.dir_depth))?;
        self.mutate(true, |p| {
            let mut rec = rec;
            rec.bg_cursor = rec.bg_cursor.max(item.vext.saturating_add(1));
            rec.bg_done = rec.bg_done.saturating_add(1);
            p.rec_put(item.volume, Some(&rec))
        })
    }

    /// Restarts the background copy of volume `id` from extent 0 (may use
    /// the metadata reserve).
    pub fn bg_reset(&mut self, id: u32) -> Result<(), Error> {
        self.check_writable()?;
        let rec = self.rec_req(id)?;
        self.need_meta_freeing(u64::from(self.geo.dir_depth))?;
        self.mutate(true, |p| {
            let mut rec = rec;
            rec.bg_cursor = 0;
            rec.bg_done = 0;
            p.rec_put(id, Some(&rec))
        })
    }

    /// Background copy progress of volume `id` (counts the shared extents
    /// after the cursor: work proportional to the mapped extents).
    pub fn bg_progress(&mut self, id: u32) -> Result<BgProgress, Error> {
        let rec = self.rec_req(id)?;
        let mut remaining = 0u64;
        let mut pos = rec.bg_cursor;
        while let Some((k, _)) = self.next_shared(&rec, pos)? {
            remaining = remaining.saturating_add(1);
            pos = k.saturating_add(1);
        }
        Ok(BgProgress {
            cursor: rec.bg_cursor,
            done: rec.bg_done,
            remaining,
        })
    }

    /// First half of provisioning `vext` of volume `id` without exposing
    /// the new extent's old contents: allocates a physical extent and
    /// reserves the metadata the mapping needs, like
    /// [`Pool::prepare_break`] (the plan is an entry of the same pending
    /// table, with `old` = [`NO_OLD`]). Nothing visible changes: lookups
    /// still return `Unmapped`, and a commit meanwhile writes the extent
    /// as free. The caller zeroes the extent, or writes all of it, then
    /// calls [`Pool::complete_provision`] or [`Pool::cancel_provision`].
    ///
    /// Already mapped: [`Error::Exists`]. A plan already pending for this
    /// extent or a full table: [`Error::Busy`].
    pub fn prepare_provision(&mut self, id: u32, vext: u64) -> Result<BreakPlan, Error> {
        self.check_writable()?;
        let rec = self.rec_req(id)?;
        if self.raw(&rec, vext)? != 0 {
            return Err(Error::Exists);
        }
        if self.pending_find(id, vext)?.is_some()
            || self.npending >= MAX_PENDING_BREAKS
            || self.pending_count(id)? >= MAX_PENDING_PER_VOLUME
        {
            return Err(Error::Busy);
        }
        let depth = Kind::Vol.depth_for(rec.size)?;
        let need = u16::from(depth).saturating_add(u16::from(self.geo.dir_depth));
        self.need_meta(u64::from(need))?;
        if self.data_avail() == 0 {
            return Err(Error::NoSpace);
        }
        // Like a prepared break: no commit needed, the extent is committed
        // as free until the provision completes.
        self.mutate(false, |p| {
            let new = p.alloc(SmKind::Data, false)?;
            let plan = BreakPlan {
                volume: id,
                vext,
                old: NO_OLD,
                new,
                uid: rec.uid,
                token: p.next_token,
            };
            p.pending_write(p.npending, &plan, need, 0)?;
            p.next_token = p.next_token.saturating_add(1);
            p.npending = p.npending.saturating_add(1);
            p.meta_reserved = p.meta_reserved.saturating_add(u64::from(need));
            Ok(plan)
        })
    }

    /// Second half of a provision, once the new extent holds zeroes or the
    /// write: maps `vext` to `new` in the open transaction (durable with
    /// the next commit); cannot fail for lack of space. If the plan became
    /// stale (the range was discarded, copied into, or the volume deleted;
    /// an abort) or `vext` got mapped meanwhile, the extent is freed and
    /// [`Error::Busy`] returned.
    pub fn complete_provision(&mut self, plan: &BreakPlan) -> Result<(), Error> {
        self.check_writable()?;
        if plan.old != NO_OLD {
            return Err(Error::Invalid);
        }
        self.finish_pending(plan, 0)
    }

    /// Abandons a prepared provision: frees its extent.
    pub fn cancel_provision(&mut self, plan: &BreakPlan) -> Result<(), Error> {
        if plan.old != NO_OLD {
            return Err(Error::Invalid);
        }
        self.cancel_break(plan)
    }
}

/// The `old` of a provision plan ([`Pool::prepare_provision`]): no extent
/// was mapped.
pub const NO_OLD: u64 = u64::MAX;
