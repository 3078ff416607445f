//! Copy-on-write updates of the reference-counted trees.
//!
//! A node may be changed in place only if the open transaction created it
//! (its header generation is the open one) and exactly one parent refers to
//! it. Otherwise it is shadowed: copied to a new block; if it was shared,
//! every child gains a reference (both copies now point to it) and the
//! original loses one; if it was not, the original is freed and the copy
//! inherits its references.

use super::block::{set_header, Header};
use super::geom::{Kind, SmKind, MAX_DEPTH};
use super::read::{entry, node, rec_encode, set_entry, VolRec};
use super::{Error, MetaDevice, Pool};

impl<D: MetaDevice> Pool<'_, D> {
    /// Loads node `ptr` (validated) and returns its slot.
    pub(crate) fn node_slot(&mut self, ptr: u64, kind: Kind, level: u8) -> Result<usize, Error> {
        let geo = self.geo;
        let gen = self.gen();
        node(&mut self.loader(), &geo, ptr, kind, level, gen)
    }

    /// Entry `idx` of node `ptr`.
    pub(crate) fn node_entry(
        &mut self,
        ptr: u64,
        kind: Kind,
        level: u8,
        idx: usize,
    ) -> Result<u64, Error> {
        let i = self.node_slot(ptr, kind, level)?;
        entry(self.cache.buf(i)?, kind, level, idx)
    }

    /// Sets entry `idx` of a writable node.
    pub(crate) fn node_set(
        &mut self,
        ptr: u64,
        kind: Kind,
        level: u8,
        idx: usize,
        v: u64,
    ) -> Result<(), Error> {
        let i = self.node_slot(ptr, kind, level)?;
        set_entry(self.cache.buf_mut(i)?, kind, level, idx, v)
    }

    /// Returns a writable version of node `ptr` (0: a new empty node).
    pub(crate) fn shadow(&mut self, ptr: u64, kind: Kind, level: u8) -> Result<u64, Error> {
        let gen = self.gen();
        if ptr == 0 {
            let nb = self.alloc(SmKind::Meta, true)?;
            let i = self.cache.claim(&mut self.dev, nb, usize::MAX)?;
            let b = self.cache.buf_mut(i)?;
            b.fill(0);
            set_header(
                b,
                Header {
                    tag: kind.tag(level),
                    level,
                    blocknr: nb,
                    gen,
                },
            )?;
            return Ok(nb);
        }
        let rc = self.rc(SmKind::Meta, ptr)?;
        let si = self.node_slot(ptr, kind, level)?;
        let h = super::block::header(self.cache.buf(si)?)?;
        if rc == 0 {
            return Err(Error::Corrupt);
        }
        if h.gen == gen && rc == 1 {
            return Ok(ptr);
        }
        if rc > 1 && kind == Kind::Dir {
            return Err(Error::Corrupt);
        }
        let nb = self.alloc(SmKind::Meta, true)?;
        let si = self.node_slot(ptr, kind, level)?;
        let di = self.cache.claim(&mut self.dev, nb, si)?;
        self.cache.copy(si, di)?;
        set_header(
            self.cache.buf_mut(di)?,
            Header {
                tag: kind.tag(level),
                level,
                blocknr: nb,
                gen,
            },
        )?;
        if rc > 1 {
            let n = kind.entries(level) as usize;
            for idx in 0..n {
                let v = self.node_entry(nb, kind, level, idx)?;
                if v == 0 {
                    continue;
                }
                if level == 0 {
                    self.inc(SmKind::Data, v.saturating_sub(1))?;
                } else {
                    self.inc(SmKind::Meta, v)?;
                }
            }
        }
        self.dec(SmKind::Meta, ptr)?;
        Ok(nb)
    }

    /// Shadows the path from `root` down to the node at `stop` that covers
    /// `key`; returns the new root and that node.
    pub(crate) fn path_mut(
        &mut self,
        root: u64,
        kind: Kind,
        depth: u8,
        key: u64,
        stop: u8,
    ) -> Result<(u64, u64), Error> {
        let top = depth.checked_sub(1).ok_or(Error::Invalid)?;
        if stop > top {
            return Err(Error::Invalid);
        }
        let new_root = self.shadow(root, kind, top)?;
        let mut cur = new_root;
        let mut level = top;
        while level > stop {
            let idx = kind.index(level, key)?;
            let child = self.node_entry(cur, kind, level, idx)?;
            let nc = self.shadow(child, kind, level.saturating_sub(1))?;
            if nc != child {
                self.node_set(cur, kind, level, idx, nc)?;
            }
            cur = nc;
            level = level.saturating_sub(1);
        }
        Ok((new_root, cur))
    }

    /// Walks the subtree under node `ptr` (at `level`) depth first: `f`
    /// sees each non-zero entry `v` of a visited node at level `l` and
    /// says whether to descend into it (a node at `l - 1`), go on, or
    /// stop the walk. The stack is bounded by the tree depth; each node is
    /// scanned once per visit.
    fn walk(
        &mut self,
        ptr: u64,
        kind: Kind,
        level: u8,
        mut f: impl FnMut(&mut Self, u64, u8) -> Result<Walk, Error>,
    ) -> Result<(), Error> {
        let mut stack = [(0u64, 0u8, 0usize); MAX_DEPTH];
        let mut sp = 0usize;
        *stack.get_mut(sp).ok_or(Error::Corrupt)? = (ptr, level, 0);
        sp = sp.saturating_add(1);
        while sp > 0 {
            let (p, l, idx) = *stack.get(sp.saturating_sub(1)).ok_or(Error::Corrupt)?;
            if idx as u64 >= kind.entries(l) {
                sp = sp.saturating_sub(1);
                continue;
            }
            if let Some(top) = stack.get_mut(sp.saturating_sub(1)) {
                top.2 = idx.saturating_add(1);
            }
            let v = self.node_entry(p, kind, l, idx)?;
            if v == 0 {
                continue;
            }
            match f(self, v, l)? {
                Walk::Descend => {
                    *stack.get_mut(sp).ok_or(Error::Corrupt)? = (v, l.saturating_sub(1), 0);
                    sp = sp.saturating_add(1);
                }
                Walk::Next => {}
                Walk::Stop => break,
            }
        }
        Ok(())
    }

    /// Drops a reference to subtree `ptr` (a node at `level`), freeing
    /// every node and extent that only it referenced.
    pub(crate) fn dec_tree(&mut self, ptr: u64, kind: Kind, level: u8) -> Result<(), Error> {
        if ptr == 0 {
            return Ok(());
        }
        if self.dec(SmKind::Meta, ptr)? != 0 {
            return Ok(());
        }
        self.walk(ptr, kind, level, |p, v, l| {
            if l == 0 {
                match kind {
                    Kind::Vol => p.dec(SmKind::Data, v.saturating_sub(1)).map(|_| Walk::Next),
                    Kind::Dir => Err(Error::Invalid),
                }
            } else if p.dec(SmKind::Meta, v)? == 0 {
                Ok(Walk::Descend)
            } else {
                Ok(Walk::Next)
            }
        })
    }

    /// How many table nodes dropping a reference to subtree `ptr` (a node
    /// at `level`) would free, counted up to `limit + 1` (more is
    /// reported as `limit + 1`): the nodes only it references. A shared
    /// subtree costs 0 (one decrement frees nothing). Reads only internal
    /// nodes it counts (nodes [`Pool::dec_tree`] would read to free them),
    /// never a leaf and nothing below a shared node; at most `limit + 1`
    /// nodes, each scanned once.
    pub(crate) fn free_cost(
        &mut self,
        ptr: u64,
        kind: Kind,
        level: u8,
        limit: u64,
    ) -> Result<u64, Error> {
        if ptr == 0 {
            return Ok(0);
        }
        match self.rc(SmKind::Meta, ptr)? {
            0 => return Err(Error::Corrupt),
            1 => {}
            _ => return Ok(0),
        }
        let mut n = 1u64;
        if level == 0 || n > limit {
            return Ok(n);
        }
        self.walk(ptr, kind, level, |p, v, l| {
            match p.rc(SmKind::Meta, v)? {
                0 => return Err(Error::Corrupt),
                1 => {}
                _ => return Ok(Walk::Next),
            }
            n = n.saturating_add(1);
            if n > limit {
                Ok(Walk::Stop)
            } else if l > 1 {
                Ok(Walk::Descend)
            } else {
                Ok(Walk::Next)
            }
        })?;
        Ok(n)
    }

    /// Writes (or with `None`, clears) the directory record of volume `id`.
    pub(crate) fn rec_put(&mut self, id: u32, rec: Option<&VolRec>) -> Result<(), Error> {
        let depth = self.geo.dir_depth;
        let key = u64::from(id);
        let (root, leaf) = self.path_mut(self.work.dir_root, Kind::Dir, depth, key, 0)?;
        self.work.dir_root = root;
        let idx = Kind::Dir.index(0, key)?;
        let i = self.node_slot(leaf, Kind::Dir, 0)?;
        let empty = VolRec::default();
        rec_encode(self.cache.buf_mut(i)?, idx, rec.unwrap_or(&empty))
    }
}

/// What [`Pool::walk`] does after visiting an entry.
enum Walk {
    /// Visit the node the entry points to.
    Descend,
    /// Go on with the next entry.
    Next,
    /// End the walk.
    Stop,
}
