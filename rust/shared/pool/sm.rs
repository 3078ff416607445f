//! Space maps: reference counts of metadata blocks and data extents.
//!
//! Each map is an array of u32 counts in fixed "ping-pong" block pairs; the
//! superblock's selector bitmap says which copy of each pair is live. The
//! first change of a space map block in a transaction copies the live copy
//! into the other one and flips the working selector bit; the commit's
//! superblock publishes the new selectors atomically.

use super::block::{rd_u32, set_header, wr_u32, Header, HDR};
use super::cache::{Cache, SLOT_COM, SLOT_WORK};
use super::geom::{
    check_header, idx_set, sel_flip, sel_get, sm_off, Geometry, SmKind, IDX_ENTRIES, IDX_TAG,
    SM_ENTRIES,
};
use super::read::{sm_index, sm_read};
use super::{Error, MetaDevice, Pool, BLOCK_SIZE};

/// Invalidates both superblocks and writes copy 0 of every space map index
/// block (all space map blocks "never written": their counts are implicit,
/// so formatting costs the index only, whatever the pool size).
pub(crate) fn format_maps<D: MetaDevice>(
    cache: &mut Cache<'_>,
    dev: &mut D,
    geo: &Geometry,
) -> Result<(), Error> {
    let b = cache.buf_mut(SLOT_COM)?;
    b.fill(0);
    dev.write_block(0, b)?;
    dev.write_block(1, b)?;
    dev.flush()?;
    for k in 0..geo.idx_blocks {
        let nr = geo.idx_phys(k, 0)?;
        let b = cache.buf_mut(SLOT_COM)?;
        blank_index(b, nr, 1)?;
        super::block::seal(b);
        dev.write_block(nr, b)?;
    }
    dev.flush()
}

/// Makes `b` an index block at `nr` written by generation `gen` whose
/// entries all say "never written" (format, growth extensions).
pub(crate) fn blank_index(b: &mut [u8; BLOCK_SIZE], nr: u64, gen: u64) -> Result<(), Error> {
    b.fill(0);
    set_header(
        b,
        Header {
            tag: IDX_TAG,
            level: 0,
            blocknr: nr,
            gen,
        },
    )
}

impl<D: MetaDevice> Pool<'_, D> {
    /// Reference count in the open transaction.
    pub(crate) fn rc(&mut self, kind: SmKind, idx: u64) -> Result<u32, Error> {
        let geo = self.geo;
        sm_read(&mut self.loader(), &geo, kind, idx, false)
    }

    /// Reference count in the last commit.
    pub(crate) fn rc_committed(&mut self, kind: SmKind, idx: u64) -> Result<u32, Error> {
        let geo = self.geo;
        sm_read(&mut self.loader(), &geo, kind, idx, true)
    }

    /// Makes index block `k` writable in the open transaction (copying
    /// its live copy to the spare one and flipping the superblock bit on
    /// the first change) and returns its slot.
    fn idx_writable(&mut self, k: u64) -> Result<usize, Error> {
        let geo = self.geo;
        let ws = sel_get(self.cache.buf(SLOT_WORK)?, k)?;
        let cs = sel_get(self.cache.buf(SLOT_COM)?, k)?;
        if ws != cs {
            let i = self.cache.get(&mut self.dev, geo.idx_phys(k, ws)?)?;
            check_header(self.cache.buf(i)?, IDX_TAG, 0, u64::MAX)?;
            return Ok(i);
        }
        let src = geo.idx_phys(k, cs)?;
        let dst = geo.idx_phys(k, cs ^ 1)?;
        let si = self.cache.get(&mut self.dev, src)?;
        check_header(self.cache.buf(si)?, IDX_TAG, 0, u64::MAX)?;
        let di = self.cache.claim(&mut self.dev, dst, si)?;
        self.cache.copy(si, di)?;
        let gen = self.gen();
        set_header(
            self.cache.buf_mut(di)?,
            Header {
                tag: IDX_TAG,
                level: 0,
                blocknr: dst,
                gen,
            },
        )?;
        sel_flip(self.cache.buf_mut(SLOT_WORK)?, k)?;
        Ok(di)
    }

    /// Makes logical space map block `j` writable in the open transaction
    /// and returns its physical location: the first change copies the live
    /// copy (or, for a block never written, its implicit counts) into the
    /// other copy and points the working index at it.
    fn sm_writable(&mut self, kind: SmKind, j: u64) -> Result<u64, Error> {
        let geo = self.geo;
        let committed = sm_index(&mut self.loader(), &geo, kind, j, true)?;
        let working = sm_index(&mut self.loader(), &geo, kind, j, false)?;
        if working != committed {
            return geo.sm_phys(kind, j, working.0);
        }
        let (cs, cinit) = committed;
        let dst = geo.sm_phys(kind, j, cs ^ 1)?;
        let di = if cinit {
            let src = geo.sm_phys(kind, j, cs)?;
            let si = self.cache.get(&mut self.dev, src)?;
            check_header(self.cache.buf(si)?, Geometry::sm_tag(kind), 0, u64::MAX)?;
            let di = self.cache.claim(&mut self.dev, dst, si)?;
            self.cache.copy(si, di)?;
            di
        } else {
            let di = self.cache.claim(&mut self.dev, dst, usize::MAX)?;
            let b = self.cache.buf_mut(di)?;
            b.fill(0);
            let lo = j.saturating_mul(SM_ENTRIES);
            let hi = lo.saturating_add(SM_ENTRIES).min(geo.sm_n(kind));
            // At most SM_ENTRIES entries; the implicit ones are the space
            // map areas (the fixed area and the growth extensions).
            let mut i = lo;
            while i < hi {
                let v = geo.sm_implicit(kind, i);
                if v != 0 {
                    wr_u32(b, sm_off(i.saturating_sub(lo)), v)?;
                }
                i = i.saturating_add(1);
            }
            di
        };
        let gen = self.gen();
        set_header(
            self.cache.buf_mut(di)?,
            Header {
                tag: Geometry::sm_tag(kind),
                level: 0,
                blocknr: dst,
                gen,
            },
        )?;
        let ent = geo.sm_entry(kind, j)?;
        let ki = self.idx_writable(ent / IDX_ENTRIES)?;
        idx_set(self.cache.buf_mut(ki)?, ent % IDX_ENTRIES, cs ^ 1, true)?;
        Ok(dst)
    }

    /// Sets a reference count (no counter bookkeeping).
    pub(crate) fn sm_set(&mut self, kind: SmKind, idx: u64, v: u32) -> Result<(), Error> {
        if idx >= self.geo.sm_n(kind) {
            return Err(Error::Corrupt);
        }
        let j = idx / SM_ENTRIES;
        let phys = self.sm_writable(kind, j)?;
        let i = self.cache.get(&mut self.dev, phys)?;
        check_header(self.cache.buf(i)?, Geometry::sm_tag(kind), 0, u64::MAX)?;
        wr_u32(self.cache.buf_mut(i)?, sm_off(idx % SM_ENTRIES), v)
    }

    /// Adds a reference to something already referenced.
    pub(crate) fn inc(&mut self, kind: SmKind, idx: u64) -> Result<(), Error> {
        let v = self.rc(kind, idx)?;
        if v == 0 {
            return Err(Error::Corrupt);
        }
        let nv = v.checked_add(1).ok_or(Error::Corrupt)?;
        self.sm_set(kind, idx, nv)
    }

    /// Drops a reference; returns the new count. A count reaching zero
    /// frees the block or extent (reusable at once if the last commit does
    /// not use it, else after the next commit).
    pub(crate) fn dec(&mut self, kind: SmKind, idx: u64) -> Result<u32, Error> {
        let v = self.rc(kind, idx)?;
        if v == 0 {
            return Err(Error::Corrupt);
        }
        let nv = v.saturating_sub(1);
        self.sm_set(kind, idx, nv)?;
        if nv == 0 {
            let still_used = self.rc_committed(kind, idx)? != 0;
            match kind {
                SmKind::Meta => {
                    self.work.meta_free = self.work.meta_free.saturating_add(1);
                    if still_used {
                        self.pend_meta_free = self.pend_meta_free.saturating_add(1);
                    }
                }
                SmKind::Data => {
                    self.work.data_free = self.work.data_free.saturating_add(1);
                    if still_used {
                        self.pend_data_free = self.pend_data_free.saturating_add(1);
                    }
                }
            }
        }
        Ok(nv)
    }

    /// Metadata blocks allocatable now by space-freeing operations (not
    /// counting blocks reserved for pending breaks).
    pub(crate) fn meta_avail(&self) -> u64 {
        self.work
            .meta_free
            .saturating_sub(self.pend_meta_free)
            .saturating_sub(self.meta_reserved)
    }

    /// Metadata blocks allocatable now by ordinary operations (also not
    /// counting the reserve).
    pub(crate) fn meta_avail_normal(&self) -> u64 {
        self.meta_avail().saturating_sub(self.geo.meta_reserve)
    }

    /// Data extents allocatable now.
    pub(crate) fn data_avail(&self) -> u64 {
        self.work.data_free.saturating_sub(self.pend_data_free)
    }

    /// Allocates a block or extent (count 1), searching from the rolling
    /// hint so that consecutive allocations are close together. With
    /// `reserved`, metadata reserved for pending breaks may be used.
    pub(crate) fn alloc(&mut self, kind: SmKind, reserved: bool) -> Result<u64, Error> {
        let geo = self.geo;
        let (avail, lo, hint, err) = match kind {
            SmKind::Meta => (
                if reserved {
                    self.work.meta_free.saturating_sub(self.pend_meta_free)
                } else {
                    self.meta_avail()
                },
                geo.first_dyn,
                self.work.meta_hint,
                Error::NoMetadataSpace,
            ),
            SmKind::Data => (self.data_avail(), 0, self.work.data_hint, Error::NoSpace),
        };
        if avail == 0 {
            return Err(err);
        }
        let n = geo.sm_n(kind);
        let span = n.saturating_sub(lo);
        let start = if hint >= lo && hint < n { hint } else { lo };
        let mut scanned = 0u64;
        let mut pos = start;
        while scanned < span {
            // Scan the rest of pos's space map block in one go.
            let j = pos / SM_ENTRIES;
            let blk_end = j.saturating_add(1).saturating_mul(SM_ENTRIES).min(n);
            let committed = sm_index(&mut self.loader(), &geo, kind, j, true)?;
            let working = sm_index(&mut self.loader(), &geo, kind, j, false)?;
            // Unchanged in this transaction: free now means free in the
            // last commit too.
            let same = working == committed;
            let mut found = None;
            if !working.1 {
                // Never written: all free past the fixed area.
                let mut k = pos;
                while k < blk_end && scanned < span && geo.sm_implicit(kind, k) != 0 {
                    k = k.saturating_add(1);
                    scanned = scanned.saturating_add(1);
                }
                if k < blk_end && scanned < span {
                    found = Some(k);
                } else {
                    pos = if k >= n { lo } else { k };
                }
            } else {
                let phys = geo.sm_phys(kind, j, working.0)?;
                let i = self.cache.get(&mut self.dev, phys)?;
                let b = self.cache.buf(i)?;
                check_header(b, Geometry::sm_tag(kind), 0, u64::MAX)?;
                let mut k = pos;
                while k < blk_end && scanned < span {
                    if rd_u32(b, sm_off(k % SM_ENTRIES))? == 0 {
                        found = Some(k);
                        break;
                    }
                    k = k.saturating_add(1);
                    scanned = scanned.saturating_add(1);
                }
                if found.is_none() {
                    pos = if k >= n { lo } else { k };
                }
            }
            if let Some(k) = found {
                if same || self.rc_committed(kind, k)? == 0 {
                    self.sm_set(kind, k, 1)?;
                    let next = if k.saturating_add(1) >= n {
                        lo
                    } else {
                        k.saturating_add(1)
                    };
                    match kind {
                        SmKind::Meta => {
                            self.work.meta_free = self.work.meta_free.saturating_sub(1);
                            self.work.meta_hint = next;
                        }
                        SmKind::Data => {
                            self.work.data_free = self.work.data_free.saturating_sub(1);
                            self.work.data_hint = next;
                        }
                    }
                    return Ok(k);
                }
                scanned = scanned.saturating_add(1);
                pos = if k.saturating_add(1) >= n {
                    lo
                } else {
                    k.saturating_add(1)
                };
            }
        }
        Err(err)
    }

    /// Sets the count of every pending break's new extent (0 around a
    /// commit, 1 otherwise), keeping the free counter in step.
    pub(crate) fn pending_set_rc(&mut self, v: u32) -> Result<(), Error> {
        for i in 0..self.npending {
            let p = self.pending_get(i)?;
            if self.pending_meta(i)?.1 & super::ops::PENDING_GONE != 0 {
                continue;
            }
            self.sm_set(SmKind::Data, p.new, v)?;
            if v == 0 {
                self.work.data_free = self.work.data_free.saturating_add(1);
            } else {
                self.work.data_free = self.work.data_free.saturating_sub(1);
            }
        }
        Ok(())
    }
}

// A space map block's counts fit in its payload.
const _: () = assert!(HDR + (SM_ENTRIES as usize) * 4 <= BLOCK_SIZE);
