// SPDX-License-Identifier: GPL-2.0

//! A small safe abstraction over sysfs directories of `kobj_attribute` knobs.
//!
//! A [`Dir`] is a kobject under a parent (`/sys/kernel` or another [`Dir`])
//! with a group of attribute files. Each file is described by a static
//! [`Knob`]: a name, and Rust functions that format its value or parse a
//! write. Removing the directory (drop) waits for running `show`/`store`
//! calls to finish, so the functions never run after the `Dir` is gone.

use crate::kbind::sys;
use kernel::ffi::c_char;
use core::fmt::Write;
use kernel::prelude::*;
use kernel::str::Formatter;

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

/// The C attribute and the knob it serves, laid out so that the C
/// `kobj_attribute` pointer that sysfs hands back is also a `Slot` pointer.
#[repr(C)]
struct Slot {
    attr: sys::kobj_attribute,
    knob: &'static Knob,
}

/// A sysfs directory with a group of knob files.
///
/// # Invariants
///
/// `kobj` is a valid kobject that this `Dir` holds one reference to;
/// `group` is registered on it and points into `slots` and `ptrs`, which
/// are never resized or moved while the group is registered.
pub(crate) struct Dir {
    kobj: *mut sys::kobject,
    slots: KVec<Slot>,
    ptrs: KVec<*mut sys::attribute>,
    group: KBox<sys::attribute_group>,
    registered: bool,
}

// SAFETY: `Dir` only holds pointers to kernel objects that may be used and
// released from any thread (kobject refcounting and sysfs are thread-safe).
unsafe impl Send for Dir {}
// SAFETY: `Dir` has no interior mutability reachable through `&Dir`.
unsafe impl Sync for Dir {}

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
    let page = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), kernel::page::PAGE_SIZE) };
    let mut f = Formatter::new(page);
    match (slot.knob.show)(&mut f) {
        Ok(()) => f.bytes_written() as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// The type of [`store_tramp`].
type StoreFn = unsafe extern "C" fn(*mut sys::kobject, *mut sys::kobj_attribute, *const c_char, usize) -> isize;

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
    // SAFETY: sysfs passes `count` readable bytes at `buf`.
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    let Some(store) = slot.knob.store else {
        return EPERM.to_errno() as isize;
    };
    match store(input) {
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

impl Dir {
    /// Creates directory `name` under `parent` (or `/sys/kernel` when `None`)
    /// holding one file per knob.
    pub(crate) fn new(name: &'static CStr, parent: Option<&Dir>, knobs: &'static [Knob]) -> Result<Self> {
        let parent_kobj = match parent {
            Some(p) => p.kobj,
            // SAFETY: the helper returns the `kernel_kobj` global, valid
            // for the lifetime of the kernel.
            None => unsafe { sys::snapguard_kernel_kobj() },
        };
        // SAFETY: `name` is NUL-terminated; `parent_kobj` is a valid kobject
        // (the `kernel_kobj` global, or `parent`'s, alive per its invariant).
        let kobj = unsafe { sys::kobject_create_and_add(name.as_char_ptr(), parent_kobj) };
        if kobj.is_null() {
            return Err(ENOMEM);
        }
        let mut dir = Dir {
            kobj,
            slots: KVec::new(),
            ptrs: KVec::new(),
            group: KBox::new(sys::attribute_group::default(), GFP_KERNEL)?,
            registered: false,
        };
        // From here on, dropping `dir` releases the kobject (the group is
        // not registered yet: `Drop` checks `registered`).
        dir.slots.reserve(knobs.len(), GFP_KERNEL)?;
        dir.ptrs.reserve(knobs.len() + 1, GFP_KERNEL)?;
        for knob in knobs {
            let mut attr = sys::kobj_attribute::default();
            attr.attr.name = knob.name.as_char_ptr();
            attr.attr.mode = if knob.store.is_some() { 0o644 } else { 0o444 };
            let store: Option<StoreFn> = if knob.store.is_some() { Some(store_tramp) } else { None };
            // SAFETY: `attr` is a local, exclusively borrowed attribute; the
            // helper only stores the two function pointers into it.
            unsafe { sys::snapguard_kobj_attr_set_ops(&mut attr, Some(show_tramp), store) };
            dir.slots.push(Slot { attr, knob }, GFP_KERNEL)?;
        }
        for slot in dir.slots.iter_mut() {
            let a: *mut sys::attribute = &mut slot.attr.attr;
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

impl Drop for Dir {
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
