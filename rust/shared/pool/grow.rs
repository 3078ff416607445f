//! Growth of the data and metadata devices: within what the space map
//! areas hold (O(1)), or beyond it by adding a growth extension (a new
//! space map area named in the superblock).

use super::geom::{Ext, Geometry, SmKind, EXT_SM_MAX, MAX_EXT, SM_ENTRIES};
use super::read::sm_index;
use super::sm::blank_index;
use super::{Error, MetaDevice, Pool, MAX_DATA_EXTENTS};

impl<D: MetaDevice> Pool<'_, D> {
    /// Grows the pool to `data_extents` data extents and `meta_blocks`
    /// metadata blocks (after the kernel reloaded its table with larger
    /// devices), in the open transaction: the new space is usable at once
    /// and durable with the next commit. Sizes may not shrink; the
    /// metadata device must hold `meta_blocks`.
    ///
    /// Within the capacities the space maps hold (chosen at format, see
    /// [`super::FormatParams`], or added by an earlier growth) this is
    /// O(1): the new space map entries are implicit zeros. Beyond them it
    /// adds a **growth extension**: a space map area for the new space,
    /// sized for at least twice the capacity that ran out (or exactly what
    /// is needed if that does not fit), placed at the start of the new
    /// metadata space if it fits there, else in the highest run of free
    /// metadata blocks (free in the open transaction and in the last
    /// commit). Its cost is its index blocks (written now) and its blocks'
    /// counts; the scan for a free run reads at most the metadata space
    /// map once. Errors, changing nothing: [`Error::Invalid`] (a size
    /// shrinks, exceeds [`MAX_DATA_EXTENTS`] or the device, or the pool
    /// already has [`super::MAX_GROWTH_EXTENSIONS`] extensions),
    /// [`Error::NoMetadataSpace`] (no room for the extension: grow the
    /// metadata device too).
    pub fn grow(&mut self, data_extents: u64, meta_blocks: u64) -> Result<(), Error> {
        match self.grow_plan(data_extents, meta_blocks)? {
            None => Ok(()),
            Some((ng, ext)) => self.mutate(true, |p| p.install_grown(ng, ext)),
        }
    }

    /// Whether [`Pool::grow`] to these sizes would succeed now (the same
    /// checks and search, nothing changed): `Ok` with the metadata blocks
    /// a new growth extension would take (0: none needed), or the error
    /// `grow` would return. For a table constructor to refuse early.
    pub fn grow_check(&mut self, data_extents: u64, meta_blocks: u64) -> Result<u64, Error> {
        Ok(self
            .grow_plan(data_extents, meta_blocks)?
            .and_then(|(_, e)| e)
            .map_or(0, |e| e.len()))
    }

    /// Metadata blocks the smallest growth extension for these sizes
    /// takes (0: none needed), wherever it could go.
    pub fn growth_extension_blocks(&self, data_extents: u64, meta_blocks: u64) -> u64 {
        let g = self.geo;
        let [cap_d, cap_m] = g.held();
        if data_extents <= cap_d && meta_blocks <= cap_m {
            return 0;
        }
        Ext {
            base: 0,
            msm: meta_blocks
                .div_ceil(SM_ENTRIES)
                .saturating_sub(g.sm_blocks(SmKind::Meta)),
            dsm: data_extents
                .div_ceil(SM_ENTRIES)
                .saturating_sub(g.sm_blocks(SmKind::Data)),
        }
        .len()
    }

    /// Plans a growth: the new geometry and the extension it adds, if
    /// any (`None`: nothing to do). Changes nothing.
    fn grow_plan(
        &mut self,
        data_extents: u64,
        meta_blocks: u64,
    ) -> Result<Option<(Geometry, Option<Ext>)>, Error> {
        self.check_writable()?;
        let g = self.geo;
        if data_extents < g.data_extents
            || data_extents > MAX_DATA_EXTENTS
            || meta_blocks < g.meta_blocks
            || meta_blocks > self.dev.nr_blocks()
        {
            return Err(Error::Invalid);
        }
        if data_extents == g.data_extents && meta_blocks == g.meta_blocks {
            return Ok(None);
        }
        let held_m = g.sm_blocks(SmKind::Meta);
        let held_d = g.sm_blocks(SmKind::Data);
        let [cap_d, cap_m] = g.held();
        let need_d = data_extents > cap_d;
        let need_m = meta_blocks > cap_m;
        let sizes = [data_extents, meta_blocks];
        if !need_m && !need_d {
            let caps = [g.data_cap.max(data_extents), g.meta_cap.max(meta_blocks)];
            let ng = Geometry::build(
                g.extent_shift,
                sizes,
                g.max_volumes,
                caps,
                [g.msm_blocks, g.dsm_blocks],
                g.exts(),
            )?;
            return Ok(Some((ng, None)));
        }
        if g.n_ext >= MAX_EXT {
            return Err(Error::Invalid);
        }
        // Twice the capacity that ran out, else exactly what is asked.
        let generous = [
            if need_d {
                data_extents
                    .max(g.data_cap.saturating_mul(2))
                    .min(MAX_DATA_EXTENTS)
            } else {
                g.data_cap.max(data_extents)
            },
            if need_m {
                meta_blocks.max(g.meta_cap.saturating_mul(2))
            } else {
                g.meta_cap.max(meta_blocks)
            },
        ];
        let exact = [g.data_cap.max(data_extents), g.meta_cap.max(meta_blocks)];
        let mut last = Error::NoMetadataSpace;
        for caps in [generous, exact] {
            let ext = Ext {
                base: 0,
                msm: caps[1].div_ceil(SM_ENTRIES).saturating_sub(held_m),
                dsm: caps[0].div_ceil(SM_ENTRIES).saturating_sub(held_d),
            };
            if ext.msm > EXT_SM_MAX || ext.dsm > EXT_SM_MAX {
                last = Error::Invalid;
                continue;
            }
            let Some(base) = self.ext_place(ext.len(), meta_blocks)? else {
                continue;
            };
            let ext = Ext { base, ..ext };
            let mut exts = [Ext::default(); MAX_EXT];
            let n = g.n_ext;
            for (d, s) in exts.iter_mut().zip(g.exts()) {
                *d = *s;
            }
            *exts.get_mut(n).ok_or(Error::Invalid)? = ext;
            let all = exts.get(..n.saturating_add(1)).ok_or(Error::Invalid)?;
            match Geometry::build(
                g.extent_shift,
                sizes,
                g.max_volumes,
                caps,
                [g.msm_blocks, g.dsm_blocks],
                all,
            ) {
                Ok(ng) => return Ok(Some((ng, Some(ext)))),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Where a growth extension of `len` blocks goes when the metadata
    /// device grows to `meta_blocks`: the start of the new space if it
    /// fits there, else the highest run of blocks free now and in the last
    /// commit (the new space counting as free). `None`: no such run.
    fn ext_place(&mut self, len: u64, meta_blocks: u64) -> Result<Option<u64>, Error> {
        let g = self.geo;
        let old = g.meta_blocks;
        if len == 0 {
            return Ok(None);
        }
        if meta_blocks.saturating_sub(old) >= len {
            return Ok(Some(old));
        }
        if len
            > self
                .meta_avail()
                .saturating_add(meta_blocks.saturating_sub(old))
        {
            return Ok(None);
        }
        // Downwards from the top, a span of blocks at a time: at most one
        // pass over the dynamic area. The free run found so far is
        // `[nr, nr + run)`.
        let mut run = 0u64;
        let mut nr = meta_blocks;
        while nr > g.first_dyn {
            let b = nr.saturating_sub(1);
            let (free, span) = if b >= old {
                (true, nr.saturating_sub(old))
            } else {
                self.meta_span(b)?
            };
            let span = span.clamp(1, nr.saturating_sub(g.first_dyn));
            if !free {
                run = 0;
            } else if run.saturating_add(span) >= len {
                return Ok(Some(nr.saturating_add(run).saturating_sub(len)));
            } else {
                run = run.saturating_add(span);
            }
            nr = nr.saturating_sub(span);
        }
        Ok(None)
    }

    /// Whether metadata block `b` (below the current size) is free in the
    /// open transaction and in the last commit, and how many blocks from
    /// `b` downwards are known to be the same: the rest of its space map
    /// block down to the dynamic area if that block was never written in
    /// either state and holds no extension (all free), else 1.
    fn meta_span(&mut self, b: u64) -> Result<(bool, u64), Error> {
        let g = self.geo;
        let j = b / SM_ENTRIES;
        let lo = j.saturating_mul(SM_ENTRIES).max(g.first_dyn);
        let w = sm_index(&mut self.loader(), &g, SmKind::Meta, j, false)?;
        let c = sm_index(&mut self.loader(), &g, SmKind::Meta, j, true)?;
        let in_ext = g
            .exts()
            .iter()
            .any(|e| e.base <= b && e.base.saturating_add(e.len()) > lo);
        if !w.1 && !c.1 && !in_ext && b >= lo {
            return Ok((true, b.saturating_sub(lo).saturating_add(1)));
        }
        let free = g.is_dyn(b)
            && self.rc(SmKind::Meta, b)? == 0
            && self.rc_committed(SmKind::Meta, b)? == 0;
        Ok((free, 1))
    }

    /// Installs a grown geometry in the open transaction, with its new
    /// extension if any: the extension's index blocks are written (copy
    /// 0, every space map block "never written"), and its blocks, free
    /// until now, get count 1: implicitly where their space map block was
    /// never written (skipped a block at a time), explicitly elsewhere.
    fn install_grown(&mut self, ng: Geometry, ext: Option<Ext>) -> Result<(), Error> {
        let g = self.geo;
        let added = ng.meta_blocks.saturating_sub(g.meta_blocks);
        let taken = ext.map_or(0, |e| e.len());
        self.geo = ng;
        self.work.data_free = self
            .work
            .data_free
            .saturating_add(ng.data_extents.saturating_sub(g.data_extents));
        self.work.meta_free = self
            .work
            .meta_free
            .saturating_add(added)
            .saturating_sub(taken);
        let Some(e) = ext else {
            return Ok(());
        };
        let gen = self.gen();
        for k in 0..e.idx() {
            let nr = e.base.saturating_add(k.saturating_mul(2));
            let i = self.cache.claim(&mut self.dev, nr, usize::MAX)?;
            blank_index(self.cache.buf_mut(i)?, nr, gen)?;
        }
        let mut nr = e.base;
        let end = e.base.saturating_add(taken);
        while nr < end {
            let j = nr / SM_ENTRIES;
            let blk_end = j.saturating_add(1).saturating_mul(SM_ENTRIES).min(end);
            let geo = self.geo;
            if !sm_index(&mut self.loader(), &geo, SmKind::Meta, j, false)?.1 {
                nr = blk_end;
                continue;
            }
            while nr < blk_end {
                if self.rc(SmKind::Meta, nr)? == 0 {
                    self.sm_set(SmKind::Meta, nr, 1)?;
                }
                nr = nr.saturating_add(1);
            }
        }
        Ok(())
    }
}
