//! Read-only walks shared by the blocking path (which loads blocks) and the
//! non-blocking path (which answers from cache or says `WouldBlock`).

use super::block::{rd_u32, rd_u48, rd_u64, wr_u48, wr_u64, HDR};
use super::cache::{Cache, SLOT_COM, SLOT_WORK};
use super::geom::{
    check_header, idx_get, sel_get, sm_off, Geometry, Kind, SmKind, IDX_ENTRIES, IDX_TAG, REC_SIZE,
    SM_ENTRIES,
};
use super::{Error, Mapping, MetaDevice, BLOCK_SIZE};

/// A source of blocks.
pub(crate) trait Src {
    /// Returns the cache slot holding block `nr`.
    fn load(&mut self, nr: u64) -> Result<usize, Error>;
    /// The buffer of a slot.
    fn buf(&self, idx: usize) -> Result<&[u8; BLOCK_SIZE], Error>;
}

/// Loads missing blocks from the device.
pub(crate) struct Loader<'p, 'a, D: MetaDevice> {
    pub(crate) cache: &'p mut Cache<'a>,
    pub(crate) dev: &'p mut D,
}

impl<D: MetaDevice> Src for Loader<'_, '_, D> {
    fn load(&mut self, nr: u64) -> Result<usize, Error> {
        self.cache.get(self.dev, nr)
    }
    fn buf(&self, idx: usize) -> Result<&[u8; BLOCK_SIZE], Error> {
        self.cache.buf(idx)
    }
}

/// Answers only from cache.
pub(crate) struct Cached<'p, 'a> {
    pub(crate) cache: &'p Cache<'a>,
}

impl Src for Cached<'_, '_> {
    fn load(&mut self, nr: u64) -> Result<usize, Error> {
        let i = self.cache.find(nr).ok_or(Error::WouldBlock)?;
        // A hit counts as recent use (an atomic flag, the only write).
        self.cache.touch_shared(i);
        Ok(i)
    }
    fn buf(&self, idx: usize) -> Result<&[u8; BLOCK_SIZE], Error> {
        self.cache.buf(idx)
    }
}

/// A volume record in the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct VolRec {
    pub(crate) size: u64,
    pub(crate) root: u64,
    pub(crate) bg_cursor: u64,
    pub(crate) bg_done: u64,
    /// Identity: unique over the pool's life (a re-created id gets a new one).
    pub(crate) uid: u64,
    /// [`REC_DELETING`] (other bits are invalid).
    pub(crate) flags: u64,
}

/// Volume record flag: the volume is being deleted in steps
/// ([`super::Pool::delete_volume_step`]); it is hidden from every
/// operation but the listing and the deletion, and its id is not free.
pub(crate) const REC_DELETING: u64 = 1;

impl VolRec {
    /// Whether the volume is being deleted.
    pub(crate) fn deleting(&self) -> bool {
        self.flags & REC_DELETING != 0
    }
}

pub(crate) fn rec_decode(b: &[u8], idx: usize) -> Result<VolRec, Error> {
    let off = idx.saturating_mul(REC_SIZE).saturating_add(HDR);
    Ok(VolRec {
        size: rd_u64(b, off)?,
        root: rd_u64(b, off.saturating_add(8))?,
        bg_cursor: rd_u64(b, off.saturating_add(16))?,
        bg_done: rd_u64(b, off.saturating_add(24))?,
        uid: rd_u64(b, off.saturating_add(32))?,
        flags: rd_u64(b, off.saturating_add(40))?,
    })
}

pub(crate) fn rec_encode(b: &mut [u8], idx: usize, r: &VolRec) -> Result<(), Error> {
    let off = idx.saturating_mul(REC_SIZE).saturating_add(HDR);
    wr_u64(b, off, r.size)?;
    wr_u64(b, off.saturating_add(8), r.root)?;
    wr_u64(b, off.saturating_add(16), r.bg_cursor)?;
    wr_u64(b, off.saturating_add(24), r.bg_done)?;
    wr_u64(b, off.saturating_add(32), r.uid)?;
    wr_u64(b, off.saturating_add(40), r.flags)
}

/// Reads entry `idx` of a node: a child pointer, a mapping value
/// (physical extent + 1, 0 = unmapped) or, for directory leaves, the
/// record's size (0 = no volume).
pub(crate) fn entry(b: &[u8], kind: Kind, level: u8, idx: usize) -> Result<u64, Error> {
    if idx as u64 >= kind.entries(level) {
        return Err(Error::Corrupt);
    }
    match (kind, level) {
        (Kind::Vol, 0) => rd_u48(b, idx.saturating_mul(6).saturating_add(HDR)),
        (Kind::Dir, 0) => rd_u64(b, idx.saturating_mul(REC_SIZE).saturating_add(HDR)),
        _ => rd_u64(b, idx.saturating_mul(8).saturating_add(HDR)),
    }
}

/// Writes entry `idx` (not for directory leaves).
pub(crate) fn set_entry(
    b: &mut [u8],
    kind: Kind,
    level: u8,
    idx: usize,
    v: u64,
) -> Result<(), Error> {
    if idx as u64 >= kind.entries(level) {
        return Err(Error::Invalid);
    }
    match (kind, level) {
        (Kind::Vol, 0) => wr_u48(b, idx.saturating_mul(6).saturating_add(HDR), v),
        (Kind::Dir, 0) => Err(Error::Invalid),
        _ => wr_u64(b, idx.saturating_mul(8).saturating_add(HDR), v),
    }
}

/// Loads tree node `ptr` and validates its header.
pub(crate) fn node<S: Src>(
    s: &mut S,
    geo: &Geometry,
    ptr: u64,
    kind: Kind,
    level: u8,
    gen_limit: u64,
) -> Result<usize, Error> {
    if !geo.is_dyn(ptr) {
        return Err(Error::Corrupt);
    }
    let i = s.load(ptr)?;
    check_header(s.buf(i)?, kind.tag(level), level, gen_limit)?;
    Ok(i)
}

/// Index entry of logical space map block `j` in the working or the
/// committed state: (selector, initialised). Two levels: the superblock's
/// bit selects the live copy of the index block, whose entry selects the
/// live copy of the space map block.
pub(crate) fn sm_index<S: Src>(
    s: &mut S,
    geo: &Geometry,
    kind: SmKind,
    j: u64,
    committed: bool,
) -> Result<(u8, bool), Error> {
    let ent = geo.sm_entry(kind, j)?;
    let k = ent / IDX_ENTRIES;
    let img = s.buf(if committed { SLOT_COM } else { SLOT_WORK })?;
    let ksel = sel_get(img, k)?;
    let i = s.load(geo.idx_phys(k, ksel)?)?;
    let b = s.buf(i)?;
    check_header(b, IDX_TAG, 0, u64::MAX)?;
    idx_get(b, ent % IDX_ENTRIES)
}

/// Location of the live copy of logical space map block `j` (`None`: never
/// written, its counts are implicit, see [`Geometry::sm_implicit`]).
pub(crate) fn sm_loc<S: Src>(
    s: &mut S,
    geo: &Geometry,
    kind: SmKind,
    j: u64,
    committed: bool,
) -> Result<Option<u64>, Error> {
    let (sel, init) = sm_index(s, geo, kind, j, committed)?;
    if !init {
        return Ok(None);
    }
    Ok(Some(geo.sm_phys(kind, j, sel)?))
}

/// Reads a reference count; `committed` selects the last committed state.
pub(crate) fn sm_read<S: Src>(
    s: &mut S,
    geo: &Geometry,
    kind: SmKind,
    idx: u64,
    committed: bool,
) -> Result<u32, Error> {
    if idx >= geo.sm_n(kind) {
        return Err(Error::Corrupt);
    }
    let j = idx / SM_ENTRIES;
    let e = idx % SM_ENTRIES;
    let Some(phys) = sm_loc(s, geo, kind, j, committed)? else {
        return Ok(geo.sm_implicit(kind, idx));
    };
    let i = s.load(phys)?;
    let b = s.buf(i)?;
    check_header(b, Geometry::sm_tag(kind), 0, u64::MAX)?;
    rd_u32(b, sm_off(e))
}

/// Looks up the record of volume `id` (`None`: no such volume).
pub(crate) fn rec_get<S: Src>(
    s: &mut S,
    geo: &Geometry,
    dir_root: u64,
    id: u32,
    gen: u64,
) -> Result<Option<VolRec>, Error> {
    if id >= geo.max_volumes {
        return Err(Error::Invalid);
    }
    let key = u64::from(id);
    let mut ptr = dir_root;
    let mut level = geo.dir_depth.checked_sub(1).ok_or(Error::Corrupt)?;
    loop {
        if ptr == 0 {
            return Ok(None);
        }
        let i = node(s, geo, ptr, Kind::Dir, level, gen)?;
        let idx = Kind::Dir.index(level, key)?;
        let b = s.buf(i)?;
        if level == 0 {
            let r = rec_decode(b, idx)?;
            return Ok(if r.size == 0 { None } else { Some(r) });
        }
        ptr = entry(b, Kind::Dir, level, idx)?;
        level = level.saturating_sub(1);
    }
}

/// Walks a volume table to the value of `vext`, also telling whether a
/// node on the path is shared (`rc` is consulted only when `want_shared`).
fn vol_walk<S: Src>(
    s: &mut S,
    geo: &Geometry,
    rec: &VolRec,
    vext: u64,
    gen: u64,
    want_shared: bool,
) -> Result<(u64, bool), Error> {
    if vext >= rec.size {
        return Err(Error::Invalid);
    }
    let depth = Kind::Vol.depth_for(rec.size)?;
    let mut level = depth.saturating_sub(1);
    let mut ptr = rec.root;
    let mut shared = false;
    loop {
        if ptr == 0 {
            return Ok((0, shared));
        }
        if want_shared && !shared && sm_read(s, geo, SmKind::Meta, ptr, false)? > 1 {
            shared = true;
        }
        let i = node(s, geo, ptr, Kind::Vol, level, gen)?;
        let idx = Kind::Vol.index(level, vext)?;
        let v = entry(s.buf(i)?, Kind::Vol, level, idx)?;
        if level == 0 {
            return Ok((v, shared));
        }
        ptr = v;
        level = level.saturating_sub(1);
    }
}

/// Raw value (physical extent + 1, or 0) of `vext`.
pub(crate) fn vol_raw<S: Src>(
    s: &mut S,
    geo: &Geometry,
    rec: &VolRec,
    vext: u64,
    gen: u64,
) -> Result<u64, Error> {
    Ok(vol_walk(s, geo, rec, vext, gen, false)?.0)
}

/// Mapping of `vext` including whether it is shared.
pub(crate) fn vol_lookup<S: Src>(
    s: &mut S,
    geo: &Geometry,
    rec: &VolRec,
    vext: u64,
    gen: u64,
) -> Result<Mapping, Error> {
    let (v, shared) = vol_walk(s, geo, rec, vext, gen, true)?;
    if v == 0 {
        return Ok(Mapping::Unmapped);
    }
    let pext = v.saturating_sub(1);
    if pext >= geo.data_extents {
        return Err(Error::Corrupt);
    }
    let shared = shared || sm_read(s, geo, SmKind::Data, pext, false)? > 1;
    Ok(Mapping::Mapped { pext, shared })
}

/// First vext >= `from` whose value is non-zero, skipping unmapped
/// subtrees; returns `(vext, value)`.
pub(crate) fn next_mapped_raw<S: Src>(
    s: &mut S,
    geo: &Geometry,
    rec: &VolRec,
    from: u64,
    gen: u64,
) -> Result<Option<(u64, u64)>, Error> {
    let depth = Kind::Vol.depth_for(rec.size)?;
    next_slot(
        s,
        geo,
        Kind::Vol,
        rec.root,
        depth,
        rec.size,
        from,
        gen,
        |b, idx| {
            let v = entry(b, Kind::Vol, 0, idx)?;
            Ok((v != 0).then_some(v))
        },
    )
}

/// First volume with id >= `from`.
pub(crate) fn next_rec<S: Src>(
    s: &mut S,
    geo: &Geometry,
    dir_root: u64,
    from: u64,
    gen: u64,
) -> Result<Option<(u32, VolRec)>, Error> {
    let n = u64::from(geo.max_volumes);
    let found = next_slot(
        s,
        geo,
        Kind::Dir,
        dir_root,
        geo.dir_depth,
        n,
        from,
        gen,
        |b, idx| {
            let r = rec_decode(b, idx)?;
            Ok((r.size != 0).then_some(r))
        },
    )?;
    // Keys are below `max_volumes`, a `u32`.
    Ok(found.and_then(|(k, r)| Some((u32::try_from(k).ok()?, r))))
}

/// First key in `from..limit` of the `kind` tree rooted at `root` (of
/// `depth` levels) whose leaf slot `pick` accepts, with what it returned.
/// Unmapped subtrees are skipped without being read, and every round of
/// the outer loop moves `pos` forward, so the walk is bounded by `limit`
/// and the number of mapped leaves.
#[allow(clippy::too_many_arguments)]
fn next_slot<S: Src, T>(
    s: &mut S,
    geo: &Geometry,
    kind: Kind,
    root: u64,
    depth: u8,
    limit: u64,
    from: u64,
    gen: u64,
    mut pick: impl FnMut(&[u8], usize) -> Result<Option<T>, Error>,
) -> Result<Option<(u64, T)>, Error> {
    let mut pos = from;
    'outer: while pos < limit {
        let mut ptr = root;
        let mut level = depth.saturating_sub(1);
        loop {
            if ptr == 0 {
                // The whole subtree at `level` around `pos` is unmapped.
                let c = kind.cover(level)?;
                pos = pos
                    .checked_div(c)
                    .unwrap_or(u64::MAX)
                    .saturating_add(1)
                    .saturating_mul(c);
                continue 'outer;
            }
            let i = node(s, geo, ptr, kind, level, gen)?;
            let b = s.buf(i)?;
            if level == 0 {
                let first = kind.index(0, pos)?;
                let base = pos.saturating_sub(first as u64);
                let n = kind.leaf_entries();
                let mut idx = first;
                while (idx as u64) < n {
                    let k = base.saturating_add(idx as u64);
                    if k >= limit {
                        return Ok(None);
                    }
                    if let Some(v) = pick(b, idx)? {
                        return Ok(Some((k, v)));
                    }
                    idx = idx.saturating_add(1);
                }
                pos = base.saturating_add(n);
                continue 'outer;
            }
            ptr = entry(b, kind, level, kind.index(level, pos)?)?;
            level = level.saturating_sub(1);
        }
    }
    Ok(None)
}
