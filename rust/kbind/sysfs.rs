// SPDX-License-Identifier: GPL-2.0

//! A small safe abstraction over sysfs directories of `kobj_attribute` knobs.
//!
//! A [`Dir`] is a kobject under a parent (`/sys/kernel` or another [`Dir`])
//! with a group of attribute files. Each file is described by a static
//! [`Knob`]: a name, and Rust functions that format its value or parse a
//! write. Removing the directory (drop) waits for running `show`/`store`
//! calls to finish, so the functions never run after the `Dir` is gone.
//!
//! A [`CtxDir`] is the same with a context object shared by its files (for
//! a directory per object, such as one per pool): each file is a static
//! [`CtxKnob`] whose functions get a reference to the context, which the
//! directory keeps alive until its files are gone.

use crate::kbind::sys;
use core::fmt::Write;
use kernel::ffi::c_char;
use kernel::prelude::*;
use kernel::str::Formatter;
use kernel::sync::Arc;

/// One sysfs file: how to show it and, if writable, how to store into it.
pub(crate) struct Knob {
    /// File name.
    pub(crate) name: &'static CStr,
    /// Formats the current value (with a trailing newline).
    pub(crate) show: fn(&mut dyn Write) -> Result,
    /// Parses and applies a write. `None` for a read-only file. The input
    /// has its single trailing newline (if any) removed. On error nothing
    /// may have changed.
    pub(crate) store: Option<fn(&[u8]) -> Result>,
}

/// One file of a [`CtxDir`]: as [`Knob`], with the directory's context.
pub(crate) struct CtxKnob<T: 'static> {
    /// File name.
    pub(crate) name: &'static CStr,
    /// Formats the current value (with a trailing newline).
    pub(crate) show: fn(&T, &mut dyn Write) -> Result,
    /// Parses and applies a write, as [`Knob::store`].
    pub(crate) store: Option<fn(&T, &[u8]) -> Result>,
}

/// The C attribute and the knob it serves, laid out so that the C
/// `kobj_attribute` pointer that sysfs hands back is also a `Slot` pointer.
#[repr(C)]
struct Slot {
    attr: sys::kobj_attribute,
    knob: &'static Knob,
}

/// As [`Slot`], for a [`CtxDir`]: also points at the directory's context.
#[repr(C)]
struct CtxSlot<T: 'static> {
    attr: sys::kobj_attribute,
    knob: &'static CtxKnob<T>,
    ctx: *const T,
}

/// The type of the `show` trampolines.
type ShowFn = unsafe extern "C" fn(*mut sys::kobject, *mut sys::kobj_attribute, *mut c_char) -> isize;
/// The type of the `store` trampolines.
type StoreFn = unsafe extern "C" fn(*mut sys::kobject, *mut sys::kobj_attribute, *const c_char, usize) -> isize;

/// A slot type: a `#[repr(C)]` struct whose first field is the attribute.
trait HasAttr {
    fn attr_mut(&mut self) -> &mut sys::kobj_attribute;
}

impl HasAttr for Slot {
    fn attr_mut(&mut self) -> &mut sys::kobj_attribute {
        &mut self.attr
    }
}

impl<T> HasAttr for CtxSlot<T> {
    fn attr_mut(&mut self) -> &mut sys::kobj_attribute {
        &mut self.attr
    }
}

/// A kobject with a group of attribute files held in slots of type `S`.
///
/// # Invariants
///
/// `kobj` is a valid kobject that this `Files` holds one reference to;
/// once `registered`, `group` is registered on it and points into `slots`
/// and `ptrs`, which are never resized or moved while the group is
/// registered.
struct Files<S> {
    kobj: *mut sys::kobject,
    slots: KVec<S>,
    ptrs: KVec<*mut sys::attribute>,
    group: KBox<sys::attribute_group>,
    registered: bool,
}

/// A sysfs directory with a group of knob files.
pub(crate) struct Dir {
    files: Files<Slot>,
}

/// A sysfs directory whose files share a context object of type `T`.
pub(crate) struct CtxDir<T: 'static> {
    // Dropped first: removing the files waits for running calls, which
    // use the context.
    _files: Files<CtxSlot<T>>,
    _ctx: Arc<T>,
}

// SAFETY: `Files` only holds pointers to kernel objects that may be used
// and released from any thread (kobject refcounting and sysfs are
// thread-safe), to `'static` knobs, and (in a `CtxDir`) to a context that
// is `Send + Sync` (`CtxDir::new`'s bound).
unsafe impl<S> Send for Files<S> {}
// SAFETY: `Files` has no interior mutability reachable through `&Files`.
unsafe impl<S> Sync for Files<S> {}

/// An attribute named `name`, writable if `store` is some.
fn attribute(name: &'static CStr, show: ShowFn, store: Option<StoreFn>) -> sys::kobj_attribute {
    let mut attr = sys::kobj_attribute::default();
    attr.attr.name = name.as_char_ptr();
    attr.attr.mode = if store.is_some() { 0o644 } else { 0o444 };
    // SAFETY: `attr` is a local, exclusively borrowed attribute; the
    // helper only stores the two function pointers into it.
    unsafe { sys::snapguard_kobj_attr_set_ops(&mut attr, Some(show), store) };
    attr
}

/// Runs a knob's `show` into the `PAGE_SIZE` buffer `buf`.
///
/// # Safety
///
/// `buf` is a writable buffer of `PAGE_SIZE` bytes.
unsafe fn show_into(buf: *mut c_char, show: impl FnOnce(&mut dyn Write) -> Result) -> isize {
    // SAFETY: the caller passes a writable buffer of `PAGE_SIZE` bytes.
    let page = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), kernel::page::PAGE_SIZE) };
    let mut f = Formatter::new(page);
    match show(&mut f) {
        Ok(()) => f.bytes_written() as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Runs a knob's `store` on the `count` bytes at `buf`, without their
/// single trailing newline.
///
/// # Safety
///
/// `buf` holds `count` readable bytes.
unsafe fn store_from(buf: *const c_char, count: usize, store: impl FnOnce(&[u8]) -> Result) -> isize {
    // SAFETY: the caller passes `count` readable bytes at `buf`.
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    match store(input) {
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// sysfs `show` trampoline for every [`Slot`].
///
/// # Safety
///
/// Called by sysfs with `attr` pointing at the `attr` field of a live
/// [`Slot`] and `buf` a `PAGE_SIZE` buffer.
unsafe extern "C" fn show_tramp(
    _kobj: *mut sys::kobject,
    attr: *mut sys::kobj_attribute,
    buf: *mut c_char,
) -> isize {
    // SAFETY: `attr` is the first field of a `#[repr(C)]` `Slot` that lives
    // while the group is registered, which sysfs guarantees during `show`.
    let slot = unsafe { &*attr.cast::<Slot>() };
    // SAFETY: sysfs passes a writable buffer of `PAGE_SIZE` bytes.
    unsafe { show_into(buf, slot.knob.show) }
}

/// sysfs `store` trampoline for every [`Slot`].
///
/// # Safety
///
/// Called by sysfs with `attr` pointing at the `attr` field of a live
/// [`Slot`] and `buf` holding `count` readable bytes.
unsafe extern "C" fn store_tramp(
    _kobj: *mut sys::kobject,
    attr: *mut sys::kobj_attribute,
    buf: *const c_char,
    count: usize,
) -> isize {
    // SAFETY: as in `show_tramp`.
    let slot = unsafe { &*attr.cast::<Slot>() };
    let Some(store) = slot.knob.store else {
        return EPERM.to_errno() as isize;
    };
    // SAFETY: sysfs passes `count` readable bytes at `buf`.
    unsafe { store_from(buf, count, store) }
}

/// sysfs `show` trampoline for every [`CtxSlot<T>`].
///
/// # Safety
///
/// Called by sysfs with `attr` pointing at the `attr` field of a live
/// [`CtxSlot<T>`] and `buf` a `PAGE_SIZE` buffer.
unsafe extern "C" fn ctx_show_tramp<T: 'static>(
    _kobj: *mut sys::kobject,
    attr: *mut sys::kobj_attribute,
    buf: *mut c_char,
) -> isize {
    // SAFETY: `attr` is the first field of a `#[repr(C)]` `CtxSlot<T>` that
    // lives while the group is registered, which sysfs guarantees during
    // `show`.
    let slot = unsafe { &*attr.cast::<CtxSlot<T>>() };
    // SAFETY: `ctx` points into the `Arc` the `CtxDir` holds until after
    // the group is removed (field order), so it is alive during `show`.
    let ctx = unsafe { &*slot.ctx };
    let show = slot.knob.show;
    // SAFETY: sysfs passes a writable buffer of `PAGE_SIZE` bytes.
    unsafe { show_into(buf, |w| show(ctx, w)) }
}

/// sysfs `store` trampoline for every [`CtxSlot<T>`].
///
/// # Safety
///
/// Called by sysfs with `attr` pointing at the `attr` field of a live
/// [`CtxSlot<T>`] and `buf` holding `count` readable bytes.
unsafe extern "C" fn ctx_store_tramp<T: 'static>(
    _kobj: *mut sys::kobject,
    attr: *mut sys::kobj_attribute,
    buf: *const c_char,
    count: usize,
) -> isize {
    // SAFETY: as in `ctx_show_tramp`.
    let slot = unsafe { &*attr.cast::<CtxSlot<T>>() };
    // SAFETY: as in `ctx_show_tramp`.
    let ctx = unsafe { &*slot.ctx };
    let Some(store) = slot.knob.store else {
        return EPERM.to_errno() as isize;
    };
    // SAFETY: sysfs passes `count` readable bytes at `buf`.
    unsafe { store_from(buf, count, |i| store(ctx, i)) }
}

impl<S: HasAttr> Files<S> {
    /// Creates directory `name` under `parent` (or `/sys/kernel` when
    /// `None`) with the `n` files made by `slot(i)`.
    fn new(
        name: &CStr,
        parent: Option<*mut sys::kobject>,
        n: usize,
        mut slot: impl FnMut(usize) -> Option<S>,
    ) -> Result<Self> {
        let parent_kobj = match parent {
            Some(p) => p,
            // SAFETY: the helper returns the `kernel_kobj` global, valid
            // for the lifetime of the kernel.
            None => unsafe { sys::snapguard_kernel_kobj() },
        };
        // SAFETY: `name` is NUL-terminated (the kobject keeps a copy);
        // `parent_kobj` is a valid kobject (the `kernel_kobj` global, or a
        // parent `Dir`'s, alive per its invariant).
        let kobj = unsafe { sys::kobject_create_and_add(name.as_char_ptr(), parent_kobj) };
        if kobj.is_null() {
            return Err(ENOMEM);
        }
        let mut dir = Files {
            kobj,
            slots: KVec::new(),
            ptrs: KVec::new(),
            group: KBox::new(sys::attribute_group::default(), GFP_KERNEL)?,
            registered: false,
        };
        // From here on, dropping `dir` releases the kobject (the group is
        // not registered yet: `Drop` checks `registered`).
        dir.slots.reserve(n, GFP_KERNEL)?;
        dir.ptrs.reserve(n + 1, GFP_KERNEL)?;
        for i in 0..n {
            dir.slots.push(slot(i).ok_or(EINVAL)?, GFP_KERNEL)?;
        }
        for s in dir.slots.iter_mut() {
            let a: *mut sys::attribute = &mut s.attr_mut().attr;
            // SAFETY: `a` points at a live, exclusively borrowed attribute.
            unsafe { sys::snapguard_sysfs_attr_init(a) };
            dir.ptrs.push(a, GFP_KERNEL)?;
        }
        dir.ptrs.push(core::ptr::null_mut(), GFP_KERNEL)?;
        dir.group.__bindgen_anon_2.attrs = dir.ptrs.as_mut_ptr();
        // SAFETY: `kobj` is valid (type invariant); the group and everything
        // it points to stay in place until `Drop` removes the group.
        let ret = unsafe { sys::sysfs_create_group(dir.kobj, &*dir.group) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        dir.registered = true;
        Ok(dir)
    }
}

impl Dir {
    /// Creates directory `name` under `parent` (or `/sys/kernel` when `None`)
    /// holding one file per knob.
    pub(crate) fn new(name: &'static CStr, parent: Option<&Dir>, knobs: &'static [Knob]) -> Result<Self> {
        let files = Files::new(name, parent.map(|p| p.files.kobj), knobs.len(), |i| {
            let knob = knobs.get(i)?;
            let store: Option<StoreFn> = if knob.store.is_some() { Some(store_tramp) } else { None };
            Some(Slot { attr: attribute(knob.name, show_tramp, store), knob })
        })?;
        Ok(Dir { files })
    }
}

impl<T: Send + Sync + 'static> CtxDir<T> {
    /// Creates directory `name` under `parent` holding one file per knob,
    /// each served with `ctx`.
    pub(crate) fn new(name: &CStr, parent: &Dir, knobs: &'static [CtxKnob<T>], ctx: Arc<T>) -> Result<Self> {
        let p: *const T = &*ctx;
        let files = Files::new(name, Some(parent.files.kobj), knobs.len(), |i| {
            let knob = knobs.get(i)?;
            let store: Option<StoreFn> = if knob.store.is_some() { Some(ctx_store_tramp::<T>) } else { None };
            Some(CtxSlot { attr: attribute(knob.name, ctx_show_tramp::<T>, store), knob, ctx: p })
        })?;
        Ok(CtxDir { _files: files, _ctx: ctx })
    }
}

impl<S> Drop for Files<S> {
    fn drop(&mut self) {
        if self.registered {
            // SAFETY: the group was registered on `kobj` in `new`. Removal
            // waits for in-flight `show`/`store` calls to finish.
            unsafe { sys::sysfs_remove_group(self.kobj, &*self.group) };
        }
        // SAFETY: we own one reference to `kobj` (type invariant).
        unsafe { sys::kobject_put(self.kobj) };
    }
}
