//! Pool geometry, tree shapes and the superblock encoding.

use super::block::{
    header, rd_u32, rd_u64, set_header, verify, wr_u32, wr_u64, Header, HDR, PAYLOAD, TAG_DINT,
    TAG_DLEAF, TAG_DSM, TAG_MSM, TAG_SB, TAG_SIDX, TAG_VINT, TAG_VLEAF,
};
use super::{Error, BLOCK_SIZE, FORMAT_VERSION, MAX_DATA_EXTENTS, MAX_VOLUMES_LIMIT, META_RESERVE};

/// Entries of an internal node (8-byte child block numbers).
pub(crate) const INT_ENTRIES: u64 = (PAYLOAD / 8) as u64;
/// Entries of a volume table leaf (6-byte values: physical extent + 1).
pub(crate) const VLEAF_ENTRIES: u64 = (PAYLOAD / 6) as u64;
/// Entries of a directory leaf (32-byte volume records).
pub(crate) const DLEAF_ENTRIES: u64 = (PAYLOAD / REC_SIZE) as u64;
/// Entries of a space map block (u32 reference counts).
pub(crate) const SM_ENTRIES: u64 = (PAYLOAD / 4) as u64;
/// Size of a volume record.
pub(crate) const REC_SIZE: usize = 48;
/// Deepest tree (levels) of any table.
pub(crate) const MAX_DEPTH: usize = 6;

/// Superblock magic ("SGPOOLMD").
pub(crate) const SB_MAGIC: u64 = u64::from_le_bytes(*b"SGPOOLMD");
/// Offset of the growth extension table in the superblock.
pub(crate) const EXT_OFF: usize = 256;
/// Size of one extension table entry: base block (u64), metadata and data
/// space map blocks (u32 each).
pub(crate) const EXT_SIZE: usize = 16;
/// Most growth extensions a pool can have.
pub(crate) const MAX_EXT: usize = 8;
/// Largest space map block count of one extension (its u32 fields).
pub(crate) const EXT_SM_MAX: u64 = u32::MAX as u64;
/// Offset of the space map slot selector bitmap in the superblock.
pub(crate) const SEL_OFF: usize = 512;
/// Number of selector bits available in the superblock: one per space map
/// index block.
pub(crate) const SEL_BITS: u64 = ((BLOCK_SIZE - SEL_OFF) * 8) as u64;
/// Space map blocks described by one index block (2 bits each).
pub(crate) const IDX_ENTRIES: u64 = (PAYLOAD * 4) as u64;
/// Blocks before the metadata space map region (the superblock pair).
pub(crate) const SB_BLOCKS: u64 = 2;
/// Minimum number of dynamically allocated metadata blocks.
pub(crate) const MIN_DYN_BLOCKS: u64 = 16;
/// Superblock flag (flags word at offset 36): the metadata needs a check
/// before it may be changed again ([`super::Pool::needs_check`]).
pub(crate) const SB_NEEDS_CHECK: u32 = 1;
/// Every flag this code knows; a superblock with another bit set is
/// refused.
pub(crate) const SB_FLAGS_KNOWN: u32 = SB_NEEDS_CHECK;

/// Which space map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SmKind {
    /// Metadata blocks.
    Meta,
    /// Data extents.
    Data,
}

/// Which tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A volume's pointer table.
    Vol,
    /// The volume directory.
    Dir,
}

impl Kind {
    pub(crate) fn tag(self, level: u8) -> u16 {
        match (self, level) {
            (Kind::Vol, 0) => TAG_VLEAF,
            (Kind::Vol, _) => TAG_VINT,
            (Kind::Dir, 0) => TAG_DLEAF,
            (Kind::Dir, _) => TAG_DINT,
        }
    }

    pub(crate) fn leaf_entries(self) -> u64 {
        match self {
            Kind::Vol => VLEAF_ENTRIES,
            Kind::Dir => DLEAF_ENTRIES,
        }
    }

    pub(crate) fn entries(self, level: u8) -> u64 {
        if level == 0 {
            self.leaf_entries()
        } else {
            INT_ENTRIES
        }
    }

    /// Keys covered by one node at `level`.
    pub(crate) fn cover(self, level: u8) -> Result<u64, Error> {
        let mut c = self.leaf_entries();
        let mut l = 0u8;
        while l < level {
            c = c.checked_mul(INT_ENTRIES).ok_or(Error::Invalid)?;
            l = l.saturating_add(1);
        }
        Ok(c)
    }

    /// Number of levels for a key space of `n` keys (at least 1).
    pub(crate) fn depth_for(self, n: u64) -> Result<u8, Error> {
        let mut d = 1u8;
        let mut c = self.leaf_entries();
        while c < n {
            c = c.checked_mul(INT_ENTRIES).ok_or(Error::Invalid)?;
            d = d.saturating_add(1);
            if usize::from(d) > MAX_DEPTH {
                return Err(Error::Invalid);
            }
        }
        Ok(d)
    }

    /// Index of `key` within its node at `level`.
    pub(crate) fn index(self, level: u8, key: u64) -> Result<usize, Error> {
        if level == 0 {
            return Ok(key.checked_rem(self.leaf_entries()).ok_or(Error::Invalid)? as usize);
        }
        let below = self.cover(level.saturating_sub(1))?;
        let q = key.checked_div(below).ok_or(Error::Invalid)?;
        Ok(q.checked_rem(INT_ENTRIES).ok_or(Error::Invalid)? as usize)
    }

    /// Upper bound of nodes that an update of keys `[start, start+len)` in
    /// a tree of `depth` levels can shadow or create.
    pub(crate) fn path_nodes(self, depth: u8, start: u64, len: u64) -> Result<u64, Error> {
        if len == 0 {
            return Ok(0);
        }
        let last = start
            .checked_add(len.saturating_sub(1))
            .ok_or(Error::Invalid)?;
        let mut total = 0u64;
        let mut l = 0u8;
        while l < depth {
            let c = self.cover(l)?;
            let a = start.checked_div(c).ok_or(Error::Invalid)?;
            let b = last.checked_div(c).ok_or(Error::Invalid)?;
            total = total.saturating_add(b.saturating_sub(a).saturating_add(1));
            l = l.saturating_add(1);
        }
        Ok(total)
    }
}

/// Fixed pool geometry (from the superblock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) extent_shift: u32,
    /// Current sizes (grow up to the capacities).
    pub(crate) data_extents: u64,
    pub(crate) meta_blocks: u64,
    /// Capacities: the fixed area is laid out for them.
    pub(crate) data_cap: u64,
    pub(crate) meta_cap: u64,
    pub(crate) max_volumes: u32,
    pub(crate) msm_blocks: u64,
    pub(crate) dsm_blocks: u64,
    /// Space map index blocks (logical; each has two copies).
    pub(crate) idx_blocks: u64,
    pub(crate) first_dyn: u64,
    pub(crate) dir_depth: u8,
    /// Metadata blocks only space-freeing operations may use.
    pub(crate) meta_reserve: u64,
    /// Growth extensions (the first `n_ext` are used): space map areas
    /// added after format, for space beyond the format-time capacities.
    pub(crate) ext: [Ext; MAX_EXT],
    pub(crate) n_ext: usize,
}

/// A growth extension: an area of the dynamic part of the metadata device
/// laid out like the fixed area (index pairs, metadata space map pairs,
/// data space map pairs) for the space map blocks that follow those of the
/// fixed area and of the extensions before it.
///
/// # Invariants
///
/// In a [`Geometry`] (checked by [`Geometry::build`], so also for every
/// superblock read): `base` is in the dynamic area, the extensions are in
/// order without overlap and end by the metadata size, `msm` and `dsm` are
/// at most [`EXT_SM_MAX`] and not both 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Ext {
    /// First block of the area.
    pub(crate) base: u64,
    /// Metadata space map blocks (logical) it holds.
    pub(crate) msm: u64,
    /// Data space map blocks (logical) it holds.
    pub(crate) dsm: u64,
}

impl Ext {
    /// Index blocks (logical) of the area.
    pub(crate) fn idx(&self) -> u64 {
        self.msm.saturating_add(self.dsm).div_ceil(IDX_ENTRIES)
    }

    /// Blocks the area occupies (two copies of everything).
    pub(crate) fn len(&self) -> u64 {
        self.idx()
            .saturating_add(self.msm)
            .saturating_add(self.dsm)
            .saturating_mul(2)
    }

    /// Whether block `nr` lies in the area.
    pub(crate) fn holds(&self, nr: u64) -> bool {
        nr >= self.base && nr.saturating_sub(self.base) < self.len()
    }
}

/// One space map area (the fixed area or an extension), located.
#[derive(Clone, Copy, Debug)]
struct Area {
    base: u64,
    idx: u64,
    msm: u64,
    dsm: u64,
    /// First selector bit (index block) of the area.
    sel_lo: u64,
    /// First logical metadata / data space map block of the area.
    mlo: u64,
    dlo: u64,
}

impl Geometry {
    pub(crate) fn new(
        extent_shift: u32,
        data_extents: u64,
        meta_blocks: u64,
        max_volumes: u32,
    ) -> Result<Self, Error> {
        Self::with_caps(
            extent_shift,
            data_extents,
            meta_blocks,
            max_volumes,
            data_extents,
            meta_blocks,
        )
    }

    /// Geometry whose fixed area is laid out for growth up to `data_cap`
    /// data extents and `meta_cap` metadata blocks.
    pub(crate) fn with_caps(
        extent_shift: u32,
        data_extents: u64,
        meta_blocks: u64,
        max_volumes: u32,
        data_cap: u64,
        meta_cap: u64,
    ) -> Result<Self, Error> {
        Self::build(
            extent_shift,
            [data_extents, meta_blocks],
            max_volumes,
            [data_cap, meta_cap],
            [meta_cap.div_ceil(SM_ENTRIES), data_cap.div_ceil(SM_ENTRIES)],
            &[],
        )
    }

    /// Geometry with `sizes` (data extents, metadata blocks) and `caps`
    /// (data, metadata capacities: totals), a fixed area of `sm0`
    /// (metadata, data) space map blocks and the growth extensions `ext`.
    /// Checks everything: the space map blocks of all areas together are
    /// exactly those the capacities need, the index fits the selector
    /// bitmap, the extensions lie in order inside the dynamic area and
    /// leave enough of it.
    pub(crate) fn build(
        extent_shift: u32,
        sizes: [u64; 2],
        max_volumes: u32,
        caps: [u64; 2],
        sm0: [u64; 2],
        ext: &[Ext],
    ) -> Result<Self, Error> {
        let [data_extents, meta_blocks] = sizes;
        let [data_cap, meta_cap] = caps;
        let [msm_blocks, dsm_blocks] = sm0;
        if !(12..=30).contains(&extent_shift)
            || data_extents == 0
            || data_cap < data_extents
            || data_cap > MAX_DATA_EXTENTS
            || meta_cap < meta_blocks
            || max_volumes == 0
            || max_volumes > MAX_VOLUMES_LIMIT
            || ext.len() > MAX_EXT
        {
            return Err(Error::Invalid);
        }
        let idx_blocks = msm_blocks.saturating_add(dsm_blocks).div_ceil(IDX_ENTRIES);
        if idx_blocks > SEL_BITS {
            return Err(Error::Invalid);
        }
        let first_dyn = SB_BLOCKS
            .checked_add(idx_blocks.checked_mul(2).ok_or(Error::Invalid)?)
            .and_then(|v| v.checked_add(msm_blocks.checked_mul(2)?))
            .and_then(|v| v.checked_add(dsm_blocks.checked_mul(2)?))
            .ok_or(Error::Invalid)?;
        let mut g = Geometry {
            extent_shift,
            data_extents,
            meta_blocks,
            data_cap,
            meta_cap,
            max_volumes,
            msm_blocks,
            dsm_blocks,
            idx_blocks,
            first_dyn,
            dir_depth: Kind::Dir.depth_for(u64::from(max_volumes))?,
            meta_reserve: 0,
            ext: [Ext::default(); MAX_EXT],
            n_ext: 0,
        };
        let (mut msm, mut dsm, mut idx, mut end) = (msm_blocks, dsm_blocks, idx_blocks, first_dyn);
        for (slot, e) in g.ext.iter_mut().zip(ext) {
            if e.msm > EXT_SM_MAX
                || e.dsm > EXT_SM_MAX
                || (e.msm == 0 && e.dsm == 0)
                || e.base < end
            {
                return Err(Error::Invalid);
            }
            end = e.base.checked_add(e.len()).ok_or(Error::Invalid)?;
            msm = msm.saturating_add(e.msm);
            dsm = dsm.saturating_add(e.dsm);
            idx = idx.saturating_add(e.idx());
            *slot = *e;
        }
        g.n_ext = ext.len();
        if idx > SEL_BITS
            || msm != meta_cap.div_ceil(SM_ENTRIES)
            || dsm != data_cap.div_ceil(SM_ENTRIES)
        {
            return Err(Error::Invalid);
        }
        // Too small for the fixed area: out of space (format says so);
        // extensions past the end: an inconsistent geometry.
        if meta_blocks < first_dyn.saturating_add(MIN_DYN_BLOCKS) {
            return Err(Error::NoMetadataSpace);
        }
        if end > meta_blocks {
            return Err(Error::Invalid);
        }
        if g.dyn_blocks() < MIN_DYN_BLOCKS {
            return Err(Error::NoMetadataSpace);
        }
        g.meta_reserve = META_RESERVE.min(g.dyn_blocks() / 4);
        Ok(g)
    }

    /// The extensions in use.
    pub(crate) fn exts(&self) -> &[Ext] {
        self.ext.get(..self.n_ext).unwrap_or(&[])
    }

    /// Blocks of the metadata device taken by space map areas (the fixed
    /// area and the extensions).
    pub(crate) fn sm_area_blocks(&self) -> u64 {
        self.exts()
            .iter()
            .fold(self.first_dyn, |a, e| a.saturating_add(e.len()))
    }

    /// Blocks available to tree nodes (the dynamic area less the
    /// extensions in it).
    pub(crate) fn dyn_blocks(&self) -> u64 {
        self.meta_blocks.saturating_sub(self.sm_area_blocks())
    }

    /// Logical space map blocks of a map over all areas.
    pub(crate) fn sm_blocks(&self, kind: SmKind) -> u64 {
        self.exts().iter().fold(
            match kind {
                SmKind::Meta => self.msm_blocks,
                SmKind::Data => self.dsm_blocks,
            },
            |a, e| {
                a.saturating_add(match kind {
                    SmKind::Meta => e.msm,
                    SmKind::Data => e.dsm,
                })
            },
        )
    }

    /// Entries the space maps hold now (a growth beyond needs a new
    /// extension): data extents, metadata blocks.
    pub(crate) fn held(&self) -> [u64; 2] {
        [
            self.sm_blocks(SmKind::Data)
                .saturating_mul(SM_ENTRIES)
                .min(MAX_DATA_EXTENTS),
            self.sm_blocks(SmKind::Meta).saturating_mul(SM_ENTRIES),
        ]
    }

    /// Index blocks (selector bits) over all areas.
    pub(crate) fn idx_total(&self) -> u64 {
        self.exts()
            .iter()
            .fold(self.idx_blocks, |a, e| a.saturating_add(e.idx()))
    }

    /// The first area (fixed area, then extensions in order) for which
    /// `pick` holds; at most `MAX_EXT + 1` steps.
    fn area(&self, pick: impl Fn(&Area) -> bool) -> Result<Area, Error> {
        let mut a = Area {
            base: SB_BLOCKS,
            idx: self.idx_blocks,
            msm: self.msm_blocks,
            dsm: self.dsm_blocks,
            sel_lo: 0,
            mlo: 0,
            dlo: 0,
        };
        if pick(&a) {
            return Ok(a);
        }
        for e in self.exts() {
            a = Area {
                base: e.base,
                idx: e.idx(),
                msm: e.msm,
                dsm: e.dsm,
                sel_lo: a.sel_lo.saturating_add(a.idx),
                mlo: a.mlo.saturating_add(a.msm),
                dlo: a.dlo.saturating_add(a.dsm),
            };
            if pick(&a) {
                return Ok(a);
            }
        }
        Err(Error::Corrupt)
    }

    /// The area holding logical space map block `j`.
    fn sm_area(&self, kind: SmKind, j: u64) -> Result<Area, Error> {
        self.area(|a| match kind {
            SmKind::Meta => j >= a.mlo && j.saturating_sub(a.mlo) < a.msm,
            SmKind::Data => j >= a.dlo && j.saturating_sub(a.dlo) < a.dsm,
        })
    }

    /// Entries of a space map.
    pub(crate) fn sm_n(&self, kind: SmKind) -> u64 {
        match kind {
            SmKind::Meta => self.meta_blocks,
            SmKind::Data => self.data_extents,
        }
    }

    pub(crate) fn sm_tag(kind: SmKind) -> u16 {
        match kind {
            SmKind::Meta => TAG_MSM,
            SmKind::Data => TAG_DSM,
        }
    }

    /// Index entry (over all areas) of logical space map block `j`: index
    /// block (selector bit) `entry / IDX_ENTRIES`, entry `entry %
    /// IDX_ENTRIES`. Each area's entries start at its first index block:
    /// its metadata space map blocks, then its data space map blocks.
    pub(crate) fn sm_entry(&self, kind: SmKind, j: u64) -> Result<u64, Error> {
        let a = self.sm_area(kind, j)?;
        let local = match kind {
            SmKind::Meta => j.saturating_sub(a.mlo),
            SmKind::Data => a.msm.saturating_add(j.saturating_sub(a.dlo)),
        };
        Ok(a.sel_lo.saturating_mul(IDX_ENTRIES).saturating_add(local))
    }

    /// Physical location of copy `sel` of index block `k`.
    pub(crate) fn idx_phys(&self, k: u64, sel: u8) -> Result<u64, Error> {
        if sel > 1 {
            return Err(Error::Corrupt);
        }
        let a = self.area(|a| k >= a.sel_lo && k.saturating_sub(a.sel_lo) < a.idx)?;
        Ok(a.base
            .saturating_add(k.saturating_sub(a.sel_lo).saturating_mul(2))
            .saturating_add(u64::from(sel)))
    }

    /// Count of entry `idx` of a space map block that was never written.
    pub(crate) fn sm_implicit(&self, kind: SmKind, idx: u64) -> u32 {
        // The space map areas (superblocks, index, space maps) are in use.
        u32::from(
            kind == SmKind::Meta
                && (idx < self.first_dyn || self.exts().iter().any(|e| e.holds(idx))),
        )
    }

    /// Physical location of copy `sel` of logical space map block `j`.
    pub(crate) fn sm_phys(&self, kind: SmKind, j: u64, sel: u8) -> Result<u64, Error> {
        if sel > 1 {
            return Err(Error::Corrupt);
        }
        let a = self.sm_area(kind, j)?;
        let pair = match kind {
            SmKind::Meta => j.saturating_sub(a.mlo),
            SmKind::Data => a.msm.saturating_add(j.saturating_sub(a.dlo)),
        };
        Ok(a.base
            .saturating_add(a.idx.saturating_add(pair).saturating_mul(2))
            .saturating_add(u64::from(sel)))
    }

    /// Whether `nr` may be a dynamically allocated block (tree node).
    pub(crate) fn is_dyn(&self, nr: u64) -> bool {
        nr >= self.first_dyn && nr < self.meta_blocks && !self.exts().iter().any(|e| e.holds(nr))
    }
}

/// The superblock fields that change with transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct SbVars {
    pub(crate) gen: u64,
    pub(crate) dir_root: u64,
    pub(crate) data_free: u64,
    pub(crate) meta_free: u64,
    pub(crate) data_hint: u64,
    pub(crate) meta_hint: u64,
    pub(crate) volumes: u64,
    /// Identity given to the next volume created (never reused).
    pub(crate) next_uid: u64,
    /// The user's transaction id (`set_transaction_id`); 0 in pools
    /// written before it existed (the field was reserved, zero).
    pub(crate) txid: u64,
    /// Superblock flags ([`SB_NEEDS_CHECK`]); 0 in pools written before
    /// they existed (the word was written as 0 and not read).
    pub(crate) flags: u32,
}

/// Writes the whole superblock image (header, geometry, variables); the
/// selector bitmap at [`SEL_OFF`] is left as it is.
pub(crate) fn encode_sb(b: &mut [u8; BLOCK_SIZE], g: &Geometry, v: &SbVars) -> Result<(), Error> {
    set_header(
        b,
        Header {
            tag: TAG_SB,
            level: 0,
            blocknr: v.gen % 2,
            gen: v.gen,
        },
    )?;
    wr_u64(b, 24, SB_MAGIC)?;
    wr_u32(b, 32, FORMAT_VERSION)?;
    wr_u32(b, 36, v.flags)?;
    wr_u32(b, 40, BLOCK_SIZE as u32)?;
    wr_u32(b, 44, g.extent_shift)?;
    wr_u64(b, 48, g.data_extents)?;
    wr_u64(b, 56, g.meta_blocks)?;
    wr_u32(b, 64, g.max_volumes)?;
    wr_u32(b, 68, 0)?;
    wr_u64(b, 72, g.msm_blocks)?;
    wr_u64(b, 80, g.dsm_blocks)?;
    wr_u64(b, 88, g.first_dyn)?;
    wr_u64(b, 96, v.dir_root)?;
    wr_u64(b, 104, v.data_free)?;
    wr_u64(b, 112, v.meta_free)?;
    wr_u64(b, 120, v.data_hint)?;
    wr_u64(b, 128, v.meta_hint)?;
    wr_u64(b, 136, v.volumes)?;
    wr_u64(b, 144, v.next_uid)?;
    wr_u64(b, 152, g.idx_blocks)?;
    wr_u64(b, 160, g.data_cap)?;
    wr_u64(b, 168, g.meta_cap)?;
    wr_u64(b, 176, v.txid)?;
    let mut off = 184;
    while off < SEL_OFF {
        wr_u64(b, off, 0)?;
        off = off.saturating_add(8);
    }
    for (i, e) in g.exts().iter().enumerate() {
        let off = EXT_OFF.saturating_add(i.saturating_mul(EXT_SIZE));
        wr_u64(b, off, e.base)?;
        wr_u32(
            b,
            off.saturating_add(8),
            u32::try_from(e.msm).map_err(|_| Error::Invalid)?,
        )?;
        wr_u32(
            b,
            off.saturating_add(12),
            u32::try_from(e.dsm).map_err(|_| Error::Invalid)?,
        )?;
    }
    Ok(())
}

/// Reads the extension table of a superblock: the used entries (base not
/// 0) come first, every entry after them is all zero.
fn decode_ext(b: &[u8; BLOCK_SIZE]) -> Result<([Ext; MAX_EXT], usize), Error> {
    let mut ext = [Ext::default(); MAX_EXT];
    let mut n = 0usize;
    for (i, slot) in ext.iter_mut().enumerate() {
        let off = EXT_OFF.saturating_add(i.saturating_mul(EXT_SIZE));
        let e = Ext {
            base: rd_u64(b, off)?,
            msm: u64::from(rd_u32(b, off.saturating_add(8))?),
            dsm: u64::from(rd_u32(b, off.saturating_add(12))?),
        };
        if e.base == 0 {
            if e.msm != 0 || e.dsm != 0 {
                return Err(Error::Corrupt);
            }
            continue;
        }
        if n != i {
            return Err(Error::Corrupt);
        }
        *slot = e;
        n = n.saturating_add(1);
    }
    Ok((ext, n))
}

/// Parses and validates a superblock read from block `nr`.
pub(crate) fn decode_sb(
    b: &[u8; BLOCK_SIZE],
    nr: u64,
    dev_blocks: u64,
) -> Result<(Geometry, SbVars), Error> {
    let h = verify(b, nr)?;
    if h.tag != TAG_SB || rd_u64(b, 24)? != SB_MAGIC {
        return Err(Error::Corrupt);
    }
    if rd_u32(b, 32)? != FORMAT_VERSION
        || rd_u32(b, 40)? != BLOCK_SIZE as u32
        || rd_u32(b, 36)? & !SB_FLAGS_KNOWN != 0
    {
        return Err(Error::Corrupt);
    }
    let (ext, n_ext) = decode_ext(b)?;
    let g = Geometry::build(
        rd_u32(b, 44)?,
        [rd_u64(b, 48)?, rd_u64(b, 56)?],
        rd_u32(b, 64)?,
        [rd_u64(b, 160)?, rd_u64(b, 168)?],
        [rd_u64(b, 72)?, rd_u64(b, 80)?],
        ext.get(..n_ext).ok_or(Error::Corrupt)?,
    )
    .map_err(|_| Error::Corrupt)?;
    if g.meta_blocks > dev_blocks
        || rd_u64(b, 88)? != g.first_dyn
        || rd_u64(b, 152)? != g.idx_blocks
    {
        return Err(Error::Corrupt);
    }
    // Selector bits past the index are never set.
    let mut bit = g.idx_total();
    while bit < SEL_BITS {
        if bit % 8 == 0 {
            let byte = b.get(SEL_OFF.saturating_add((bit / 8) as usize));
            if byte != Some(&0) {
                return Err(Error::Corrupt);
            }
            bit = bit.saturating_add(8);
        } else {
            if sel_get(b, bit)? != 0 {
                return Err(Error::Corrupt);
            }
            bit = bit.saturating_add(1);
        }
    }
    let v = SbVars {
        gen: h.gen,
        dir_root: rd_u64(b, 96)?,
        data_free: rd_u64(b, 104)?,
        meta_free: rd_u64(b, 112)?,
        data_hint: rd_u64(b, 120)?,
        meta_hint: rd_u64(b, 128)?,
        volumes: rd_u64(b, 136)?,
        next_uid: rd_u64(b, 144)?,
        txid: rd_u64(b, 176)?,
        flags: rd_u32(b, 36)?,
    };
    if h.gen == 0
        || h.gen >= u64::MAX / 2
        || h.gen % 2 != nr
        || (v.dir_root != 0 && !g.is_dyn(v.dir_root))
        || v.data_free > g.data_extents
        || v.meta_free > g.dyn_blocks()
        || v.volumes > u64::from(g.max_volumes)
        || v.next_uid == 0
        || v.next_uid >= u64::MAX / 2
    {
        return Err(Error::Corrupt);
    }
    Ok((g, v))
}

/// Reads entry `e` of a space map index block: (selector, initialised).
pub(crate) fn idx_get(b: &[u8; BLOCK_SIZE], e: u64) -> Result<(u8, bool), Error> {
    if e >= IDX_ENTRIES {
        return Err(Error::Corrupt);
    }
    let byte = b
        .get(HDR.saturating_add((e / 4) as usize))
        .ok_or(Error::Corrupt)?;
    let v = (byte >> ((e % 4).saturating_mul(2))) & 3;
    Ok((v & 1, v & 2 != 0))
}

/// Sets entry `e` of a space map index block.
pub(crate) fn idx_set(b: &mut [u8; BLOCK_SIZE], e: u64, sel: u8, init: bool) -> Result<(), Error> {
    if e >= IDX_ENTRIES {
        return Err(Error::Invalid);
    }
    let byte = b
        .get_mut(HDR.saturating_add((e / 4) as usize))
        .ok_or(Error::Invalid)?;
    let sh = (e % 4).saturating_mul(2);
    let v = (sel & 1) | if init { 2 } else { 0 };
    *byte = (*byte & !(3 << sh)) | (v << sh);
    Ok(())
}

/// Index block tag.
pub(crate) const IDX_TAG: u16 = TAG_SIDX;

/// Reads selector bit `bit` of a superblock image.
pub(crate) fn sel_get(b: &[u8; BLOCK_SIZE], bit: u64) -> Result<u8, Error> {
    if bit >= SEL_BITS {
        return Err(Error::Corrupt);
    }
    let byte = b
        .get(SEL_OFF.saturating_add((bit / 8) as usize))
        .ok_or(Error::Corrupt)?;
    Ok((byte >> (bit % 8)) & 1)
}

/// Flips selector bit `bit` of a superblock image.
pub(crate) fn sel_flip(b: &mut [u8; BLOCK_SIZE], bit: u64) -> Result<(), Error> {
    if bit >= SEL_BITS {
        return Err(Error::Invalid);
    }
    let byte = b
        .get_mut(SEL_OFF.saturating_add((bit / 8) as usize))
        .ok_or(Error::Invalid)?;
    *byte ^= 1 << (bit % 8);
    Ok(())
}

/// Checks the header of a tree node or space map block.
pub(crate) fn check_header(
    b: &[u8; BLOCK_SIZE],
    tag: u16,
    level: u8,
    gen_limit: u64,
) -> Result<Header, Error> {
    let h = header(b)?;
    if h.tag != tag || h.level != level || h.gen > gen_limit {
        return Err(Error::Corrupt);
    }
    Ok(h)
}

/// Space map entry offset.
pub(crate) fn sm_off(e: u64) -> usize {
    (e as usize).saturating_mul(4).saturating_add(HDR)
}
