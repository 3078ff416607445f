// SPDX-License-Identifier: GPL-2.0

//! Failure modes of a `snapguard-pool`: the mode the pool runs in, its
//! transitions and their log lines. See `Documentation/snapshot-target.rst`,
//! "Failure modes".
//!
//! * `rw`: normal operation.
//! * `ro` (the table's `read_only` feature, or the pool's `needs_check`
//!   superblock flag set at construction): the metadata is never
//!   changed. Reads are served; writes to mapped, unshared extents go to
//!   the data device (inline or through the worker), other writes fail
//!   with `EIO`; discards succeed without doing anything; flushes flush the
//!   data device; messages fail with `EROFS`.
//! * `fail`: entered once, for good (until the pool is removed and created
//!   again), when a metadata I/O error or corruption is met, a commit
//!   fails, or the pool core enters its failed state. The core has dropped
//!   the open transaction; reads are served from the last commit; every
//!   write, discard and flush fails with `EIO` (the inline path of `map`
//!   stops remapping writes, so no write reaches an extent whose mapping
//!   is not committed); no commit is attempted; messages fail with `EIO`.
//!   The status says `fail` and `needs_check`. The `needs_check` flag is
//!   also written to the metadata superblock (`Pool::set_needs_check`:
//!   the last commit's superblock again, with the flag), best effort:
//!   once when `fail` is entered (from the worker or a message, which may
//!   sleep; a `fail` noticed by the status is left to the worker), and,
//!   if that failed, again at suspend and when the pool is removed (the
//!   fault may be gone by then). Not with the `read_only` feature (the
//!   metadata device is open read-only) nor if the flag is set already.
//!   A pool whose superblock has the flag is constructed in `ro` and says
//!   `needs_check` until `snapguard pool check --clear-needs-check` found
//!   the metadata clean and cleared it.
//!
//! Data device errors never change the mode: the bio that met one ends
//! with it, as with dm-thin. A failed flush of the data device fails the
//! flushes waiting for that commit and leaves the transaction open (the
//! next commit retries); it is logged when it starts and when it stops.

use crate::dmtarget::{PoolMode, POOL_TARGET};
use crate::kbind::bdev;
use crate::kbind::text::Text;
use crate::pool::{self, Mapping};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use pool::{MetaDevice, Pool};
use kernel::prelude::*;

/// `rw`.
const RW: u8 = 0;
/// `ro` (table feature `read_only`).
const RO: u8 = 1;
/// `fail`.
const FAIL: u8 = 2;

/// The superblock's `needs_check` flag: no write needed.
const FLAG_IDLE: u8 = 0;
/// To be written (`fail` entered).
const FLAG_PENDING: u8 = 1;
/// Written once and failed: retried at suspend and removal.
const FLAG_RETRY: u8 = 2;

/// Which attempt at writing the `needs_check` flag
/// ([`PoolFail::persist_needs_check`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Right after `fail` was entered.
    First,
    /// At suspend: again if the first failed.
    Retry,
    /// When the pool is removed: the last chance.
    Last,
}

/// Why a pool enters `fail`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cause {
    /// A commit failed (metadata write or flush).
    Commit(pool::Error),
    /// Reading metadata failed or found it corrupt.
    Read(pool::Error),
    /// The pool core entered its failed state (an error in the middle of
    /// a change).
    Core,
}

/// A pool's mode, read lock-free by `map`.
///
/// # Invariants
///
/// `mode` is [`RW`], [`RO`] or [`FAIL`]; once [`FAIL`], it stays so.
/// `flag` is [`FLAG_IDLE`], [`FLAG_PENDING`] or [`FLAG_RETRY`], and only
/// [`FLAG_IDLE`] while the mode is not [`FAIL`].
pub(crate) struct PoolFail {
    mode: AtomicU8,
    /// Writing the `needs_check` flag to the superblock.
    flag: AtomicU8,
    /// The flag is set in the metadata superblock (at construction or
    /// written since).
    flag_on_disk: AtomicBool,
    /// The metadata device may be written (not the `read_only` feature).
    may_write: bool,
    /// A flush of the data device failed and none succeeded since.
    data_flush_failing: AtomicBool,
    /// Device number of the pool's mapped device (for log lines).
    devt: u32,
}

impl PoolFail {
    /// A pool in `rw`, or `ro` if the table asks for it or the
    /// metadata's `needs_check` flag is set.
    pub(crate) fn new(devt: u32, read_only: bool, needs_check: bool) -> Self {
        PoolFail {
            mode: AtomicU8::new(if read_only || needs_check { RO } else { RW }),
            flag: AtomicU8::new(FLAG_IDLE),
            flag_on_disk: AtomicBool::new(needs_check),
            may_write: !read_only,
            data_flush_failing: AtomicBool::new(false),
            devt,
        }
    }

    fn minor(&self) -> u32 {
        bdev::dev_parts(self.devt).1
    }

    fn major(&self) -> u32 {
        bdev::dev_parts(self.devt).0
    }

    /// Whether the pool is in `fail`.
    pub(crate) fn is_failed(&self) -> bool {
        self.mode.load(Ordering::Acquire) == FAIL
    }

    /// Whether `map` may remap writes to known unshared extents: not in
    /// `fail` (in `ro` every mapping is committed: nothing changes).
    pub(crate) fn inline_writes(&self) -> bool {
        !self.is_failed()
    }

    /// Enters `fail` (once; later calls do nothing) and logs why.
    pub(crate) fn enter(&self, cause: Cause) {
        if self.mode.swap(FAIL, Ordering::SeqCst) == FAIL {
            return;
        }
        if self.may_write && !self.flag_on_disk.load(Ordering::Acquire) {
            self.flag.store(FLAG_PENDING, Ordering::Release);
        }
        let (major, minor) = (self.major(), self.minor());
        let mut why = Text::<64>::new();
        if let Cause::Commit(e) | Cause::Read(e) = cause {
            let _ = write!(why, "{}", e);
        }
        match cause {
            Cause::Commit(_) => pr_err!(
                "{}: pool dm-{} ({}:{}): metadata commit failed ({}); switching to fail mode: the transaction is dropped, writes fail, needs_check\n",
                POOL_TARGET, minor, major, minor, why.as_str()
            ),
            Cause::Read(_) => pr_err!(
                "{}: pool dm-{} ({}:{}): metadata read failed ({}); switching to fail mode: the transaction is dropped, writes fail, needs_check\n",
                POOL_TARGET, minor, major, minor, why.as_str()
            ),
            Cause::Core => pr_err!(
                "{}: pool dm-{} ({}:{}): a metadata change failed half way (I/O error or corruption); switching to fail mode: the transaction is dropped, writes fail, needs_check\n",
                POOL_TARGET, minor, major, minor
            ),
        }
    }

    /// Whether the `needs_check` flag still has to be written (its first
    /// attempt).
    pub(crate) fn flag_pending(&self) -> bool {
        self.flag.load(Ordering::Acquire) == FLAG_PENDING
    }

    /// Writes the `needs_check` flag to the superblock of `p` (the pool's
    /// metadata, whose lock the caller holds; may sleep) if `fail` asked
    /// for it: the first attempt, or a retry of a failed one. Logs the
    /// outcome; an error leaves the flag in memory only.
    pub(crate) fn persist_needs_check<D: MetaDevice>(&self, p: &mut Pool<'_, D>, when: Attempt) {
        let state = self.flag.load(Ordering::Acquire);
        let go = match when {
            Attempt::First => state == FLAG_PENDING,
            Attempt::Retry | Attempt::Last => state != FLAG_IDLE,
        };
        if !go {
            return;
        }
        let minor = self.minor();
        match p.set_needs_check() {
            Ok(()) => {
                self.flag.store(FLAG_IDLE, Ordering::Release);
                self.flag_on_disk.store(true, Ordering::Release);
                pr_warn!(
                    "{}: pool dm-{}: needs_check recorded in the metadata superblock: the pool opens read-only until `snapguard pool check --clear-needs-check` finds the metadata clean\n",
                    POOL_TARGET,
                    minor
                );
            }
            Err(e) => {
                self.flag.store(FLAG_RETRY, Ordering::Release);
                let mut why = Text::<64>::new();
                let _ = write!(why, "{}", e);
                if when == Attempt::Last {
                    pr_err!(
                        "{}: pool dm-{}: needs_check could not be recorded in the metadata ({}): the pool will open read-write; run `snapguard pool check` on the metadata device before using it again\n",
                        POOL_TARGET,
                        minor,
                        why.as_str()
                    );
                } else if state == FLAG_PENDING {
                    pr_err!(
                        "{}: pool dm-{}: needs_check could not be recorded in the metadata ({}); kept in memory, retried at suspend and removal\n",
                        POOL_TARGET,
                        minor,
                        why.as_str()
                    );
                }
            }
        }
    }

    /// Enters `fail` if the pool core is in its failed state.
    pub(crate) fn core_state(&self, core_failed: bool) {
        if core_failed {
            self.enter(Cause::Core);
        }
    }

    /// A metadata lookup failed with `e`: an I/O error or corruption
    /// fails the pool; other errors are the request's.
    pub(crate) fn lookup_error(&self, e: pool::Error) {
        if matches!(e, pool::Error::Io | pool::Error::Corrupt) {
            self.enter(Cause::Read(e));
        }
    }

    /// Whether a write to an extent mapped as `m` may go on: always in
    /// `rw`; in `ro` only to a mapped, unshared extent (no metadata
    /// change); never in `fail`.
    pub(crate) fn check_write(&self, m: Mapping) -> Result<(), pool::Error> {
        match self.mode.load(Ordering::Acquire) {
            RW => Ok(()),
            RO if matches!(m, Mapping::Mapped { shared: false, .. }) => Ok(()),
            _ => Err(pool::Error::Io),
        }
    }

    /// Whether a discard may change the metadata: `Ok(true)` in `rw`,
    /// `Ok(false)` in `ro` (the discard succeeds and does nothing, as
    /// dm-thin's read-only mode), `EIO` in `fail`.
    pub(crate) fn check_discard(&self) -> Result<bool, pool::Error> {
        match self.mode.load(Ordering::Acquire) {
            RW => Ok(true),
            RO => Ok(false),
            _ => Err(pool::Error::Io),
        }
    }

    /// Whether a commit may run: `Ok(true)` in `rw`, `Ok(false)` in `ro`
    /// (nothing to commit), `EIO` in `fail` (nothing is attempted).
    pub(crate) fn check_commit(&self) -> Result<bool, pool::Error> {
        self.check_discard()
    }

    /// The result of a data device flush before a commit: logs when
    /// flushes start failing and when they work again.
    pub(crate) fn data_flush(&self, ok: bool) {
        let was = self.data_flush_failing.swap(!ok, Ordering::AcqRel);
        let minor = self.minor();
        if !ok && !was {
            pr_err!(
                "{}: pool dm-{}: flushing the data device failed; flushes fail and the metadata stays uncommitted until it works\n",
                POOL_TARGET,
                minor
            );
        } else if ok && was {
            pr_info!("{}: pool dm-{}: flushing the data device works again\n", POOL_TARGET, minor);
        }
    }

    /// Refuses a message unless the pool is `rw`: logs and returns the
    /// error (`EIO` in `fail`, `EROFS` in `ro`).
    pub(crate) fn refuse_message(&self, msg: &str) -> Option<Error> {
        match self.mode.load(Ordering::Acquire) {
            RW => None,
            RO => {
                if self.flag_on_disk.load(Ordering::Acquire) {
                    pr_warn!(
                        "{}: message '{}' refused: the pool is read-only (metadata needs_check flag set)\n",
                        POOL_TARGET,
                        msg
                    );
                } else {
                    pr_warn!("{}: message '{}' refused: the pool is read-only\n", POOL_TARGET, msg);
                }
                Some(EROFS)
            }
            _ => {
                pr_warn!(
                    "{}: message '{}' refused: pool dm-{} is in fail mode (needs_check); remove it, check the metadata and create it again\n",
                    POOL_TARGET,
                    msg,
                    self.minor()
                );
                Some(EIO)
            }
        }
    }

    /// The status word.
    pub(crate) fn status_mode(&self) -> PoolMode {
        match self.mode.load(Ordering::Acquire) {
            RW => PoolMode::ReadWrite,
            RO => PoolMode::ReadOnly,
            _ => PoolMode::Fail,
        }
    }

    /// Whether the status says `needs_check`: in `fail`, or the flag is
    /// set in the metadata superblock.
    pub(crate) fn needs_check(&self) -> bool {
        self.is_failed() || self.flag_on_disk.load(Ordering::Acquire)
    }

    /// Whether a failed commit should be logged by its caller: not in
    /// `fail` nor while data device flushes fail (both logged once
    /// already).
    pub(crate) fn log_commit_error(&self) -> bool {
        !self.is_failed() && !self.data_flush_failing.load(Ordering::Acquire)
    }
}
