//! Lock-free fast map for the dm map path: a direct-mapped table of known
//! *unshared* mappings `(volume uid, vext) -> pext`, in a caller-provided
//! arena of [`FastSlot`]s, readable without the pool's lock.
//!
//! Readers ([`FastMap::lookup`]) use a per-slot sequence counter (seqlock):
//! they never write and never wait; a torn or concurrent read is a miss.
//! The pool (the single writer, under its exclusive lock) inserts what its
//! lookups, provisions and completed breaks find unshared, and invalidates
//! entries *before* any change that could make them wrong: a range of a
//! volume (discard, copy destination and source, shrink) entry by entry
//! when short, and everything at once (an epoch bump) for long ranges,
//! snapshots, aborts and failures. Volumes are keyed by their uid, which is
//! never reused, so a deleted volume's entries can never hit.
//!
//! A hit tells the caller that the extent was mapped unshared to `pext` at
//! some moment during the read. The kernel must make sure that no write it
//! started through the fast path is still in flight when a change that
//! invalidated the entry takes effect for I/O (e.g. `synchronize_rcu()`
//! after the operation, before a snapshot is reported done or a commit
//! makes freed extents reusable); see `Documentation/pool-format.rst`.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// One fast-map entry. The all-zero bit pattern is an empty entry.
pub struct FastSlot {
    seq: AtomicU32,
    epoch: AtomicU32,
    uid: AtomicU64,
    vext: AtomicU64,
    /// Physical extent + 1 (0: empty).
    val: AtomicU64,
}

impl FastSlot {
    /// An empty entry.
    pub const fn new() -> Self {
        FastSlot {
            seq: AtomicU32::new(0),
            epoch: AtomicU32::new(0),
            uid: AtomicU64::new(0),
            vext: AtomicU64::new(0),
            val: AtomicU64::new(0),
        }
    }
}

impl Default for FastSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// Entries invalidated one by one at most; longer ranges bump the epoch.
const RANGE_LIMIT: u64 = 64;

/// A view of a fast-map arena; slot 0 holds the epoch.
#[derive(Clone, Copy)]
pub struct FastMap<'a> {
    slots: &'a [FastSlot],
}

impl<'a> FastMap<'a> {
    /// Uses `slots` (at least 2; zeroed memory is fine).
    pub fn new(slots: &'a [FastSlot]) -> Option<Self> {
        if slots.len() < 2 || slots.len() > u32::MAX as usize {
            return None;
        }
        Some(FastMap { slots })
    }

    fn epoch(&self) -> u32 {
        self.slots
            .first()
            .map(|s| s.epoch.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    fn slot(&self, uid: u64, vext: u64) -> Option<&FastSlot> {
        let h = uid.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
            ^ vext.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        let n = (self.slots.len() as u64).saturating_sub(1);
        let i = (h >> 7).checked_rem(n).unwrap_or(0).saturating_add(1);
        self.slots.get(i as usize)
    }

    /// The physical extent `vext` of volume `uid` is mapped to, if known
    /// unshared; `None` is a miss (ask the pool). Never blocks, never
    /// writes: safe from any context, concurrently with the writer.
    pub fn lookup(&self, uid: u64, vext: u64) -> Option<u64> {
        let s = self.slot(uid, vext)?;
        let epoch = self.epoch();
        let s1 = s.seq.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        let (e, u, k, v) = (
            s.epoch.load(Ordering::Relaxed),
            s.uid.load(Ordering::Relaxed),
            s.vext.load(Ordering::Relaxed),
            s.val.load(Ordering::Relaxed),
        );
        fence(Ordering::Acquire);
        if s.seq.load(Ordering::Relaxed) != s1 {
            return None;
        }
        if v == 0 || e != epoch || u != uid || k != vext || self.epoch() != epoch {
            return None;
        }
        Some(v.saturating_sub(1))
    }

    /// Writes entry `s` (writer only).
    fn write(s: &FastSlot, epoch: u32, uid: u64, vext: u64, val: u64) {
        let q = s.seq.load(Ordering::Relaxed);
        s.seq.store(q.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        s.epoch.store(epoch, Ordering::Relaxed);
        s.uid.store(uid, Ordering::Relaxed);
        s.vext.store(vext, Ordering::Relaxed);
        s.val.store(val, Ordering::Relaxed);
        s.seq.store(q.wrapping_add(2), Ordering::Release);
    }

    /// Records that `vext` of volume `uid` is mapped unshared to `pext`.
    pub(crate) fn insert(&self, uid: u64, vext: u64, pext: u64) {
        if let Some(s) = self.slot(uid, vext) {
            Self::write(s, self.epoch(), uid, vext, pext.saturating_add(1));
        }
    }

    /// Forgets `[start, end)` of volume `uid` (everything, for long ranges).
    pub(crate) fn invalidate(&self, uid: u64, start: u64, end: u64) {
        if end.saturating_sub(start) > RANGE_LIMIT {
            self.invalidate_all();
            return;
        }
        let mut k = start;
        while k < end {
            if let Some(s) = self.slot(uid, k) {
                if s.uid.load(Ordering::Relaxed) == uid && s.vext.load(Ordering::Relaxed) == k {
                    Self::write(s, 0, 0, 0, 0);
                }
            }
            k = k.saturating_add(1);
        }
    }

    /// Forgets everything (O(1): the epoch changes).
    pub(crate) fn invalidate_all(&self) {
        if let Some(h) = self.slots.first() {
            let e = h.epoch.load(Ordering::Relaxed);
            h.epoch.store(e.wrapping_add(1), Ordering::Release);
        }
    }
}
