// SPDX-License-Identifier: GPL-2.0

//! A small safe abstraction over device-mapper target types.
//!
//! A target is a Rust type implementing [`Target`]; [`Registration::new`]
//! registers a `struct target_type` whose C callbacks (constructor,
//! destructor, `map`, `status`, `message`) dispatch to it. The constructor
//! gets the table arguments as byte strings and opens the devices it needs
//! through [`Ctr::get_device`]; the framework keeps those devices and puts
//! them only after the target object is dropped, so a target never sees a
//! device handle outlive its device.

use crate::kbind::sys;
use core::fmt;
use core::marker::PhantomData;
use core::pin::Pin;
use kernel::ffi::{c_char, c_int, c_uint, c_void};
use kernel::prelude::*;

/// Most table or message arguments a target accepts (the snapguard tables
/// need at most 10; a longer line is refused before any parsing).
pub(crate) const MAX_ARGS: usize = 32;
/// Most devices one target instance opens.
pub(crate) const MAX_DEVS: usize = 4;

/// `BLK_OPEN_READ` / `BLK_OPEN_WRITE` (cast macros bindgen cannot evaluate).
const BLK_OPEN_READ: sys::blk_mode_t = 1;
const BLK_OPEN_WRITE: sys::blk_mode_t = 2;

/// `target_type` feature flags.
pub(crate) mod features {
    use crate::kbind::sys;
    /// Only target in its table.
    pub(crate) const SINGLETON: u32 = sys::DM_TARGET_SINGLETON;
    /// The table is always opened read-write.
    pub(crate) const ALWAYS_WRITEABLE: u32 = sys::DM_TARGET_ALWAYS_WRITEABLE;
    /// The target type cannot be replaced by another in a table reload.
    pub(crate) const IMMUTABLE: u32 = sys::DM_TARGET_IMMUTABLE;
}

/// A constructor failure: an errno and the fixed text that device-mapper
/// logs as `<device>: <target>: <text> (<errno>)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CtrError {
    /// The errno returned to device-mapper.
    pub(crate) err: Error,
    /// A static string (device-mapper keeps the pointer, not a copy).
    pub(crate) msg: &'static CStr,
}

impl CtrError {
    /// `ENOMEM`: an allocation failed.
    pub(crate) const NOMEM: Self = CtrError { err: ENOMEM, msg: c"Cannot allocate memory" };

    /// `EINVAL` with `msg`.
    pub(crate) const fn inval(msg: &'static CStr) -> Self {
        CtrError { err: EINVAL, msg }
    }
}

/// What `map` did with a bio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapResult {
    /// The bio was remapped ([`Bio::remap`]); device-mapper submits it.
    Remapped,
    /// Fail the bio with an I/O error.
    Kill,
    /// The target took the bio ([`Bio::take`]) and will submit or end it.
    Submitted,
}

impl MapResult {
    fn to_c(self) -> c_int {
        let v = match self {
            MapResult::Remapped => sys::DM_MAPIO_REMAPPED,
            MapResult::Kill => sys::DM_MAPIO_KILL,
            MapResult::Submitted => sys::DM_MAPIO_SUBMITTED,
        };
        c_int::try_from(v).unwrap_or(-(EIO.to_errno()))
    }
}

/// Which status `dmsetup` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusType {
    /// `dmsetup status`.
    Info,
    /// `dmsetup table`: the table line, so that it can be loaded again.
    Table,
    /// The IMA measurement line.
    Ima,
}

/// A device opened by [`Ctr::get_device`]: an index into the instance's
/// device list plus its number and name. Plain data: using it never
/// touches the device itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dev {
    idx: usize,
    devt: u32,
}

impl Dev {
    /// The device number.
    pub(crate) fn devt(&self) -> u32 {
        self.devt
    }
}

/// The devices a target instance holds; put on drop, after the target.
///
/// # Invariants
///
/// `ti` is the `dm_target` these devices were got for, valid until this
/// object is dropped (it is dropped in the constructor on failure or in
/// the destructor). `devs[..n]` are devices got with `dm_get_device(ti)`
/// and not put yet.
pub(crate) struct Devices {
    ti: *mut sys::dm_target,
    devs: [*mut sys::dm_dev; MAX_DEVS],
    n: usize,
}

impl Devices {
    fn get(&self, d: Dev) -> Option<*mut sys::dm_dev> {
        self.devs.get(..self.n)?.get(d.idx).copied()
    }

    /// The name device-mapper shows for `d` (`major:minor`), as `dmsetup
    /// table` prints devices.
    pub(crate) fn name(&self, d: Dev) -> &str {
        let Some(dev) = self.get(d) else { return "?" };
        // SAFETY: `dev` is a device we hold (invariant); its `name` is a
        // NUL-terminated array that does not change while it is held.
        let bytes: &[u8; 16] = unsafe { &(*dev).name };
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        core::str::from_utf8(bytes.get(..len).unwrap_or(&[])).unwrap_or("?")
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        for &d in self.devs.get(..self.n).unwrap_or(&[]) {
            // SAFETY: `d` was got for `ti` and not put yet; `ti` is valid
            // (invariants).
            unsafe { sys::dm_put_device(self.ti, d) };
        }
    }
}

/// The constructor's view of its target: the table arguments and device
/// opening.
pub(crate) struct Ctr<'a> {
    ti: *mut sys::dm_target,
    words: &'a [&'a [u8]],
    cwords: &'a [&'a CStr],
    devs: Devices,
}

impl Ctr<'_> {
    /// The table arguments after the target name.
    pub(crate) fn args(&self) -> &[&[u8]] {
        self.words
    }

    /// Length of the target in sectors.
    pub(crate) fn len(&self) -> u64 {
        // SAFETY: `ti` is valid during the constructor.
        unsafe { (*self.ti).len }
    }

    /// Whether the table is being loaded read-write.
    pub(crate) fn table_writable(&self) -> bool {
        // SAFETY: `ti` and its table are valid during the constructor.
        let mode = unsafe { sys::dm_table_get_mode((*self.ti).table) };
        mode & BLK_OPEN_WRITE != 0
    }

    /// Opens the device named by argument `arg` (a path or `major:minor`)
    /// for reading, and writing if `write`; on failure returns `msg`.
    pub(crate) fn get_device(&mut self, arg: usize, write: bool, msg: &'static CStr) -> Result<Dev, CtrError> {
        let path = self.cwords.get(arg).ok_or(CtrError::inval(msg))?;
        if self.devs.n >= MAX_DEVS {
            return Err(CtrError::inval(c"Too many devices"));
        }
        let mode = if write { BLK_OPEN_READ | BLK_OPEN_WRITE } else { BLK_OPEN_READ };
        let mut dev: *mut sys::dm_dev = core::ptr::null_mut();
        // SAFETY: `ti` is valid during the constructor, `path` is
        // NUL-terminated and `dev` is a valid out pointer.
        let ret = unsafe { sys::dm_get_device(self.ti, path.as_char_ptr(), mode, &mut dev) };
        if ret != 0 || dev.is_null() {
            let err = if ret < 0 { Error::from_errno(ret) } else { ENODEV };
            return Err(CtrError { err, msg });
        }
        // SAFETY: `dev` was just got and holds its block device.
        let devt = unsafe { sys::snapguard_bdev_devt((*dev).bdev) };
        let idx = self.devs.n;
        if let Some(slot) = self.devs.devs.get_mut(idx) {
            *slot = dev;
            self.devs.n = idx + 1;
        }
        Ok(Dev { idx, devt })
    }

    /// Synchronous I/O on device `d`, for the target being constructed.
    pub(crate) fn block_io(&self, d: Dev) -> Option<BlockIo> {
        let dev = self.devs.get(d)?;
        // SAFETY: `dev` is a device this instance holds (invariant of
        // `Devices`), so its `bdev` is valid.
        let bdev = unsafe { (*dev).bdev };
        // INVARIANT: the device is held until the instance's devices are
        // put, which happens after the target (the only owner of the
        // returned object) is dropped.
        Some(BlockIo { bdev })
    }

    /// The device number of the mapped device this table belongs to.
    pub(crate) fn md_devt(&self) -> u32 {
        // SAFETY: `ti` and its table are valid during the constructor.
        unsafe { sys::snapguard_dm_target_md_devt(self.ti) }
    }

    /// Prepares the target for bios it takes ([`MapResult::Submitted`]):
    /// [`PER_BIO_BYTES`] of per-bio data, remapped I/O accounted at
    /// submission, one empty flush bio per flush, and bios split so that
    /// none crosses a multiple of `max_io` sectors (a power of two).
    pub(crate) fn set_deferred_io(&mut self, max_io: u64) -> Result<(), CtrError> {
        let per_bio = c_uint::try_from(PER_BIO_BYTES).unwrap_or(c_uint::MAX);
        // SAFETY: `ti` is valid during the constructor, which may set these.
        unsafe { sys::snapguard_dm_target_set_io(self.ti, per_bio) };
        // SAFETY: as above.
        let ret = unsafe { sys::dm_set_target_max_io_len(self.ti, max_io) };
        if ret != 0 {
            return Err(CtrError { err: Error::from_errno(ret), msg: c"Cannot set the I/O size" });
        }
        Ok(())
    }

    /// Accepts discards, split so that none crosses a multiple of the
    /// target's `max_io` ([`Ctr::set_deferred_io`]); the target's
    /// [`Target::io_hints`] must set the discard limits
    /// ([`Limits::set_discard`]).
    pub(crate) fn enable_discards(&mut self) {
        // SAFETY: `ti` is valid during the constructor, which may set these.
        unsafe { sys::snapguard_dm_target_enable_discards(self.ti) };
    }

    /// A handle to raise events on this target's table ([`TableEvents`]).
    pub(crate) fn table_events(&self) -> TableEvents {
        // SAFETY: `ti` is valid during the constructor.
        TableEvents { table: unsafe { (*self.ti).table } }
    }

    /// Asks device-mapper for `n` empty flush bios per flush.
    pub(crate) fn set_num_flush_bios(&mut self, n: u32) {
        // SAFETY: `ti` is valid during the constructor, which may set it.
        unsafe { (*self.ti).num_flush_bios = n };
    }
}

/// A buffer for [`BlockIo`]: `kmalloc` memory, which block I/O can map
/// (unlike `vmalloc` or stack memory).
pub(crate) struct IoBuf {
    buf: KVec<u8>,
}

impl IoBuf {
    /// A zeroed buffer of `len` bytes.
    pub(crate) fn new(len: usize) -> Result<Self> {
        Ok(IoBuf { buf: KVec::from_elem(0u8, len, GFP_KERNEL)? })
    }

    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes, to fill.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

/// Synchronous sector I/O on one of the devices a target instance holds
/// ([`Ctr::block_io`]). It may sleep: use it from the constructor,
/// destructor, status or message callbacks, never from `map`.
///
/// # Invariants
///
/// `bdev` is the block device of a `dm_dev` that the target instance
/// owning this object holds; the framework puts that device only after
/// the target, the only owner of this object, has been dropped.
pub(crate) struct BlockIo {
    bdev: *mut sys::block_device,
}

// SAFETY: block I/O on a held device may be issued from any thread.
unsafe impl Send for BlockIo {}
// SAFETY: every method only submits I/O; the block layer serialises
// nothing through this object.
unsafe impl Sync for BlockIo {}

impl BlockIo {
    /// Size of the device in 512-byte sectors.
    pub(crate) fn nr_sectors(&self) -> u64 {
        // SAFETY: `bdev` is valid (invariant).
        unsafe { sys::snapguard_bdev_nr_bytes(self.bdev) >> 9 }
    }

    fn rw(&self, sector: u64, buf: *mut u8, len: usize, op: sys::req_op) -> Result {
        let end = sector.checked_add((len as u64).div_ceil(512)).ok_or(EINVAL)?;
        if len % 512 != 0 || end > self.nr_sectors() {
            return Err(EINVAL);
        }
        // SAFETY: `bdev` is valid (invariant); `buf` points at `len` bytes
        // of `kmalloc` memory (an `IoBuf`) that the caller borrows for the
        // duration of this synchronous call.
        let ret = unsafe { sys::bdev_rw_virt(self.bdev, sector, buf.cast(), len, op) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes (a multiple of 512) at `sector`.
    pub(crate) fn read(&self, sector: u64, buf: &mut IoBuf) -> Result {
        let len = buf.buf.len();
        self.rw(sector, buf.buf.as_mut_ptr(), len, sys::req_op_REQ_OP_READ)
    }

    /// Writes `buf` (a multiple of 512 bytes) at `sector`.
    pub(crate) fn write(&self, sector: u64, buf: &mut IoBuf) -> Result {
        let len = buf.buf.len();
        self.rw(sector, buf.buf.as_mut_ptr(), len, sys::req_op_REQ_OP_WRITE)
    }

    /// Reads `len` bytes (a multiple of 512, at most the buffer) at `sector`.
    pub(crate) fn read_part(&self, sector: u64, buf: &mut IoBuf, len: usize) -> Result {
        if len > buf.buf.len() {
            return Err(EINVAL);
        }
        self.rw(sector, buf.buf.as_mut_ptr(), len, sys::req_op_REQ_OP_READ)
    }

    /// Writes the first `len` bytes of `buf` (a multiple of 512) at `sector`.
    pub(crate) fn write_part(&self, sector: u64, buf: &mut IoBuf, len: usize) -> Result {
        if len > buf.buf.len() {
            return Err(EINVAL);
        }
        self.rw(sector, buf.buf.as_mut_ptr(), len, sys::req_op_REQ_OP_WRITE)
    }

    /// Writes zeroes to `nr` sectors at `sector` and waits.
    pub(crate) fn zero_out(&self, sector: u64, nr: u64) -> Result {
        let end = sector.checked_add(nr).ok_or(EINVAL)?;
        if end > self.nr_sectors() {
            return Err(EINVAL);
        }
        // SAFETY: `bdev` is valid (invariant); the range is on the device.
        let ret = unsafe { sys::snapguard_zeroout(self.bdev, sector, nr) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// Discards `nr` sectors at `sector` and waits.
    pub(crate) fn discard(&self, sector: u64, nr: u64) -> Result {
        let end = sector.checked_add(nr).ok_or(EINVAL)?;
        if end > self.nr_sectors() {
            return Err(EINVAL);
        }
        // SAFETY: `bdev` is valid (invariant); the range is on the device.
        let ret = unsafe { sys::snapguard_discard(self.bdev, sector, nr) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// Makes every completed write durable.
    pub(crate) fn flush(&self) -> Result {
        // SAFETY: `bdev` is valid (invariant).
        let ret = unsafe { sys::blkdev_issue_flush(self.bdev) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }
}

/// A bio handed to [`Target::map`].
pub(crate) struct Bio<'a> {
    bio: *mut sys::bio,
    ti: *mut sys::dm_target,
    _p: PhantomData<&'a mut sys::bio>,
}

/// Bytes of per-bio data a target gets with [`Ctr::set_deferred_io`].
pub(crate) const PER_BIO_BYTES: usize = core::mem::size_of::<u64>();

/// What a bio asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BioKind {
    /// A read.
    Read,
    /// A write (possibly with `REQ_FUA`).
    Write,
    /// An empty `REQ_PREFLUSH` write: make completed writes durable.
    Flush,
    /// A discard.
    Discard,
    /// Anything else (discard, write zeroes, ...).
    Other,
}

/// Classifies `bio`.
///
/// # Safety
///
/// `bio` must be a valid bio.
unsafe fn bio_kind(bio: *mut sys::bio) -> BioKind {
    // SAFETY: `bio` is valid (caller).
    let (op, flush, sectors) =
        unsafe { (sys::snapguard_bio_op(bio), sys::snapguard_bio_is_flush(bio), sys::snapguard_bio_sectors(bio)) };
    if op == sys::req_op_REQ_OP_READ {
        BioKind::Read
    } else if op == sys::req_op_REQ_OP_WRITE {
        if flush && sectors == 0 {
            BioKind::Flush
        } else {
            BioKind::Write
        }
    } else if op == sys::req_op_REQ_OP_DISCARD {
        BioKind::Discard
    } else {
        BioKind::Other
    }
}

impl<'a> Bio<'a> {
    /// What the bio asks for.
    pub(crate) fn kind(&self) -> BioKind {
        // SAFETY: `bio` is valid during `map` / `end_io`.
        unsafe { bio_kind(self.bio) }
    }

    /// Whether it has `REQ_FUA`.
    pub(crate) fn is_fua(&self) -> bool {
        // SAFETY: `bio` is valid during `map` / `end_io`.
        unsafe { sys::snapguard_bio_is_fua(self.bio) }
    }

    /// The target's per-bio word ([`PER_BIO_BYTES`]); the target must have
    /// called [`Ctr::set_deferred_io`].
    pub(crate) fn per_bio(&self) -> u64 {
        // SAFETY: `bio` is a clone made by device-mapper for this target,
        // which asked for `PER_BIO_BYTES` of per-bio data (caller
        // contract above); the word is aligned (dm aligns the area).
        unsafe { *sys::dm_per_bio_data(self.bio, PER_BIO_BYTES).cast::<u64>() }
    }

    /// Sets the per-bio word.
    pub(crate) fn set_per_bio(&mut self, v: u64) {
        // SAFETY: as in `per_bio`.
        unsafe { *sys::dm_per_bio_data(self.bio, PER_BIO_BYTES).cast::<u64>() = v };
    }

    /// Takes ownership of the bio; `map` must then return
    /// [`MapResult::Submitted`], and the target submits or ends it.
    pub(crate) fn take(&mut self) -> OwnedBio {
        // INVARIANT: device-mapper hands the bio over once `map` returns
        // `DM_MAPIO_SUBMITTED`, which the caller does.
        OwnedBio { bio: self.bio, ti: self.ti }
    }
}

/// A bio a target took in `map` ([`Bio::take`]): it must be submitted
/// ([`OwnedBio::submit`]) or ended ([`OwnedBio::end`]), which consumes it.
///
/// # Invariants
///
/// `bio` is a device-mapper clone for target `ti`, owned by the target
/// (`map` returned `DM_MAPIO_SUBMITTED`), not ended nor submitted yet; dm
/// keeps `ti` alive until every such bio has ended.
pub(crate) struct OwnedBio {
    bio: *mut sys::bio,
    ti: *mut sys::dm_target,
}

// SAFETY: a bio may be submitted or ended from any thread.
unsafe impl Send for OwnedBio {}

impl OwnedBio {
    /// What the bio asks for.
    pub(crate) fn kind(&self) -> BioKind {
        // SAFETY: `bio` is valid (invariant).
        unsafe { bio_kind(self.bio) }
    }

    /// Whether it has `REQ_FUA`.
    pub(crate) fn is_fua(&self) -> bool {
        // SAFETY: `bio` is valid (invariant).
        unsafe { sys::snapguard_bio_is_fua(self.bio) }
    }

    /// Whether it carries `REQ_PREFLUSH` (with or without data).
    pub(crate) fn has_preflush(&self) -> bool {
        // SAFETY: `bio` is valid (invariant).
        unsafe { sys::snapguard_bio_is_flush(self.bio) }
    }

    /// Copies the bio's data from byte `skip` of it into the whole of
    /// `dst` (a write's payload, to merge it into a buffer); `EINVAL` if
    /// the range is not inside the bio or the bio carries no data.
    pub(crate) fn copy_data_to(&self, skip: usize, dst: &mut [u8]) -> Result {
        if self.kind() != BioKind::Write {
            return Err(EINVAL);
        }
        let total = usize::try_from(self.sectors()).map_err(|_| EINVAL)?.checked_mul(512).ok_or(EINVAL)?;
        let end = skip.checked_add(dst.len()).ok_or(EINVAL)?;
        if end > total {
            return Err(EINVAL);
        }
        let skip = u32::try_from(skip).map_err(|_| EINVAL)?;
        let len = u32::try_from(dst.len()).map_err(|_| EINVAL)?;
        // SAFETY: `bio` is an owned, valid write (invariant; checked
        // above) whose data covers `skip..skip + len` (checked above);
        // `dst` is valid for `len` bytes of writes and not aliased.
        unsafe { sys::snapguard_bio_copy_data(self.bio, dst.as_mut_ptr().cast(), skip, len) };
        Ok(())
    }

    /// First sector, relative to the start of the target.
    pub(crate) fn target_sector(&self) -> u64 {
        // SAFETY: `bio` and `ti` are valid (invariant).
        unsafe { sys::snapguard_dm_target_offset(self.ti, sys::snapguard_bio_sector(self.bio)) }
    }

    /// The per-bio word (see [`Bio::per_bio`]).
    pub(crate) fn per_bio(&self) -> u64 {
        // SAFETY: as in `Bio::per_bio`: the bio is this target's clone.
        unsafe { *sys::dm_per_bio_data(self.bio, PER_BIO_BYTES).cast::<u64>() }
    }

    /// Length in sectors.
    pub(crate) fn sectors(&self) -> u64 {
        // SAFETY: `bio` is valid (invariant).
        u64::from(unsafe { sys::snapguard_bio_sectors(self.bio) })
    }

    /// Sets the per-bio word (see [`Bio::per_bio`]).
    pub(crate) fn set_per_bio(&mut self, v: u64) {
        // SAFETY: as in `Bio::per_bio`: the bio is this target's clone.
        unsafe { *sys::dm_per_bio_data(self.bio, PER_BIO_BYTES).cast::<u64>() = v };
    }

    /// Sends the bio to `io`'s device at `sector`.
    pub(crate) fn submit(self, io: &BlockIo, sector: u64) {
        // SAFETY: `bio` is owned and valid (invariant); `io.bdev` is a held
        // device (invariant of `BlockIo`). Submitting hands it back to dm.
        unsafe {
            sys::snapguard_bio_set_dev(self.bio, io.bdev);
            sys::snapguard_bio_set_sector(self.bio, sector);
            sys::dm_submit_bio_remap(self.bio, core::ptr::null_mut());
        }
    }

    /// Ends the bio: success if `err` is `None`.
    pub(crate) fn end(self, err: Option<Error>) {
        let e = err.map_or(0, |e| e.to_errno());
        // SAFETY: `bio` is owned and valid (invariant); ending consumes it.
        unsafe { sys::snapguard_bio_endio(self.bio, e) };
    }

    /// Hands the bio back to device-mapper's core (`BLK_STS_DM_REQUEUE`),
    /// which holds it while the device is suspended with `--noflush` and
    /// maps it again after the resume (outside a noflush suspend, dm fails
    /// it with `EIO`: call this only between a noflush `presuspend` and
    /// `postsuspend`).
    pub(crate) fn requeue(self) {
        // SAFETY: `bio` is owned and valid (invariant); ending consumes it.
        unsafe { sys::snapguard_bio_requeue(self.bio) };
    }

    /// Fills the bio's pages with zeroes and ends it successfully.
    pub(crate) fn end_zeroed(self) {
        // SAFETY: `bio` is owned and valid (invariant); ending consumes it.
        unsafe { sys::snapguard_bio_zero_endio(self.bio) };
    }
}

/// A FIFO of taken bios, linked through their `bi_next` (as `bio_list`):
/// no allocation.
///
/// # Invariants
///
/// `head` .. `tail` are owned bios (as [`OwnedBio`]) linked by `bi_next`,
/// the last one's `bi_next` null; both null when empty.
pub(crate) struct BioList {
    head: *mut sys::bio,
    tail: *mut sys::bio,
    ti: *mut sys::dm_target,
}

// SAFETY: the list owns its bios, which may move between threads.
unsafe impl Send for BioList {}

impl BioList {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        BioList { head: core::ptr::null_mut(), tail: core::ptr::null_mut(), ti: core::ptr::null_mut() }
    }

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Appends `b`.
    pub(crate) fn push(&mut self, b: OwnedBio) {
        // SAFETY: `b.bio` is owned and valid; the tail (if any) is a bio of
        // this list (invariant).
        unsafe {
            sys::snapguard_bio_set_next(b.bio, core::ptr::null_mut());
            if self.tail.is_null() {
                self.head = b.bio;
            } else {
                sys::snapguard_bio_set_next(self.tail, b.bio);
            }
        }
        self.tail = b.bio;
        self.ti = b.ti;
    }

    /// Removes and returns the first bio.
    pub(crate) fn pop(&mut self) -> Option<OwnedBio> {
        if self.head.is_null() {
            return None;
        }
        let bio = self.head;
        // SAFETY: `bio` is a bio of this list (invariant).
        self.head = unsafe { sys::snapguard_bio_next(bio) };
        if self.head.is_null() {
            self.tail = core::ptr::null_mut();
        }
        // SAFETY: as above; unlinking it.
        unsafe { sys::snapguard_bio_set_next(bio, core::ptr::null_mut()) };
        // INVARIANT: every bio of the list is an owned bio of target `ti`
        // (one list serves one target).
        Some(OwnedBio { bio, ti: self.ti })
    }

    /// Moves the whole list out, leaving this one empty.
    pub(crate) fn take(&mut self) -> BioList {
        core::mem::replace(self, BioList::new())
    }

    /// Puts the bios of `front` (of the same target) before this list's.
    pub(crate) fn prepend(&mut self, mut front: BioList) {
        if front.is_empty() {
            return;
        }
        if !self.head.is_null() {
            // SAFETY: `front.tail` is the last bio of `front` (invariant,
            // non-empty); linking it to this list's first bio joins the
            // two lists of owned bios.
            unsafe { sys::snapguard_bio_set_next(front.tail, self.head) };
            front.tail = self.tail;
        }
        // INVARIANT: `front` now links every bio of both lists in order.
        self.head = front.head;
        self.tail = front.tail;
        self.ti = front.ti;
        front.head = core::ptr::null_mut();
        front.tail = core::ptr::null_mut();
    }
}

impl Drop for BioList {
    fn drop(&mut self) {
        // Never leak a bio: fail whatever is left.
        while let Some(b) = self.pop() {
            b.end(Some(EIO));
        }
    }
}

impl Bio<'_> {
    /// First sector, relative to the start of the target.
    pub(crate) fn target_sector(&self) -> u64 {
        // SAFETY: `bio` and `ti` are valid during `map`.
        unsafe { sys::snapguard_dm_target_offset(self.ti, sys::snapguard_bio_sector(self.bio)) }
    }

    /// Sends the bio to `io`'s device at `sector`; then return
    /// [`MapResult::Remapped`].
    pub(crate) fn remap_to(&mut self, io: &BlockIo, sector: u64) {
        // SAFETY: `bio` is valid during `map`; `io.bdev` is a held device
        // (invariant of `BlockIo`).
        unsafe {
            sys::snapguard_bio_set_dev(self.bio, io.bdev);
            sys::snapguard_bio_set_sector(self.bio, sector);
        }
    }

    /// Sends the bio to device `dev` at `sector`; then return
    /// [`MapResult::Remapped`].
    pub(crate) fn remap(&mut self, devs: &Devices, dev: Dev, sector: u64) -> Result {
        let d = devs.get(dev).ok_or(EINVAL)?;
        // SAFETY: `bio` is valid during `map`; `d` is a device the
        // instance holds (so its `bdev` is alive).
        unsafe {
            sys::snapguard_bio_set_dev(self.bio, (*d).bdev);
            sys::snapguard_bio_set_sector(self.bio, sector);
        }
        Ok(())
    }
}

/// A status or message result buffer: writes are cut at its end and it is
/// always NUL-terminated, as `DMEMIT` leaves it.
pub(crate) struct Emit<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Emit<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        if let Some(b) = buf.first_mut() {
            *b = 0;
        }
        Emit { buf, len: 0 }
    }

    /// Whether anything was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Write for Emit<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the NUL.
        let room = self.buf.len().saturating_sub(1).saturating_sub(self.len);
        let take = s.len().min(room);
        let end = self.len + take;
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..end), s.as_bytes().get(..take)) {
            dst.copy_from_slice(src);
            self.len = end;
        }
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = 0;
        }
        if take < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// A device-mapper target implemented in Rust.
pub(crate) trait Target: Send + Sync + Sized {
    /// Target type name (the word in table lines).
    const NAME: &'static CStr;
    /// Version shown by `dmsetup targets`.
    const VERSION: [u32; 3];
    /// `features` flags ([`features`]).
    const FEATURES: u32;

    /// Builds an instance from its table line. Devices opened with
    /// [`Ctr::get_device`] stay open until the instance is dropped.
    fn ctr(ctr: &mut Ctr<'_>) -> Result<Pin<KBox<Self>>, CtrError>;

    /// Maps one bio.
    fn map(&self, devs: &Devices, bio: &mut Bio<'_>) -> MapResult;

    /// Writes the status or table line.
    fn status(&self, devs: &Devices, kind: StatusType, out: &mut Emit<'_>);

    /// A bio the target mapped has ended (`end_io`); nothing by default.
    /// Runs in interrupt context: never sleeps, never takes a mutex.
    fn end_io(&self, _bio: &mut Bio<'_>) -> EndIo {
        EndIo::Done
    }

    /// The device whose queue limits this target's device stacks on
    /// (`iterate_devices`, over the target's length or the device's size,
    /// the smaller); none by default.
    fn limits_device(&self) -> Option<Dev> {
        None
    }

    /// Adjusts the device's queue limits (`io_hints`); nothing by default.
    fn io_hints(&self, _limits: &mut Limits<'_>) {}

    /// The device is about to be suspended (`presuspend`); `noflush`:
    /// a `--noflush` suspend, in which bios the target holds may be handed
    /// back to dm with [`OwnedBio::requeue`]. Nothing by default.
    fn presuspend(&self, _noflush: bool) {}

    /// The suspend announced by `presuspend` did not happen
    /// (`presuspend_undo`); nothing by default.
    fn presuspend_undo(&self) {}

    /// The device was suspended (`postsuspend`); nothing by default.
    fn postsuspend(&self) {}

    /// The table is about to be resumed (`preresume`): an error fails the
    /// resume. Nothing by default.
    fn preresume(&self) -> Result {
        Ok(())
    }

    /// Handles `dmsetup message`; refused by default.
    fn message(&self, _args: &[&[u8]], _out: &mut Emit<'_>) -> Result {
        Err(EINVAL)
    }
}

/// One constructed target: `ti->private`.
struct Instance<T: Target> {
    // Dropped in declaration order: the target first, then its devices.
    target: Pin<KBox<T>>,
    devs: Devices,
}

/// Collects up to [`MAX_ARGS`] C argument strings.
///
/// # Safety
///
/// `argv` must hold `argc` valid NUL-terminated strings that live for `'a`.
unsafe fn collect_args<'a>(
    argc: c_uint,
    argv: *mut *mut c_char,
    words: &mut [&'a [u8]; MAX_ARGS],
    cwords: &mut [&'a CStr; MAX_ARGS],
) -> Option<usize> {
    let n = usize::try_from(argc).ok().filter(|&n| n <= MAX_ARGS)?;
    for (i, (w, c)) in words.iter_mut().zip(cwords.iter_mut()).take(n).enumerate() {
        // SAFETY: `i < argc`, so `argv[i]` is a valid string (caller).
        let s = unsafe { CStr::from_char_ptr(*argv.add(i)) };
        *c = s;
        *w = s.to_bytes();
    }
    Some(n)
}

/// The `ctr` callback.
///
/// # Safety
///
/// Called by device-mapper with a valid `ti` and `argc` strings in `argv`.
unsafe extern "C" fn ctr_tramp<T: Target>(ti: *mut sys::dm_target, argc: c_uint, argv: *mut *mut c_char) -> c_int {
    let mut words: [&[u8]; MAX_ARGS] = [&[]; MAX_ARGS];
    let mut cwords: [&CStr; MAX_ARGS] = [c""; MAX_ARGS];
    // SAFETY: device-mapper passes `argc` strings that live during `ctr`.
    let n = unsafe { collect_args(argc, argv, &mut words, &mut cwords) };
    let r = match n {
        None => Err(CtrError::inval(c"Too many arguments")),
        Some(n) => {
            let mut ctr = Ctr {
                ti,
                words: words.get(..n).unwrap_or(&[]),
                cwords: cwords.get(..n).unwrap_or(&[]),
                devs: Devices { ti, devs: [core::ptr::null_mut(); MAX_DEVS], n: 0 },
            };
            T::ctr(&mut ctr).and_then(|target| {
                KBox::new(Instance { target, devs: ctr.devs }, GFP_KERNEL).map_err(|_| CtrError::NOMEM)
            })
        }
    };
    match r {
        Ok(inst) => {
            // SAFETY: `ti` is valid; `private` is ours until `dtr`.
            unsafe { (*ti).private = KBox::into_raw(inst).cast::<c_void>() };
            0
        }
        Err(e) => {
            // SAFETY: `ti` is valid; device-mapper only reads `error`, and
            // `msg` is static.
            unsafe { (*ti).error = e.msg.as_char_ptr().cast_mut() };
            e.err.to_errno()
        }
    }
}

/// The instance of a constructed target.
///
/// # Safety
///
/// `ti` must be a target whose constructor ([`ctr_tramp::<T>`]) succeeded
/// and whose destructor has not run.
unsafe fn instance<'a, T: Target>(ti: *mut sys::dm_target) -> &'a Instance<T> {
    // SAFETY: `private` is the `Instance<T>` the constructor stored (caller).
    unsafe { &*(*ti).private.cast::<Instance<T>>() }
}

/// The `dtr` callback.
///
/// # Safety
///
/// Called by device-mapper once for a target whose constructor succeeded.
unsafe extern "C" fn dtr_tramp<T: Target>(ti: *mut sys::dm_target) {
    // SAFETY: `private` holds the box from `ctr_tramp::<T>`; device-mapper
    // calls no other callback of this target after `dtr`.
    drop(unsafe { KBox::from_raw((*ti).private.cast::<Instance<T>>()) });
}

/// The `map` callback.
///
/// # Safety
///
/// Called by device-mapper for a constructed target with a valid bio.
unsafe extern "C" fn map_tramp<T: Target>(ti: *mut sys::dm_target, bio: *mut sys::bio) -> c_int {
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    let mut b = Bio { bio, ti, _p: PhantomData };
    inst.target.map(&inst.devs, &mut b).to_c()
}

/// The `end_io` callback.
///
/// # Safety
///
/// Called by device-mapper for a constructed target with a valid bio.
unsafe extern "C" fn end_io_tramp<T: Target>(
    ti: *mut sys::dm_target,
    bio: *mut sys::bio,
    _err: *mut sys::blk_status_t,
) -> c_int {
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    let mut b = Bio { bio, ti, _p: PhantomData };
    match inst.target.end_io(&mut b) {
        // DM_ENDIO_DONE: device-mapper completes the bio.
        EndIo::Done => 0,
        // DM_ENDIO_INCOMPLETE: the target ends it again later.
        EndIo::Incomplete => 1,
    }
}

/// The `iterate_devices` callback: reports [`Target::limits_device`].
///
/// # Safety
///
/// Called by device-mapper for a constructed target with a valid callout.
unsafe extern "C" fn iterate_devices_tramp<T: Target>(
    ti: *mut sys::dm_target,
    f: sys::iterate_devices_callout_fn,
    data: *mut c_void,
) -> c_int {
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    let (Some(f), Some(dev)) = (f, inst.target.limits_device().and_then(|d| inst.devs.get(d))) else {
        return 0;
    };
    // The area used on the device: the target's length, at most the
    // device's size (a volume may be longer than its pool device, as a
    // thin volume may be longer than its pool; dm would refuse the table).
    // SAFETY: `ti` is valid and `dev` is a device the target holds.
    let dev_len = unsafe { sys::snapguard_bdev_nr_bytes((*dev).bdev) >> 9 };
    // SAFETY: `ti` is valid.
    let len = unsafe { (*ti).len }.min(dev_len);
    if len == 0 {
        return 0;
    }
    // SAFETY: `ti` is valid, `dev` is a device the target holds, `data`
    // is device-mapper's own cookie for `f`.
    unsafe { f(ti, dev, 0, len, data) }
}

/// The `io_hints` callback.
///
/// # Safety
///
/// Called by device-mapper for a constructed target with valid limits.
unsafe extern "C" fn io_hints_tramp<T: Target>(ti: *mut sys::dm_target, limits: *mut sys::queue_limits) {
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    let mut l = Limits { l: limits, _p: PhantomData };
    inst.target.io_hints(&mut l);
}

/// The queue limits handed to [`Target::io_hints`].
pub(crate) struct Limits<'a> {
    l: *mut sys::queue_limits,
    _p: PhantomData<&'a mut sys::queue_limits>,
}

impl Limits<'_> {
    /// Discards of at most `sectors` sectors, `sectors` aligned.
    pub(crate) fn set_discard(&mut self, sectors: u32) {
        // SAFETY: `l` is valid and ours to change during `io_hints`.
        unsafe { sys::snapguard_limits_discard(self.l, sectors) };
    }
}

/// Gives the CPU to other runnable tasks if this one should yield
/// (`cond_resched`): for loops of bounded steps in process context, so
/// that a kernel without preemption runs the waiting worker in between.
pub(crate) fn cond_resched() {
    // SAFETY: called from process context (the callers: message handlers).
    unsafe { sys::snapguard_cond_resched() };
}

/// The `presuspend` callback.
///
/// # Safety
///
/// Called by device-mapper for a constructed target.
unsafe extern "C" fn presuspend_tramp<T: Target>(ti: *mut sys::dm_target) {
    // SAFETY: `ti` is a constructed target whose table is being suspended
    // (caller), so its table and mapped device are alive.
    let noflush = unsafe { sys::snapguard_dm_noflush_suspending(ti) };
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    inst.target.presuspend(noflush);
}

/// The `presuspend_undo` callback.
///
/// # Safety
///
/// Called by device-mapper for a constructed target.
unsafe extern "C" fn presuspend_undo_tramp<T: Target>(ti: *mut sys::dm_target) {
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    inst.target.presuspend_undo();
}

/// The `postsuspend` callback.
///
/// # Safety
///
/// Called by device-mapper for a constructed target.
unsafe extern "C" fn postsuspend_tramp<T: Target>(ti: *mut sys::dm_target) {
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    inst.target.postsuspend();
}

/// The `preresume` callback.
///
/// # Safety
///
/// Called by device-mapper for a constructed target.
unsafe extern "C" fn preresume_tramp<T: Target>(ti: *mut sys::dm_target) -> c_int {
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    match inst.target.preresume() {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// The `status` callback.
///
/// # Safety
///
/// Called by device-mapper for a constructed target with `result` holding
/// `maxlen` writable bytes.
unsafe extern "C" fn status_tramp<T: Target>(
    ti: *mut sys::dm_target,
    kind: sys::status_type_t,
    _flags: c_uint,
    result: *mut c_char,
    maxlen: c_uint,
) {
    if result.is_null() {
        return;
    }
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    let len = usize::try_from(maxlen).unwrap_or(0);
    // SAFETY: device-mapper passes `maxlen` writable bytes at `result`.
    let buf = unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), len) };
    let kind = match kind {
        sys::status_type_t_STATUSTYPE_INFO => StatusType::Info,
        sys::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
        _ => StatusType::Ima,
    };
    inst.target.status(&inst.devs, kind, &mut Emit::new(buf));
}

/// The `message` callback.
///
/// # Safety
///
/// Called by device-mapper for a constructed target with `argc` strings
/// in `argv` and `maxlen` writable bytes at `result`.
unsafe extern "C" fn message_tramp<T: Target>(
    ti: *mut sys::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
    result: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    // SAFETY: the target is constructed (caller).
    let inst = unsafe { instance::<T>(ti) };
    let mut words: [&[u8]; MAX_ARGS] = [&[]; MAX_ARGS];
    let mut cwords: [&CStr; MAX_ARGS] = [c""; MAX_ARGS];
    // SAFETY: device-mapper passes `argc` strings that live during the call.
    let Some(n) = (unsafe { collect_args(argc, argv, &mut words, &mut cwords) }) else {
        return EINVAL.to_errno();
    };
    let len = if result.is_null() { 0 } else { usize::try_from(maxlen).unwrap_or(0) };
    let mut empty = [0u8; 0];
    let buf = if len == 0 {
        &mut empty[..]
    } else {
        // SAFETY: device-mapper passes `maxlen` writable bytes at `result`.
        unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), len) }
    };
    let mut out = Emit::new(buf);
    match inst.target.message(words.get(..n).unwrap_or(&[]), &mut out) {
        // 1 tells device-mapper that `result` holds output.
        Ok(()) => c_int::from(!out.is_empty()),
        Err(e) => e.to_errno(),
    }
}

/// A registered target type; unregistered on drop.
///
/// # Invariants
///
/// `tt` is registered with device-mapper and is not moved (it is on the
/// heap) or freed until it is unregistered.
pub(crate) struct Registration {
    tt: KBox<sys::target_type>,
}

// SAFETY: the registration only holds the `target_type`, which
// device-mapper reads under its own lock; unregistering may happen from any
// thread.
unsafe impl Send for Registration {}
// SAFETY: `&Registration` gives no access to anything.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers target type `T`.
    pub(crate) fn new<T: Target + 'static>() -> Result<Self> {
        let mut tt = KBox::new(sys::target_type::default(), GFP_KERNEL)?;
        tt.features = u64::from(T::FEATURES);
        tt.name = T::NAME.as_char_ptr();
        // SAFETY: plain accessor of `THIS_MODULE`.
        tt.module = unsafe { sys::snapguard_this_module() };
        tt.version = T::VERSION;
        tt.ctr = Some(ctr_tramp::<T>);
        tt.dtr = Some(dtr_tramp::<T>);
        tt.map = Some(map_tramp::<T>);
        tt.status = Some(status_tramp::<T>);
        tt.message = Some(message_tramp::<T>);
        tt.end_io = Some(end_io_tramp::<T>);
        tt.presuspend = Some(presuspend_tramp::<T>);
        tt.presuspend_undo = Some(presuspend_undo_tramp::<T>);
        tt.postsuspend = Some(postsuspend_tramp::<T>);
        tt.preresume = Some(preresume_tramp::<T>);
        tt.io_hints = Some(io_hints_tramp::<T>);
        tt.iterate_devices = Some(iterate_devices_tramp::<T>);
        // SAFETY: `tt` is fully initialised, lives on the heap and stays
        // there until `drop` unregisters it.
        let ret = unsafe { sys::dm_register_target(&mut *tt) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(Registration { tt })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `tt` is registered (invariant). Tables using the type hold
        // a module reference, so none exists when the module unloads.
        unsafe { sys::dm_unregister_target(&mut *self.tt) };
    }
}

/// A workqueue of one target instance (`WQ_MEM_RECLAIM | WQ_UNBOUND`):
/// work on it can make progress under memory pressure, since bios wait on
/// it. Destroying it (drop) waits for every queued and running item.
///
/// # Invariants
///
/// `wq` is a workqueue from `alloc_workqueue`, destroyed only on drop.
pub(crate) struct OwnedQueue {
    wq: *mut c_void,
}

// SAFETY: workqueues may be used and destroyed from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: queueing work is thread-safe.
unsafe impl Sync for OwnedQueue {}

impl OwnedQueue {
    /// Allocates the queue.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: plain allocation.
        let wq = unsafe { sys::snapguard_alloc_wq() };
        if wq.is_null() {
            return Err(ENOMEM);
        }
        Ok(OwnedQueue { wq })
    }

    /// The queue, to enqueue work items on.
    pub(crate) fn get(&self) -> &kernel::workqueue::Queue {
        // SAFETY: `wq` is a live workqueue until `self` is dropped, which
        // outlives the returned borrow (invariant).
        unsafe { kernel::workqueue::Queue::from_raw(self.wq.cast()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: `wq` is live (invariant) and destroyed once, here; it
        // drains queued and running work first.
        unsafe { sys::snapguard_destroy_wq(self.wq) };
    }
}

/// What [`Target::end_io`] tells device-mapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndIo {
    /// The bio is complete: device-mapper completes the original.
    Done,
    /// The target keeps the bio (a [`HeldBio`]) and ends it again later
    /// ([`HeldBio::reclaim`], then [`OwnedBio::end`]).
    Incomplete,
}

impl Bio<'_> {
    /// In `end_io`: the bio's completion status (`None`: success).
    pub(crate) fn status(&self) -> Option<Error> {
        // SAFETY: `bio` is valid during `end_io`.
        let e = unsafe { sys::snapguard_bio_status(self.bio) };
        if e < 0 {
            Some(Error::from_errno(e))
        } else {
            None
        }
    }
}

/// A bio submitted with [`OwnedBio::submit_held`]: its target's `end_io`
/// must answer [`EndIo::Incomplete`] for it, after which the target owns
/// it again ([`HeldBio::reclaim`]) and must end it.
///
/// # Invariants
///
/// `bio` is a device-mapper clone for target `ti` that the target
/// submitted; dm keeps `ti` alive until the bio has ended for good.
pub(crate) struct HeldBio {
    bio: *mut sys::bio,
    ti: *mut sys::dm_target,
}

// SAFETY: only a pointer; the bio may be ended from any thread.
unsafe impl Send for HeldBio {}

impl OwnedBio {
    /// Sends the bio to `io`'s device at `sector` and keeps a handle on it
    /// (see [`HeldBio`]): the target's `end_io` must answer
    /// [`EndIo::Incomplete`] for it.
    pub(crate) fn submit_held(self, io: &BlockIo, sector: u64) -> HeldBio {
        let h = HeldBio { bio: self.bio, ti: self.ti };
        self.submit(io, sector);
        h
    }
}

impl HeldBio {
    /// The bio back, to be ended.
    ///
    /// # Safety
    ///
    /// The bio's `end_io` has run and answered [`EndIo::Incomplete`] (so
    /// the lower device is done with it and the target owns it again).
    pub(crate) unsafe fn reclaim(self) -> OwnedBio {
        // INVARIANT: owned by the target again (caller), not ended for
        // good; `ti` is alive until it is.
        OwnedBio { bio: self.bio, ti: self.ti }
    }
}

impl BioList {
    /// Appends every bio of `other` (of the same target), in order.
    pub(crate) fn append(&mut self, mut other: BioList) {
        other.prepend(self.take());
        *self = other;
    }
}

/// A handle on an [`OwnedQueue`] for contexts that cannot take the lock
/// guarding the queue's owner (a bio's `end_io`).
///
/// # Invariants
///
/// `wq` is the workqueue of an [`OwnedQueue`]; it is valid only while
/// that queue lives, which [`QueueHandle::get`]'s callers guarantee.
#[derive(Clone, Copy)]
pub(crate) struct QueueHandle {
    wq: *mut c_void,
}

// SAFETY: a pointer to a workqueue, usable from any thread while it lives.
unsafe impl Send for QueueHandle {}
// SAFETY: as above; queueing work is thread-safe.
unsafe impl Sync for QueueHandle {}

impl OwnedQueue {
    /// A handle on this queue (see [`QueueHandle`]).
    pub(crate) fn handle(&self) -> QueueHandle {
        QueueHandle { wq: self.wq }
    }
}

impl QueueHandle {
    /// The queue.
    ///
    /// # Safety
    ///
    /// The [`OwnedQueue`] this handle came from is alive and stays alive
    /// while the returned reference is used.
    pub(crate) unsafe fn get(&self) -> &kernel::workqueue::Queue {
        // SAFETY: `wq` is a live workqueue (caller).
        unsafe { kernel::workqueue::Queue::from_raw(self.wq.cast()) }
    }
}

/// The table of a constructed target, to raise device-mapper events on it
/// (`dm_table_event`: `dmsetup wait` and dmeventd wake up). Plain data: it
/// does not keep the table alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TableEvents {
    table: *mut sys::dm_table,
}

// SAFETY: raising an event is allowed from any thread (process context).
unsafe impl Send for TableEvents {}
// SAFETY: as above; the handle is immutable.
unsafe impl Sync for TableEvents {}

impl TableEvents {
    /// Raises an event on the table (it may sleep: process context only).
    ///
    /// # Safety
    ///
    /// The target whose [`Ctr::table_events`] made this handle must not
    /// have been destroyed yet (a table outlives its targets).
    pub(crate) unsafe fn raise(&self) {
        // SAFETY: the table is alive (caller).
        unsafe { sys::dm_table_event(self.table) };
    }
}
