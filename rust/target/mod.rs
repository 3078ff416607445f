// SPDX-License-Identifier: GPL-2.0

//! The snapshot target pair: `snapguard-pool` (metadata device + data
//! device) and `snapguard` (one volume of a pool). See
//! `Documentation/snapshot-target.rst`.
//!
//! Table lines and messages are parsed by the shared `no_std` code
//! (`rust/shared/dmtarget/`); this module is only the kernel glue. The
//! pool opens or formats its metadata through the pool core
//! (`rust/shared/pool/`), answers status and runs messages; a volume binds
//! to its pool's shared state ([`pool::PoolCore`], found by the pool's
//! device number) and serves I/O through the pool's worker.

mod fail;
mod pool;
mod stats;
mod volume;

use crate::dmtarget::TableError;
use crate::kbind::dm::{CtrError, Registration};
use crate::kbind::text::Text;
use core::fmt::Write;
use kernel::prelude::*;
use kernel::sync::Arc;

/// Both target types, registered while this object lives.
pub(crate) struct Targets {
    // Dropped in declaration order: volumes depend on pools.
    _volume: Registration,
    _pool: Registration,
    /// `/sys/kernel/snapguard/pools/`; removed once no pool can exist.
    _pools_dir: stats::PoolsDir,
    /// Frees the global lists' buffers, last.
    _lists: Lists,
}

/// Owner of the buffers of [`POOL_DEVICES`] and [`LIVE_POOLS`]: statics
/// are never dropped, so an emptied list would keep its buffer after the
/// module is gone (kmemleak reported it after `target_unload.sh`).
struct Lists;

impl Drop for Lists {
    fn drop(&mut self) {
        // No pool is left (each holds a reference on the module) and the
        // targets are unregistered (dropped before this field): nothing
        // uses the lists any more.
        drop(core::mem::take(&mut *POOL_DEVICES.lock()));
        drop(core::mem::take(&mut *LIVE_POOLS.lock()));
    }
}

impl Targets {
    /// Registers `snapguard-pool` and `snapguard`, and creates the `pools`
    /// directory under the module's sysfs directory `top`.
    pub(crate) fn register(top: &crate::kbind::sysfs::Dir) -> Result<Self> {
        // SAFETY: called once, at module init, before the targets (the
        // lock's only users) are registered.
        unsafe { POOL_DEVICES.init() };
        // SAFETY: as above.
        unsafe { LIVE_POOLS.init() };
        let pools_dir = stats::PoolsDir::new(top)?;
        let pool = Registration::new::<pool::PoolTarget>()?;
        let volume = Registration::new::<volume::VolumeTarget>()?;
        Ok(Targets { _volume: volume, _pool: pool, _pools_dir: pools_dir, _lists: Lists })
    }
}

kernel::sync::global_lock! {
    // SAFETY: initialised in `Targets::register` before first use.
    unsafe(uninit) static POOL_DEVICES: Mutex<KVec<u32>> = KVec::new();
}

kernel::sync::global_lock! {
    // SAFETY: initialised in `Targets::register` before first use.
    unsafe(uninit) static LIVE_POOLS: Mutex<KVec<Arc<pool::PoolCore>>> = KVec::new();
}

/// Makes a constructed pool findable by its volumes.
fn publish(core: Arc<pool::PoolCore>) -> Result<(), CtrError> {
    LIVE_POOLS
        .lock()
        .push(core, GFP_KERNEL)
        .map_err(|_| CtrError::NOMEM)
}

/// Removes a pool being destroyed from the list.
fn unpublish(core: &Arc<pool::PoolCore>) {
    LIVE_POOLS.lock().retain(|c| !Arc::ptr_eq(c, core));
}

/// The live pool whose mapped device is `devt`.
fn find_pool(devt: u32) -> Option<Arc<pool::PoolCore>> {
    LIVE_POOLS.lock().iter().find(|c| c.md_devt() == devt).cloned()
}

/// The metadata and data devices of a live pool, claimed so that no other
/// pool instance opens them: two in-core copies of one pool's metadata
/// would overwrite each other's commits. A new table of a live pool's own
/// mapped device binds to it instead (a reload, `space.rs`). Released on
/// drop.
pub(crate) struct DeviceClaim {
    devs: [u32; 2],
}

impl DeviceClaim {
    /// Claims `devs`, or fails if a live pool uses any of them.
    pub(crate) fn take(devs: [u32; 2]) -> Result<Self, CtrError> {
        let mut list = POOL_DEVICES.lock();
        if devs.iter().any(|d| list.contains(d)) {
            return Err(CtrError { err: EBUSY, msg: c"Device already used by a live pool" });
        }
        list.reserve(devs.len(), GFP_KERNEL)
            .map_err(|_| CtrError::NOMEM)?;
        for d in devs {
            // Cannot fail: reserved above.
            let _ = list.push_within_capacity(d);
        }
        Ok(DeviceClaim { devs })
    }
}

impl Drop for DeviceClaim {
    fn drop(&mut self) {
        let devs = self.devs;
        POOL_DEVICES.lock().retain(|d| !devs.contains(d));
    }
}

/// Logs a refused table line in detail (device-mapper itself logs only the
/// short text) and returns the constructor error.
fn refuse(target: &str, args: &[&[u8]], e: TableError) -> CtrError {
    let mut t = Text::<256>::new();
    let _ = write!(t, "{}", e);
    if let Some(w) = e.arg().and_then(|i| args.get(i)) {
        let _ = write!(t, " ('{}')", core::str::from_utf8(w).unwrap_or("<not UTF-8>"));
    }
    pr_err!("{}: {}\n", target, t.as_str());
    CtrError::inval(e.message())
}

/// The kernel errno of a pool core error.
pub(crate) fn errno(e: crate::pool::Error) -> Error {
    Error::from_errno(-e.to_errno())
}
