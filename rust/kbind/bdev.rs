// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers for the block-device calls the mount guard needs: open a
//! device read-only by number, read sectors, look at its identity and
//! write statistics, and walk all block devices.

use crate::kbind::sys;
use kernel::error::from_err_ptr;
use kernel::prelude::*;

/// `BLK_OPEN_READ` (a cast macro that bindgen cannot evaluate).
const BLK_OPEN_READ: sys::blk_mode_t = 1;

/// A `dev_t` as the kernel encodes it (major << 20 | minor).
pub(crate) type DevT = u32;

/// Splits a `dev_t` into (major, minor).
pub(crate) fn dev_parts(dev: DevT) -> (u32, u32) {
    (dev >> 20, dev & 0xfffff)
}

/// Builds a `dev_t` from (major, minor), or `None` if out of range.
pub(crate) fn mkdev(major: u32, minor: u32) -> Option<DevT> {
    if major >= (1 << 12) || minor >= (1 << 20) {
        return None;
    }
    Some((major << 20) | minor)
}

/// Resolves a path such as `/dev/sdb1` to a device number.
pub(crate) fn lookup(path: &CStr) -> Result<DevT> {
    let mut dev: sys::dev_t = 0;
    // SAFETY: `path` is NUL-terminated and `dev` is a valid out pointer.
    let ret = unsafe { sys::lookup_bdev(path.as_char_ptr(), &mut dev) };
    if ret != 0 {
        return Err(Error::from_errno(ret));
    }
    Ok(dev)
}

/// A block device opened read-only (no exclusive holder).
///
/// # Invariants
///
/// `file` is a block device file returned by `bdev_file_open_by_dev` that
/// this object owns one reference to, and `bdev` is its block device.
pub(crate) struct BdevFile {
    file: *mut sys::file,
    bdev: *mut sys::block_device,
}

impl BdevFile {
    /// Opens device `dev` for reading.
    pub(crate) fn open_read(dev: DevT) -> Result<Self> {
        // SAFETY: plain call; a null holder asks for a shared open.
        let file = unsafe {
            sys::bdev_file_open_by_dev(
                dev,
                BLK_OPEN_READ,
                core::ptr::null_mut(),
                core::ptr::null(),
            )
        };
        let file = from_err_ptr(file)?;
        // SAFETY: `file` is a valid block device file that only we use
        // yet. No readahead: the detector reads a few scattered blocks and
        // needs no more I/O than that.
        let bdev = unsafe {
            sys::snapguard_file_no_readahead(file);
            sys::snapguard_file_bdev(file)
        };
        Ok(BdevFile { file, bdev })
    }

    /// Size of the device in bytes.
    pub(crate) fn size(&self) -> u64 {
        // SAFETY: `bdev` is valid while the file is open (invariant).
        unsafe { sys::snapguard_bdev_nr_bytes(self.bdev) }
    }

    /// Reads `buf.len()` bytes at byte `offset` through the device's page
    /// cache: what a file system mounting it next would read, and reads
    /// that warm the cache for that file system.
    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result {
        let mut pos = i64::try_from(offset).map_err(|_| EINVAL)?;
        let mut done = 0usize;
        // Bounded: each round reads at least one byte or stops.
        while done < buf.len() {
            let rest = buf.get_mut(done..).ok_or(EINVAL)?;
            // SAFETY: the file is open (invariant); `rest` is valid for
            // writes of `rest.len()` bytes; `pos` is a valid out pointer.
            let n = unsafe { sys::kernel_read(self.file, rest.as_mut_ptr().cast(), rest.len(), &mut pos) };
            match usize::try_from(n) {
                Ok(0) => return Err(EIO),
                Ok(n) => done += n,
                Err(_) => return Err(Error::from_errno(i32::try_from(n).unwrap_or(-5))),
            }
        }
        Ok(())
    }

    /// The identity of the device's contents as seen from this system.
    pub(crate) fn stamp(&self) -> Stamp {
        stamp_of(self.bdev)
    }

    /// Whether the device is in use as swap on this system.
    pub(crate) fn is_active_swap(&self) -> bool {
        // SAFETY: `bdev` is valid while the file is open (invariant).
        unsafe { sys::snapguard_bdev_is_swap(self.bdev) }
    }

    /// The kernel's name of the device (e.g. `sdb1`), into `buf`.
    pub(crate) fn name<'a>(&self, buf: &'a mut [u8; 32]) -> &'a str {
        bdev_name(self.bdev, buf)
    }

    /// Calls `f` for every other block device on the system (disks and
    /// partitions) with its number and content stamp. Stops early when `f`
    /// returns false. The walk is bounded by `max` devices.
    pub(crate) fn for_each_device(&self, max: usize, mut f: impl FnMut(DevT, Stamp) -> bool) -> Result {
        // SAFETY: `bdev` is valid (invariant); its class is the block class.
        let class = unsafe { sys::snapguard_bdev_class(self.bdev) };
        if class.is_null() {
            return Err(ENODEV);
        }
        // SAFETY: `class` is the registered block class.
        let iter = unsafe { sys::snapguard_class_iter_new(class) };
        if iter.is_null() {
            return Err(ENOMEM);
        }
        for _ in 0..max {
            // SAFETY: `iter` was initialised above and not freed yet.
            let dev = unsafe { sys::snapguard_class_iter_next(iter) };
            if dev.is_null() {
                break;
            }
            // SAFETY: the iterator holds a reference on `dev` until the
            // next call, so `dev` and its embedded block device are valid.
            let (devt, stamp) = unsafe {
                let bdev = sys::snapguard_dev_to_bdev(dev);
                (sys::snapguard_dev_devt(dev), stamp_of(bdev))
            };
            if !f(devt, stamp) {
                break;
            }
        }
        // SAFETY: `iter` came from `snapguard_class_iter_new`.
        unsafe { sys::snapguard_class_iter_free(iter) };
        Ok(())
    }
}

impl Drop for BdevFile {
    fn drop(&mut self) {
        // SAFETY: we own one reference to `file` (invariant).
        unsafe { sys::snapguard_fput(self.file) };
    }
}

/// What identifies a device's contents: if the stamp is unchanged since a
/// probe, the probe's answer still holds (nothing on this system wrote to
/// the device, and it is the same medium).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Stamp {
    /// Size in bytes (0: no medium, skipped).
    pub(crate) size: u64,
    /// The disk sequence number (changes with the medium or loop backing).
    pub(crate) diskseq: u64,
    /// Sectors and requests written or discarded through the device.
    pub(crate) writes: u64,
}

fn stamp_of(bdev: *mut sys::block_device) -> Stamp {
    // SAFETY: callers pass a block device they hold a reference to.
    unsafe {
        Stamp {
            size: sys::snapguard_bdev_nr_bytes(bdev),
            diskseq: sys::snapguard_bdev_diskseq(bdev),
            writes: sys::snapguard_bdev_write_stamp(bdev),
        }
    }
}

fn bdev_name(bdev: *mut sys::block_device, buf: &mut [u8; 32]) -> &str {
    // SAFETY: `bdev` is valid (callers hold it); `buf` has 32 bytes.
    let n = unsafe { sys::snapguard_bdev_name(bdev, buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).unwrap_or(0).min(buf.len() - 1);
    core::str::from_utf8(buf.get(..n).unwrap_or(&[])).unwrap_or("?")
}

// ------------------------------------------------ block-layer read-only state

impl BdevFile {
    /// Whether the device is read-only at the block layer for any reason:
    /// its own flag (`BLKROSET`), its whole disk's, or the driver's.
    pub(crate) fn is_read_only(&self) -> bool {
        // SAFETY: `bdev` is valid while the file is open (invariant).
        unsafe { sys::snapguard_bdev_read_only(self.bdev) }
    }

    /// Whether the device's own read-only flag (the `BLKROSET` state) is set.
    pub(crate) fn ro_flag(&self) -> bool {
        // SAFETY: `bdev` is valid while the file is open (invariant).
        unsafe { sys::snapguard_bdev_ro_flag(self.bdev) }
    }

    /// Sets or clears the device's own read-only flag, as `BLKROSET` does
    /// (without the driver's `set_read_only` hook). While it is set, every
    /// write through the device node fails (`write(2)` with `EPERM`,
    /// read-write mounts with `EACCES`, discard and zero-out with `EPERM`).
    pub(crate) fn set_ro_flag(&self, ro: bool) {
        // SAFETY: `bdev` is valid while the file is open (invariant); the
        // flag is an atomic bit.
        unsafe { sys::snapguard_bdev_set_ro_flag(self.bdev, ro) }
    }
}

/// Calls `f` for every block device on the system (disks and partitions)
/// with its number and content stamp, without needing a device at hand
/// (as at module load). Stops early when `f` returns false; at most `max`
/// devices. `Err(ENODEV)` when the system has no block device yet.
pub(crate) fn for_each_block_device(max: usize, mut f: impl FnMut(DevT, Stamp) -> bool) -> Result {
    // SAFETY: plain call; the result is the block class (static) or null.
    let class = unsafe { sys::snapguard_block_class() };
    if class.is_null() {
        return Err(ENODEV);
    }
    // SAFETY: `class` is the registered block class.
    let iter = unsafe { sys::snapguard_class_iter_new(class) };
    if iter.is_null() {
        return Err(ENOMEM);
    }
    for _ in 0..max {
        // SAFETY: `iter` was initialised above and not freed yet.
        let dev = unsafe { sys::snapguard_class_iter_next(iter) };
        if dev.is_null() {
            break;
        }
        // SAFETY: the iterator holds a reference on `dev` until the next
        // call, so `dev` and its embedded block device are valid.
        let (devt, stamp) = unsafe {
            let bdev = sys::snapguard_dev_to_bdev(dev);
            (sys::snapguard_dev_devt(dev), stamp_of(bdev))
        };
        if !f(devt, stamp) {
            break;
        }
    }
    // SAFETY: `iter` came from `snapguard_class_iter_new`.
    unsafe { sys::snapguard_class_iter_free(iter) };
    Ok(())
}

impl BdevFile {
    /// Whether someone holds the device exclusively: a mounted file
    /// system, swap, a device-mapper or md device on top, or an `O_EXCL`
    /// opener such as `fsck`. A hint: the holder can change right after.
    pub(crate) fn has_holder(&self) -> bool {
        // SAFETY: `bdev` is valid while the file is open (invariant).
        unsafe { sys::snapguard_bdev_has_holder(self.bdev) }
    }
}
