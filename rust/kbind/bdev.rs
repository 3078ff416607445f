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

impl BdevFile {
    /// Whether `bdev` is the block device this file has open.
    pub(crate) fn is(&self, bdev: *const sys::block_device) -> bool {
        core::ptr::eq(self.bdev, bdev)
    }
}

/// Why a mount source could not be pinned.
#[derive(Debug)]
pub(crate) enum PinError {
    /// The path does not name a usable block device node (the errno the
    /// file system's own `lookup_bdev` would fail with).
    Lookup(Error),
    /// No descriptor, no file table or no `/proc` to pin it with.
    Short(Error),
}

/// Length of `/proc/thread-self/fd/` followed by a descriptor number.
const PIN_PATH_LEN: usize = 40;

/// A mount source resolved once, held open (`O_PATH`) as a descriptor of
/// the current task, and named by the magic link `/proc/thread-self/fd/N`
/// to that descriptor: whatever then happens to the path the caller gave
/// (a symlink exchanged, a file replaced, a directory renamed), looking up
/// the pinned name finds the same device node.
///
/// # Invariants
///
/// `fd` is a descriptor this object installed in the current task's file
/// table for an `O_PATH` file of a block device node whose `i_rdev` is
/// `dev`; `path` holds its magic link's NUL-terminated name, `len` bytes
/// including the NUL. The object must be dropped by the task that made it.
pub(crate) struct PinnedSource {
    fd: u32,
    dev: DevT,
    path: [u8; PIN_PATH_LEN],
    len: usize,
}

impl PinnedSource {
    /// Resolves `source` as `lookup_bdev` does (following symlinks) and
    /// pins the device node it names.
    pub(crate) fn new(source: &CStr) -> core::result::Result<Self, PinError> {
        let flags = (sys::O_PATH | sys::O_CLOEXEC) as kernel::ffi::c_int;
        // SAFETY: `source` is NUL-terminated. An `O_PATH` open resolves the
        // path without opening the device.
        let file = unsafe { sys::filp_open(source.as_char_ptr(), flags, 0) };
        let file = from_err_ptr(file).map_err(PinError::Lookup)?;
        let mut dev: sys::dev_t = 0;
        // SAFETY: `file` is a valid file we own a reference to; `dev` is a
        // valid out pointer.
        let ret = unsafe { sys::snapguard_path_file_dev(file, &mut dev) };
        if ret != 0 {
            // SAFETY: drops our reference.
            unsafe { sys::snapguard_fput(file) };
            return Err(PinError::Lookup(Error::from_errno(ret)));
        }
        // SAFETY: plain query of the current task.
        if !unsafe { sys::snapguard_can_install_fd() } {
            // SAFETY: drops our reference.
            unsafe { sys::snapguard_fput(file) };
            return Err(PinError::Short(EPERM));
        }
        // SAFETY: the current task has a file table of its own (above).
        let fd = unsafe { sys::get_unused_fd_flags(sys::O_CLOEXEC) };
        let Ok(fd) = u32::try_from(fd) else {
            // SAFETY: drops our reference.
            unsafe { sys::snapguard_fput(file) };
            return Err(PinError::Short(Error::from_errno(fd)));
        };
        // SAFETY: `fd` was reserved above for this task; `fd_install` takes
        // over our reference to `file`.
        unsafe { sys::fd_install(fd, file) };
        let mut pin = PinnedSource { fd, dev, path: [0; PIN_PATH_LEN], len: 0 };
        pin.len = pin_path(&mut pin.path, fd);
        // The link must lead back to the node: it does not without a procfs
        // at /proc (or with a policy that forbids the magic link).
        match lookup(pin.as_cstr()) {
            Ok(d) if d == dev => Ok(pin),
            Ok(_) => Err(PinError::Short(EXDEV)),
            Err(e) => Err(PinError::Short(e)),
        }
    }

    /// The device number of the pinned node.
    pub(crate) fn dev(&self) -> DevT {
        self.dev
    }

    /// The pinned name, `/proc/thread-self/fd/N`.
    pub(crate) fn as_cstr(&self) -> &CStr {
        let bytes = self.path.get(..self.len).unwrap_or(b"\0");
        CStr::from_bytes_with_nul(bytes).unwrap_or(c"")
    }
}

impl Drop for PinnedSource {
    fn drop(&mut self) {
        // SAFETY: `fd` is the descriptor we installed in this task's table
        // (invariant). A thread of the same process that closed it and
        // opened another file at that number meanwhile loses that file:
        // the same as closing a descriptor it never owned.
        unsafe { sys::close_fd(self.fd) };
    }
}

/// Writes `/proc/thread-self/fd/<fd>` and a NUL into `buf`; returns the
/// length including the NUL.
fn pin_path(buf: &mut [u8; PIN_PATH_LEN], fd: u32) -> usize {
    const PREFIX: &[u8] = b"/proc/thread-self/fd/";
    let mut digits = [0u8; 10];
    let mut n = fd;
    let mut nd = 0;
    // Bounded: a u32 has at most 10 decimal digits.
    while nd < digits.len() {
        if let Some(d) = digits.get_mut(nd) {
            *d = b'0' + (n % 10) as u8;
        }
        nd += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = 0;
    for &b in Iterator::chain(PREFIX.iter(), digits.iter().take(nd).rev()) {
        if let Some(slot) = buf.get_mut(len) {
            *slot = b;
            len += 1;
        }
    }
    // PREFIX (21) + 10 digits + NUL fit in PIN_PATH_LEN (40).
    if let Some(slot) = buf.get_mut(len) {
        *slot = 0;
        len += 1;
    }
    len
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
