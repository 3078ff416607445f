//! The checker: checksums, tree shape and reference counts.

use super::block::rd_u32;
use super::geom::{
    check_header, sm_off, Geometry, Kind, SmKind, IDX_ENTRIES, MAX_DEPTH, SM_ENTRIES,
};
use super::read::{entry, rec_decode, sm_loc, REC_DELETING};
use super::{Error, MetaDevice, Pool, MAX_VOLUME_EXTENTS};

/// Problems kept in a [`CheckReport`] (all are counted).
pub const MAX_PROBLEMS: usize = 16;

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A block failed its checksum or self-location check.
    Checksum,
    /// A tree node has the wrong type, level or generation.
    BadNode,
    /// A pointer outside the dynamic metadata area.
    BadPointer,
    /// A mapping to a physical extent beyond the data device.
    BadValue,
    /// A malformed volume record.
    BadRecord,
    /// An entry past the end of the key space is not zero.
    NonZeroTail,
    /// A metadata block's reference count differs from its references
    /// (`found` is the count, `expected` the references).
    MetaRefcount,
    /// A data extent's reference count differs from its references.
    DataRefcount,
    /// A space map block is unreadable or malformed.
    SpaceMap,
    /// The superblock's free counter is wrong.
    FreeCount,
    /// The superblock's volume counter is wrong.
    VolumeCount,
    /// A volume table node without any entry (unmapping must free it).
    EmptyNode,
}

/// One problem found by the checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The block, extent or counter concerned.
    pub block: u64,
    /// Entry index within the block (or 0).
    pub index: u64,
    /// Value found.
    pub found: u64,
    /// Value expected.
    pub expected: u64,
}

/// Result of [`Pool::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// Number of problems.
    pub errors: u64,
    /// The first [`MAX_PROBLEMS`] problems.
    pub problems: [Option<Problem>; MAX_PROBLEMS],
    /// Volumes found.
    pub volumes: u64,
    /// Distinct tree nodes visited.
    pub nodes: u64,
    /// Mapped leaf entries (distinct leaves).
    pub mapped: u64,
    /// Metadata blocks in use (including the fixed area).
    pub meta_used: u64,
    /// Data extents in use.
    pub data_used: u64,
    /// Tree walks done (one per window of data counters).
    pub passes: u64,
}

impl CheckReport {
    fn new() -> Self {
        CheckReport {
            errors: 0,
            problems: [None; MAX_PROBLEMS],
            volumes: 0,
            nodes: 0,
            mapped: 0,
            meta_used: 0,
            data_used: 0,
            passes: 0,
        }
    }

    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.errors == 0
    }

    fn add(&mut self, kind: ProblemKind, block: u64, index: u64, found: u64, expected: u64) {
        if let Some(slot) = self.problems.get_mut(self.errors as usize) {
            *slot = Some(Problem {
                kind,
                block,
                index,
                found,
                expected,
            });
        }
        self.errors = self.errors.saturating_add(1);
    }
}

#[derive(Clone, Copy)]
struct Frame {
    ptr: u64,
    kind: Kind,
    level: u8,
    idx: u32,
    base: u64,
    limit: u64,
}

const FRAMES: usize = 2 * MAX_DEPTH;

struct Walk<'s> {
    meta: &'s mut [u32],
    win: &'s mut [u32],
    lo: u64,
    first: bool,
    /// Lowest and highest referenced data extent + 1 (0: none yet).
    ref_lo: u64,
    ref_hi: u64,
}

impl Walk<'_> {
    fn saw(&mut self, pext: u64) {
        let v = pext.saturating_add(1);
        if self.ref_lo == 0 || v < self.ref_lo {
            self.ref_lo = v;
        }
        if v > self.ref_hi {
            self.ref_hi = v;
        }
    }
}

/// Loads block `nr`, turning corruption into a problem (`Ok(None)`).
fn load<D: MetaDevice>(
    p: &mut Pool<'_, D>,
    rep: &mut CheckReport,
    w: &Walk<'_>,
    nr: u64,
) -> Result<Option<usize>, Error> {
    match p.cache.get(&mut p.dev, nr) {
        Ok(i) => Ok(Some(i)),
        Err(Error::Corrupt) => {
            if w.first {
                rep.add(ProblemKind::Checksum, nr, 0, 0, 0);
            }
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Counts a reference to a node; returns whether to descend into it.
fn visit<D: MetaDevice>(
    p: &mut Pool<'_, D>,
    rep: &mut CheckReport,
    w: &mut Walk<'_>,
    f: &Frame,
) -> Result<bool, Error> {
    if !p.geo.is_dyn(f.ptr) {
        if w.first {
            rep.add(ProblemKind::BadPointer, f.ptr, 0, 0, 0);
        }
        return Ok(false);
    }
    let Some(cnt) = w.meta.get_mut(f.ptr as usize) else {
        return Ok(false);
    };
    *cnt = cnt.saturating_add(1);
    let first_visit = *cnt == 1;
    let Some(i) = load(p, rep, w, f.ptr)? else {
        return Ok(false);
    };
    let gen = p.gen();
    if check_header(p.cache.buf(i)?, f.kind.tag(f.level), f.level, gen).is_err() {
        if w.first {
            rep.add(ProblemKind::BadNode, f.ptr, 0, u64::from(f.level), 0);
        }
        return Ok(false);
    }
    if first_visit && w.first {
        rep.nodes = rep.nodes.saturating_add(1);
        if f.kind == Kind::Vol {
            let b = p.cache.buf(i)?;
            let mut empty = true;
            for idx in 0..f.kind.entries(f.level) as usize {
                if entry(b, f.kind, f.level, idx)? != 0 {
                    empty = false;
                    break;
                }
            }
            if empty {
                rep.add(ProblemKind::EmptyNode, f.ptr, 0, u64::from(f.level), 0);
            }
        }
    }
    Ok(first_visit)
}

fn walk<D: MetaDevice>(
    p: &mut Pool<'_, D>,
    rep: &mut CheckReport,
    w: &mut Walk<'_>,
) -> Result<(), Error> {
    let geo = p.geo;
    let mut stack = [Frame {
        ptr: 0,
        kind: Kind::Dir,
        level: 0,
        idx: 0,
        base: 0,
        limit: 0,
    }; FRAMES];
    let mut sp = 0usize;
    if p.work.dir_root != 0 {
        let f = Frame {
            ptr: p.work.dir_root,
            kind: Kind::Dir,
            level: geo.dir_depth.saturating_sub(1),
            idx: 0,
            base: 0,
            limit: u64::from(geo.max_volumes),
        };
        if visit(p, rep, w, &f)? {
            if let Some(s) = stack.get_mut(0) {
                *s = f;
                sp = 1;
            }
        }
    }
    while sp > 0 {
        let Some(top) = stack.get_mut(sp.saturating_sub(1)) else {
            break;
        };
        let f = *top;
        if u64::from(f.idx) >= f.kind.entries(f.level) {
            sp = sp.saturating_sub(1);
            continue;
        }
        top.idx = top.idx.saturating_add(1);
        let idx = f.idx as usize;
        let Some(i) = load(p, rep, w, f.ptr)? else {
            sp = sp.saturating_sub(1);
            continue;
        };
        let b = p.cache.buf(i)?;
        let key = if f.level == 0 {
            f.base.saturating_add(idx as u64)
        } else {
            f.base.saturating_add(
                (idx as u64).saturating_mul(f.kind.cover(f.level.saturating_sub(1))?),
            )
        };
        let v = entry(b, f.kind, f.level, idx)?;
        if key >= f.limit {
            let nz = if f.kind == Kind::Dir && f.level == 0 {
                let r = rec_decode(b, idx)?;
                r.size | r.root | r.bg_cursor | r.bg_done | r.uid | r.flags != 0
            } else {
                v != 0
            };
            if nz && w.first {
                rep.add(ProblemKind::NonZeroTail, f.ptr, idx as u64, v, 0);
            }
            continue;
        }
        let child = match (f.kind, f.level) {
            (Kind::Vol, 0) => {
                if v != 0 {
                    let pext = v.saturating_sub(1);
                    if w.first {
                        rep.mapped = rep.mapped.saturating_add(1);
                    }
                    if pext >= geo.data_extents {
                        if w.first {
                            rep.add(ProblemKind::BadValue, f.ptr, idx as u64, pext, 0);
                        }
                    } else if pext >= w.lo {
                        w.saw(pext);
                        if let Some(c) = w.win.get_mut(pext.saturating_sub(w.lo) as usize) {
                            *c = c.saturating_add(1);
                        }
                    }
                }
                None
            }
            (Kind::Dir, 0) => {
                let r = rec_decode(b, idx)?;
                if r.size == 0 {
                    if (r.root | r.bg_cursor | r.bg_done | r.uid | r.flags) != 0 && w.first {
                        rep.add(ProblemKind::BadRecord, f.ptr, idx as u64, 0, 0);
                    }
                    None
                } else if r.size > MAX_VOLUME_EXTENTS
                    || r.bg_cursor > r.size
                    || r.uid == 0
                    || r.uid >= p.work.next_uid
                    || r.flags & !REC_DELETING != 0
                {
                    if w.first {
                        rep.add(ProblemKind::BadRecord, f.ptr, idx as u64, r.size, 0);
                    }
                    None
                } else {
                    if w.first {
                        rep.volumes = rep.volumes.saturating_add(1);
                    }
                    if r.root == 0 {
                        None
                    } else {
                        Some(Frame {
                            ptr: r.root,
                            kind: Kind::Vol,
                            level: Kind::Vol.depth_for(r.size)?.saturating_sub(1),
                            idx: 0,
                            base: 0,
                            limit: r.size,
                        })
                    }
                }
            }
            _ => {
                if v == 0 {
                    None
                } else {
                    Some(Frame {
                        ptr: v,
                        kind: f.kind,
                        level: f.level.saturating_sub(1),
                        idx: 0,
                        base: key,
                        limit: f.limit,
                    })
                }
            }
        };
        if let Some(c) = child {
            if visit(p, rep, w, &c)? {
                let Some(s) = stack.get_mut(sp) else {
                    return Err(Error::Corrupt);
                };
                *s = c;
                sp = sp.saturating_add(1);
            }
        }
    }
    Ok(())
}

/// Compares the counts of `[lo, hi)` of a space map with `counts` (`None`:
/// all zero); returns the number of free entries seen (excluding
/// `skip_below`). Blocks never written with no expected reference cost no
/// work per entry, so huge sparse pools check fast.
#[allow(clippy::too_many_arguments)]
fn compare_sm<D: MetaDevice>(
    p: &mut Pool<'_, D>,
    rep: &mut CheckReport,
    kind: SmKind,
    lo: u64,
    hi: u64,
    counts: Option<&[u32]>,
    skip_below: u64,
) -> Result<u64, Error> {
    let geo = p.geo;
    let hi = hi.min(geo.sm_n(kind));
    let mut free = 0u64;
    let mut pos = lo;
    while pos < hi {
        let j = pos / SM_ENTRIES;
        let blk_end = j.saturating_add(1).saturating_mul(SM_ENTRIES).min(hi);
        let loc = match sm_loc(&mut p.loader(), &geo, kind, j, false) {
            Ok(l) => l,
            Err(Error::Corrupt) => {
                // The index block is unreadable or malformed.
                let k = geo.sm_entry(kind, j).map_or(0, |e| e / IDX_ENTRIES);
                rep.add(ProblemKind::SpaceMap, k, 0, 0, 0);
                pos = blk_end;
                continue;
            }
            Err(e) => return Err(e),
        };
        let slot = match loc {
            None => None,
            Some(phys) => match p.cache.get(&mut p.dev, phys) {
                Ok(i) => {
                    if check_header(p.cache.buf(i)?, Geometry::sm_tag(kind), 0, u64::MAX).is_ok() {
                        Some(i)
                    } else {
                        rep.add(ProblemKind::SpaceMap, phys, 0, 0, 0);
                        pos = blk_end;
                        continue;
                    }
                }
                Err(Error::Corrupt) => {
                    rep.add(ProblemKind::SpaceMap, phys, 0, 0, 0);
                    pos = blk_end;
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        if slot.is_none() && counts.is_none() && kind == SmKind::Data {
            free = free.saturating_add(blk_end.saturating_sub(pos));
            pos = blk_end;
            continue;
        }
        while pos < blk_end {
            let rc = match slot {
                Some(i) => rd_u32(p.cache.buf(i)?, sm_off(pos % SM_ENTRIES))?,
                None => geo.sm_implicit(kind, pos),
            };
            let want = counts
                .and_then(|c| c.get(pos.saturating_sub(lo) as usize))
                .copied()
                .unwrap_or(0);
            if rc != want {
                let k = match kind {
                    SmKind::Meta => ProblemKind::MetaRefcount,
                    SmKind::Data => ProblemKind::DataRefcount,
                };
                rep.add(k, pos, 0, u64::from(rc), u64::from(want));
            }
            if rc == 0 && pos >= skip_below {
                free = free.saturating_add(1);
            }
            pos = pos.saturating_add(1);
        }
    }
    Ok(free)
}

pub(crate) fn run<D: MetaDevice>(
    p: &mut Pool<'_, D>,
    scratch: &mut [u32],
) -> Result<CheckReport, Error> {
    let geo = p.geo;
    let m = geo.meta_blocks as usize;
    if scratch.len() <= m {
        return Err(Error::Invalid);
    }
    let (meta, win) = scratch.split_at_mut(m);
    let wlen = win.len() as u64;
    let mut rep = CheckReport::new();
    let mut lo = 0u64;
    let mut data_free = 0u64;
    let mut first = true;
    // Referenced data extents seen by the first walk (+1; 0: none).
    let (mut ref_lo, mut ref_hi) = (0u64, 0u64);
    // Extents of pending breaks are referenced by their plans.
    for i in 0..p.npending {
        let plan = p.pending_get(i)?;
        let v = plan.new.saturating_add(1);
        if ref_lo == 0 || v < ref_lo {
            ref_lo = v;
        }
        ref_hi = ref_hi.max(v);
    }
    while lo < geo.data_extents {
        let hi = lo.saturating_add(wlen).min(geo.data_extents);
        // After the first walk, windows outside the referenced range need
        // no walk: every count there must be zero.
        if !first && (ref_hi == 0 || hi < ref_lo || lo >= ref_hi) {
            let f = compare_sm(p, &mut rep, SmKind::Data, lo, hi, None, 0)?;
            data_free = data_free.saturating_add(f);
            lo = hi;
            continue;
        }
        meta.fill(0);
        win.fill(0);
        for c in meta.iter_mut().take(geo.first_dyn as usize) {
            *c = 1;
        }
        for e in geo.exts() {
            let lo = e.base as usize;
            let hi = e.base.saturating_add(e.len()) as usize;
            for c in meta.get_mut(lo..hi).into_iter().flatten() {
                *c = 1;
            }
        }
        let n = hi.saturating_sub(lo) as usize;
        let mut w = Walk {
            meta: &mut *meta,
            win: win.get_mut(..n).ok_or(Error::Invalid)?,
            // The first walk sees every extent to find the referenced range.
            lo: if first { 0 } else { lo },
            first,
            ref_lo: 0,
            ref_hi: 0,
        };
        walk(p, &mut rep, &mut w)?;
        if first {
            if w.ref_lo != 0 && (ref_lo == 0 || w.ref_lo < ref_lo) {
                ref_lo = w.ref_lo;
            }
            ref_hi = ref_hi.max(w.ref_hi);
        }
        rep.passes = rep.passes.saturating_add(1);
        for i in 0..p.npending {
            let plan = p.pending_get(i)?;
            if plan.new >= lo && plan.new < hi {
                if let Some(c) = w.win.get_mut(plan.new.saturating_sub(lo) as usize) {
                    *c = c.saturating_add(1);
                }
            }
        }
        if first {
            let meta_free = compare_sm(
                p,
                &mut rep,
                SmKind::Meta,
                0,
                geo.meta_blocks,
                Some(w.meta),
                geo.first_dyn,
            )?;
            rep.meta_used = geo.meta_blocks.saturating_sub(meta_free);
            if meta_free != p.work.meta_free {
                rep.add(ProblemKind::FreeCount, 0, 0, p.work.meta_free, meta_free);
            }
            if rep.volumes != p.work.volumes {
                rep.add(ProblemKind::VolumeCount, 0, 0, p.work.volumes, rep.volumes);
            }
        }
        let f = compare_sm(p, &mut rep, SmKind::Data, lo, hi, Some(w.win), 0)?;
        data_free = data_free.saturating_add(f);
        first = false;
        lo = hi;
    }
    rep.data_used = geo.data_extents.saturating_sub(data_free);
    if data_free != p.work.data_free {
        rep.add(ProblemKind::FreeCount, 1, 0, p.work.data_free, data_free);
    }
    Ok(rep)
}
