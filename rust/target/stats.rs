// SPDX-License-Identifier: GPL-2.0

//! Per-pool figures and knobs in `/sys/kernel/snapguard/pools/<dm-N>/`
//! (see `Documentation/ABI/testing/sysfs-kernel-snapguard`).
//!
//! [`PoolStats`] is shared by the pool's I/O paths, which only add to its
//! counters (relaxed atomics: `map` never takes a lock for them), and by
//! the pool's sysfs directory ([`PoolDir`]), which reads them and holds
//! the `commit_interval_ms` knob. The directory lives as long as the pool
//! target; the `pools` directory above it as long as the targets are
//! registered ([`PoolsDir`]).

use crate::dmtarget::parse_u64;
use crate::kbind::bdev;
use crate::kbind::sysfs::{CtxDir, CtxKnob, Dir};
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::Arc;
use kernel::time::{Instant, Monotonic};

/// `commit_interval_ms` of a new pool (dm-thin commits every second too).
pub(crate) const DEFAULT_COMMIT_INTERVAL_MS: u32 = 1000;
/// Smallest accepted `commit_interval_ms`.
pub(crate) const MIN_COMMIT_INTERVAL_MS: u32 = 1;
/// Largest accepted `commit_interval_ms` (one minute).
pub(crate) const MAX_COMMIT_INTERVAL_MS: u32 = 60_000;

/// A pool's counters and its commit period.
pub(crate) struct PoolStats {
    /// `map` calls answered inline (remapped or zero-filled).
    inline: AtomicU64,
    /// `map` calls deferred to the worker.
    deferred: AtomicU64,
    /// Extents provisioned.
    provisions: AtomicU64,
    /// Sharing breaks (an extent copied to a new one).
    breaks: AtomicU64,
    /// Commits that wrote a transaction.
    commits: AtomicU64,
    /// Duration of the last commit (data flush + metadata), microseconds.
    last_commit_us: AtomicU64,
    /// Longest commit so far, microseconds.
    max_commit_us: AtomicU64,
    /// Period of the commit after a worker batch left changes.
    commit_interval_ms: AtomicU32,
}

impl PoolStats {
    /// Zeroed counters and the default commit period.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(
            PoolStats {
                inline: AtomicU64::new(0),
                deferred: AtomicU64::new(0),
                provisions: AtomicU64::new(0),
                breaks: AtomicU64::new(0),
                commits: AtomicU64::new(0),
                last_commit_us: AtomicU64::new(0),
                max_commit_us: AtomicU64::new(0),
                commit_interval_ms: AtomicU32::new(DEFAULT_COMMIT_INTERVAL_MS),
            },
            GFP_KERNEL,
        )?)
    }

    /// Counts a `map` call answered inline.
    pub(crate) fn inline(&self) {
        self.inline.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a `map` call deferred to the worker.
    pub(crate) fn deferred(&self) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a provisioned extent.
    pub(crate) fn provision(&self) {
        self.provisions.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a sharing break.
    pub(crate) fn sharing_break(&self) {
        self.breaks.fetch_add(1, Ordering::Relaxed);
    }

    /// The start of a commit, for [`PoolStats::commit_done`].
    pub(crate) fn commit_start() -> Instant<Monotonic> {
        Instant::now()
    }

    /// Counts a commit that started at `t0` and succeeded.
    pub(crate) fn commit_done(&self, t0: Instant<Monotonic>) {
        let us = u64::try_from(t0.elapsed().as_micros_ceil()).unwrap_or(0);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.last_commit_us.store(us, Ordering::Relaxed);
        self.max_commit_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The commit period in milliseconds.
    pub(crate) fn commit_interval_ms(&self) -> u32 {
        self.commit_interval_ms.load(Ordering::Relaxed)
    }
}

fn show_stats(s: &PoolStats, w: &mut dyn Write) -> Result {
    let r = (|| -> core::fmt::Result {
        writeln!(w, "map_inline {}", s.inline.load(Ordering::Relaxed))?;
        writeln!(w, "map_deferred {}", s.deferred.load(Ordering::Relaxed))?;
        writeln!(w, "provisions {}", s.provisions.load(Ordering::Relaxed))?;
        writeln!(w, "sharing_breaks {}", s.breaks.load(Ordering::Relaxed))?;
        writeln!(w, "commits {}", s.commits.load(Ordering::Relaxed))?;
        writeln!(w, "commit_last_us {}", s.last_commit_us.load(Ordering::Relaxed))?;
        writeln!(w, "commit_max_us {}", s.max_commit_us.load(Ordering::Relaxed))
    })();
    r.map_err(|_| EINVAL)
}

fn show_interval(s: &PoolStats, w: &mut dyn Write) -> Result {
    writeln!(w, "{}", s.commit_interval_ms()).map_err(|_| EINVAL)
}

/// A strict decimal in `MIN_COMMIT_INTERVAL_MS..=MAX_COMMIT_INTERVAL_MS`;
/// anything else is `EINVAL` and changes nothing.
fn store_interval(s: &PoolStats, input: &[u8]) -> Result {
    let v = parse_u64(input).map_err(|_| EINVAL)?;
    let v = u32::try_from(v).map_err(|_| EINVAL)?;
    if !(MIN_COMMIT_INTERVAL_MS..=MAX_COMMIT_INTERVAL_MS).contains(&v) {
        return Err(EINVAL);
    }
    s.commit_interval_ms.store(v, Ordering::Relaxed);
    Ok(())
}

static POOL_KNOBS: [CtxKnob<PoolStats>; 2] = [
    CtxKnob { name: c"stats", show: show_stats, store: None },
    CtxKnob { name: c"commit_interval_ms", show: show_interval, store: Some(store_interval) },
];

kernel::sync::global_lock! {
    // SAFETY: initialised in `PoolsDir::new` before first use.
    unsafe(uninit) static POOLS: Mutex<Option<Dir>> = None;
}

/// `/sys/kernel/snapguard/pools/`, while the targets are registered.
pub(crate) struct PoolsDir(());

impl PoolsDir {
    /// Creates the (empty) `pools` directory under `top`.
    pub(crate) fn new(top: &Dir) -> Result<Self> {
        // SAFETY: called once, at module init, before the pool target (the
        // lock's only other user) is registered.
        unsafe { POOLS.init() };
        let dir = Dir::new(c"pools", Some(top), &[])?;
        *POOLS.lock() = Some(dir);
        Ok(PoolsDir(()))
    }
}

impl Drop for PoolsDir {
    fn drop(&mut self) {
        // No pool is left: each holds a reference on the module.
        let dir = POOLS.lock().take();
        drop(dir);
    }
}

/// A pool's directory, `pools/dm-<minor of the pool device>`.
pub(crate) struct PoolDir {
    _dir: CtxDir<PoolStats>,
}

impl PoolDir {
    /// Creates the directory of the pool on mapped device `md_devt`.
    pub(crate) fn new(md_devt: u32, stats: Arc<PoolStats>) -> Result<Self> {
        let (_, minor) = bdev::dev_parts(md_devt);
        let name = CString::try_from_fmt(fmt!("dm-{}", minor))?;
        let pools = POOLS.lock();
        let parent = pools.as_ref().ok_or(ENOENT)?;
        let dir = CtxDir::new(&name, parent, &POOL_KNOBS, stats)?;
        Ok(PoolDir { _dir: dir })
    }
}
