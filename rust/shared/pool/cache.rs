//! Bounded block cache over a caller-provided arena of [`CacheSlot`]s.
//!
//! Slots `0..RESERVED` are pinned for the superblock images and the table of
//! pending sharing breaks; the rest cache metadata blocks, found through a
//! chained hash whose bucket heads live in the slots themselves (bucket `i`
//! is headed by slot `i`). Replacement is CLOCK; a dirty victim is written
//! back to its own location, which is always safe because only blocks owned
//! by the open transaction are ever dirty (see `Documentation/pool-format.rst`).

use super::block::{seal, verify};
use super::{Error, MetaDevice, BLOCK_SIZE};
use core::sync::atomic::{AtomicBool, Ordering};

/// Slot of the working (open transaction) superblock image.
pub(crate) const SLOT_WORK: usize = 0;
/// Slot of the last committed superblock image.
pub(crate) const SLOT_COM: usize = 1;
/// First of the slots holding the table of pending sharing breaks.
pub(crate) const SLOT_PENDING: usize = 2;
/// Slots of the pending-break table.
pub(crate) const PENDING_SLOTS: usize = 4;
/// Number of pinned slots.
pub(crate) const RESERVED: usize = SLOT_PENDING + PENDING_SLOTS;

const F_VALID: u8 = 1;
const F_DIRTY: u8 = 2;
const F_REF: u8 = 4;
/// On the dirty list (kept across eviction until the next write-back walk).
const F_LISTED: u8 = 8;

/// One cache slot: a 4 KiB block buffer plus bookkeeping.
///
/// The all-zero bit pattern is a valid empty slot, so the kernel may back
/// the arena with zeroed `vmalloc` memory; userspace uses
/// [`CacheSlot::new`] (e.g. `(0..n).map(|_| CacheSlot::new()).collect()`).
pub struct CacheSlot {
    data: [u8; BLOCK_SIZE],
    nr: u64,
    /// Next slot in this slot's hash chain, plus one (0: end).
    next: u32,
    /// First slot of hash bucket number "this slot's index", plus one.
    head: u32,
    /// Next slot on the dirty list, plus one.
    dnext: u32,
    flags: u8,
    /// Referenced by a reader ([`Cache::touch_shared`]): the only field
    /// written under the read side, atomically; CLOCK treats it like
    /// `F_REF`.
    seen: AtomicBool,
}

impl Clone for CacheSlot {
    fn clone(&self) -> Self {
        CacheSlot {
            data: self.data,
            nr: self.nr,
            next: self.next,
            head: self.head,
            dnext: self.dnext,
            flags: self.flags,
            seen: AtomicBool::new(self.seen.load(Ordering::Relaxed)),
        }
    }
}

impl CacheSlot {
    /// An empty slot.
    pub const fn new() -> Self {
        CacheSlot {
            data: [0; BLOCK_SIZE],
            nr: 0,
            next: 0,
            head: 0,
            dnext: 0,
            flags: 0,
            seen: AtomicBool::new(false),
        }
    }
}

impl Default for CacheSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// The block cache.
pub(crate) struct Cache<'a> {
    slots: &'a mut [CacheSlot],
    hand: usize,
    /// First slot of the dirty list, plus one: every dirty slot is on it.
    dirty_head: u32,
    /// Counters for statistics.
    pub(crate) reads: u64,
    pub(crate) writes: u64,
    /// Number of buffer modifications (tells whether an operation changed
    /// anything before it failed).
    pub(crate) mods: u64,
}

fn hash(nr: u64) -> u64 {
    nr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17
}

impl<'a> Cache<'a> {
    pub(crate) fn new(slots: &'a mut [CacheSlot]) -> Result<Self, Error> {
        if slots.len() < super::MIN_CACHE_SLOTS || slots.len() >= u32::MAX as usize {
            return Err(Error::Invalid);
        }
        for s in slots.iter_mut() {
            s.nr = 0;
            s.next = 0;
            s.head = 0;
            s.dnext = 0;
            s.flags = 0;
            *s.seen.get_mut() = false;
        }
        Ok(Cache {
            slots,
            hand: RESERVED,
            dirty_head: 0,
            reads: 0,
            writes: 0,
            mods: 0,
        })
    }

    /// Gives the arena back.
    pub(crate) fn into_slots(self) -> &'a mut [CacheSlot] {
        self.slots
    }

    fn bucket(&self, nr: u64) -> usize {
        let n = self.slots.len() as u64;
        hash(nr).checked_rem(n).unwrap_or(0) as usize
    }

    /// Finds the slot caching block `nr` without any I/O.
    pub(crate) fn find(&self, nr: u64) -> Option<usize> {
        let b = self.bucket(nr);
        let mut link = self.slots.get(b)?.head;
        let mut steps = 0usize;
        while link != 0 && steps < self.slots.len() {
            let idx = link.saturating_sub(1) as usize;
            let s = self.slots.get(idx)?;
            if s.flags & F_VALID != 0 && s.nr == nr {
                return Some(idx);
            }
            link = s.next;
            steps = steps.saturating_add(1);
        }
        None
    }

    fn unlink(&mut self, idx: usize) {
        let Some(s) = self.slots.get(idx) else { return };
        if s.flags & F_VALID == 0 {
            return;
        }
        let nr = s.nr;
        let next = s.next;
        let b = self.bucket(nr);
        let me = idx.saturating_add(1) as u32;
        let Some(bs) = self.slots.get(b) else { return };
        if bs.head == me {
            if let Some(bs) = self.slots.get_mut(b) {
                bs.head = next;
            }
        } else {
            let mut link = bs.head;
            let mut steps = 0usize;
            while link != 0 && steps < self.slots.len() {
                let cur = link.saturating_sub(1) as usize;
                let Some(cs) = self.slots.get_mut(cur) else {
                    break;
                };
                if cs.next == me {
                    cs.next = next;
                    break;
                }
                link = cs.next;
                steps = steps.saturating_add(1);
            }
        }
        if let Some(s) = self.slots.get_mut(idx) {
            s.flags &= F_LISTED;
            s.next = 0;
            *s.seen.get_mut() = false;
        }
    }

    fn link(&mut self, idx: usize, nr: u64) {
        let b = self.bucket(nr);
        let head = self.slots.get(b).map(|s| s.head).unwrap_or(0);
        if let Some(s) = self.slots.get_mut(idx) {
            s.nr = nr;
            s.next = head;
            // Inserted unreferenced: a block read once (a streaming
            // lookup) is the first to go; a second use references it.
            s.flags = F_VALID | (s.flags & F_LISTED);
        }
        if let Some(bs) = self.slots.get_mut(b) {
            bs.head = idx.saturating_add(1) as u32;
        }
    }

    fn write_slot<D: MetaDevice>(&mut self, dev: &mut D, idx: usize) -> Result<(), Error> {
        let s = self.slots.get_mut(idx).ok_or(Error::Invalid)?;
        if s.flags & F_VALID != 0 && s.flags & F_DIRTY != 0 {
            seal(&mut s.data);
            dev.write_block(s.nr, &s.data)?;
            s.flags &= !F_DIRTY;
            self.writes = self.writes.saturating_add(1);
        }
        Ok(())
    }

    /// Picks a slot to reuse (writing it back if dirty), never one of
    /// `protect` nor a pinned slot, and unlinks it.
    fn victim<D: MetaDevice>(&mut self, dev: &mut D, protect: [usize; 2]) -> Result<usize, Error> {
        let n = self.slots.len();
        let mut steps = 0usize;
        let limit = n.saturating_mul(3);
        while steps < limit {
            steps = steps.saturating_add(1);
            let idx = self.hand;
            self.hand = if idx.saturating_add(1) >= n {
                RESERVED
            } else {
                idx.saturating_add(1)
            };
            if idx < RESERVED || protect.contains(&idx) {
                continue;
            }
            let Some(s) = self.slots.get_mut(idx) else {
                continue;
            };
            if s.flags & F_VALID == 0 {
                return Ok(idx);
            }
            if s.flags & F_REF != 0 || *s.seen.get_mut() {
                s.flags &= !F_REF;
                *s.seen.get_mut() = false;
                continue;
            }
            self.write_slot(dev, idx)?;
            self.unlink(idx);
            return Ok(idx);
        }
        Err(Error::Busy)
    }

    /// Returns the slot holding block `nr`, reading (and verifying) it if
    /// needed, without evicting `protect`.
    pub(crate) fn get_protect<D: MetaDevice>(
        &mut self,
        dev: &mut D,
        nr: u64,
        protect: usize,
    ) -> Result<usize, Error> {
        if let Some(idx) = self.find(nr) {
            if let Some(s) = self.slots.get_mut(idx) {
                s.flags |= F_REF;
            }
            return Ok(idx);
        }
        let idx = self.victim(dev, [protect, usize::MAX])?;
        let s = self.slots.get_mut(idx).ok_or(Error::Invalid)?;
        s.flags &= F_LISTED;
        dev.read_block(nr, &mut s.data)?;
        self.reads = self.reads.saturating_add(1);
        verify(&s.data, nr)?;
        self.link(idx, nr);
        Ok(idx)
    }

    /// Returns the slot holding block `nr`, reading it if needed.
    pub(crate) fn get<D: MetaDevice>(&mut self, dev: &mut D, nr: u64) -> Result<usize, Error> {
        self.get_protect(dev, nr, usize::MAX)
    }

    /// Returns a dirty slot for block `nr` whose content the caller will
    /// overwrite completely (no read), never evicting `protect`.
    pub(crate) fn claim<D: MetaDevice>(
        &mut self,
        dev: &mut D,
        nr: u64,
        protect: usize,
    ) -> Result<usize, Error> {
        let idx = match self.find(nr) {
            Some(i) => i,
            None => {
                let i = self.victim(dev, [protect, usize::MAX])?;
                self.link(i, nr);
                i
            }
        };
        self.mark_dirty(idx);
        self.mods = self.mods.wrapping_add(1);
        Ok(idx)
    }

    fn mark_dirty(&mut self, idx: usize) {
        let head = self.dirty_head;
        let Some(s) = self.slots.get_mut(idx) else {
            return;
        };
        s.flags |= F_DIRTY | F_REF;
        if s.flags & F_LISTED == 0 {
            s.flags |= F_LISTED;
            s.dnext = head;
            self.dirty_head = idx.saturating_add(1) as u32;
        }
    }

    /// Marks slot `idx` recently used from the read side (`&self`): one
    /// relaxed atomic store, skipped when already set, so concurrent
    /// readers neither race nor keep bouncing the cache line.
    pub(crate) fn touch_shared(&self, idx: usize) {
        if let Some(s) = self.slots.get(idx) {
            if !s.seen.load(Ordering::Relaxed) {
                s.seen.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Read access to a slot's buffer.
    pub(crate) fn buf(&self, idx: usize) -> Result<&[u8; BLOCK_SIZE], Error> {
        self.slots.get(idx).map(|s| &s.data).ok_or(Error::Invalid)
    }

    /// Write access to a slot's buffer; marks a cached block dirty.
    pub(crate) fn buf_mut(&mut self, idx: usize) -> Result<&mut [u8; BLOCK_SIZE], Error> {
        self.mods = self.mods.wrapping_add(1);
        if idx >= RESERVED {
            self.mark_dirty(idx);
        }
        let s = self.slots.get_mut(idx).ok_or(Error::Invalid)?;
        Ok(&mut s.data)
    }

    /// Copies the buffer of slot `src` into slot `dst`.
    pub(crate) fn copy(&mut self, src: usize, dst: usize) -> Result<(), Error> {
        if src == dst {
            return Ok(());
        }
        let (lo, hi, fwd) = if src < dst {
            (src, dst, true)
        } else {
            (dst, src, false)
        };
        if hi >= self.slots.len() {
            return Err(Error::Invalid);
        }
        let (a, b) = self.slots.split_at_mut(hi);
        let l = a.get_mut(lo).ok_or(Error::Invalid)?;
        let h = b.get_mut(0).ok_or(Error::Invalid)?;
        if fwd {
            h.data = l.data;
        } else {
            l.data = h.data;
        }
        Ok(())
    }

    /// Writes every dirty block back (walks only the dirty list).
    pub(crate) fn write_back_all<D: MetaDevice>(&mut self, dev: &mut D) -> Result<(), Error> {
        let mut link = self.dirty_head;
        let mut steps = 0usize;
        while link != 0 && steps < self.slots.len() {
            steps = steps.saturating_add(1);
            let idx = link.saturating_sub(1) as usize;
            self.write_slot(dev, idx)?;
            let Some(s) = self.slots.get_mut(idx) else {
                break;
            };
            s.flags &= !F_LISTED;
            link = s.dnext;
            s.dnext = 0;
            self.dirty_head = link;
        }
        Ok(())
    }

    /// Number of dirty cached blocks.
    pub(crate) fn dirty_count(&self) -> usize {
        let mut link = self.dirty_head;
        let mut steps = 0usize;
        let mut n = 0usize;
        while link != 0 && steps < self.slots.len() {
            steps = steps.saturating_add(1);
            let Some(s) = self.slots.get(link.saturating_sub(1) as usize) else {
                break;
            };
            if s.flags & (F_VALID | F_DIRTY) == (F_VALID | F_DIRTY) {
                n = n.saturating_add(1);
            }
            link = s.dnext;
        }
        n
    }

    /// Drops every cached block (dirty ones are discarded, not written).
    pub(crate) fn invalidate(&mut self) {
        for s in self.slots.iter_mut() {
            s.head = 0;
            s.next = 0;
            s.dnext = 0;
        }
        self.dirty_head = 0;
        for s in self.slots.iter_mut().skip(RESERVED) {
            s.flags = 0;
        }
    }
}
