// SPDX-License-Identifier: GPL-2.0

//! Hooks the mount path of the guarded file system types.
//!
//! For each guarded `file_system_type` we replace `init_fs_context` with
//! [`init_tramp`]. It calls the file system's own `init_fs_context` and then
//! points `fc->ops` at a copy of the file system's operations in which
//! `get_tree` (new mount), `reconfigure` (remount) and `dup`/`free` are ours.
//! Our `get_tree`/`reconfigure` ask [`super`] before the file system
//! sees the device, so a refused mount never reaches the driver (ntfs3 would
//! replay the Windows log at mount time).
//!
//! Lifetime rules (see `Documentation/mount-guard.rst`):
//! * every `fs_context` whose `ops` point at our tables holds a reference on
//!   this module (taken in `init`/`dup`, dropped in `free`), so `rmmod` is
//!   refused with EBUSY while a mount is being set up;
//! * file system modules loaded after us are hooked from a module notifier
//!   when they go live, and forgotten when they go away, together with the
//!   wrapped copies of their operation tables (a copy is keyed by the
//!   table's address, which a module loaded later may reuse);
//! * on unload we restore the original pointers, wait until no call is
//!   inside one of our trampolines, and then for an RCU-tasks grace period,
//!   so that no task can still be about to run or return into our code.
//!
//! A read-write mount's source is resolved once and pinned (see
//! [`PinnedSource`]): the device the guard checks is the device the file
//! system opens. Where a resource runs short (no table, no descriptor, no
//! `/proc`), the read-write mount is refused with `EROFS`, never let
//! through unchecked.

use crate::kbind::bdev::{PinError, PinnedSource};
use crate::kbind::sys;
use core::cell::UnsafeCell;
use kernel::ffi::{c_int, c_ulong, c_void};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use kernel::prelude::*;

/// `SB_RDONLY` (a `BIT()` macro that bindgen cannot evaluate).
pub(crate) const SB_RDONLY: u32 = 1;

/// Guarded file system types and the modules that register them.
pub(crate) const GUARDED: [(&CStr, &[u8]); 5] = [
    (c"ntfs3", b"ntfs3"),
    (c"ntfs", b"ntfs"),
    (c"vfat", b"vfat"),
    (c"msdos", b"msdos"),
    (c"exfat", b"exfat"),
];

type InitFn = unsafe extern "C" fn(*mut sys::fs_context) -> c_int;

/// One hooked file system type.
struct TypeHook {
    /// The hooked type, or null.
    fs_type: AtomicPtr<sys::file_system_type>,
    /// Its original `init_fs_context`, kept after unhooking for callers
    /// that had already loaded our pointer.
    orig_init: AtomicPtr<c_void>,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_HOOK: TypeHook = TypeHook {
    fs_type: AtomicPtr::new(ptr::null_mut()),
    orig_init: AtomicPtr::new(ptr::null_mut()),
};
static HOOKS: [TypeHook; GUARDED.len()] = [EMPTY_HOOK; GUARDED.len()];

/// A wrapped copy of one file system's `fs_context_operations`.
///
/// # Invariants
///
/// `table`, `orig` and `owner` are written only under [`HOOK_LOCK`] while
/// `ready` is false, which is when no `fs_context` points at `table`. A
/// ready slot is made free again only under [`HOOK_LOCK`], from the module
/// notifier, when the module that owns the file system type (`owner`) or
/// the table (`orig`) goes away: every `fs_context` using `table` holds a
/// reference on `owner` (and so on the module of `orig`, which `owner`
/// depends on or is), so none exists any more and none can be made.
/// `table` is the first field, so a pointer to it is a pointer to the slot.
#[repr(C)]
struct OpsSlot {
    table: UnsafeCell<sys::fs_context_operations>,
    orig: AtomicPtr<sys::fs_context_operations>,
    owner: AtomicPtr<sys::module>,
    ready: AtomicBool,
}

// SAFETY: `table` is only written under `HOOK_LOCK` while no context uses
// it, and read by trampolines of contexts that were given it after it was
// written (see the invariants).
unsafe impl Sync for OpsSlot {}

/// Slots: one per live table is needed (each guarded type installs one
/// table), and a slot is freed when its module goes, so 16 cannot run out
/// with the five guarded types; if they ever do, the mount is refused.
const MAX_TABLES: usize = 16;
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: OpsSlot = OpsSlot {
    // SAFETY: all-zero is a valid `fs_context_operations` (every member
    // is an `Option` of a function pointer: `None`).
    table: UnsafeCell::new(unsafe { core::mem::zeroed() }),
    orig: AtomicPtr::new(ptr::null_mut()),
    owner: AtomicPtr::new(ptr::null_mut()),
    ready: AtomicBool::new(false),
};
static SLOTS: [OpsSlot; MAX_TABLES] = [EMPTY_SLOT; MAX_TABLES];

/// Whether hooking a type that appears is worth a log line (not while the
/// load itself hooks types: module init logs them in one line).
static ANNOUNCE: AtomicBool = AtomicBool::new(false);

/// Calls currently running inside one of our trampolines.
static INFLIGHT: AtomicUsize = AtomicUsize::new(0);

kernel::sync::global_lock! {
    // SAFETY: initialised in `Hooks::install` before first use.
    unsafe(uninit) static HOOK_LOCK: Mutex<()> = ();
}

/// Counts a trampoline call in [`INFLIGHT`] for its whole duration.
struct InFlight;
impl InFlight {
    fn enter() -> Self {
        INFLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}
impl Drop for InFlight {
    fn drop(&mut self) {
        INFLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

fn this_module() -> *mut sys::module {
    // SAFETY: returns `THIS_MODULE`, valid while our code runs.
    unsafe { sys::snapguard_this_module() }
}

/// Finds or creates the wrapped table for `orig`, a table installed by a
/// file system type of module `owner` (null: built in).
fn slot_for(orig: *const sys::fs_context_operations, owner: *mut sys::module) -> Option<&'static OpsSlot> {
    let _g = HOOK_LOCK.lock();
    let same = |s: &OpsSlot| {
        s.ready.load(Ordering::Relaxed)
            && ptr::eq(s.orig.load(Ordering::Relaxed), orig)
            && ptr::eq(s.owner.load(Ordering::Relaxed), owner)
    };
    if let Some(slot) = SLOTS.iter().find(|s| same(s)) {
        return Some(slot);
    }
    let slot = SLOTS.iter().find(|s| !s.ready.load(Ordering::Relaxed))?;
    // SAFETY: `orig` is the live operations table the file system just
    // installed. The slot is not ready, so no context uses `table`, and we
    // hold `HOOK_LOCK` (invariant).
    unsafe {
        let o = &*orig;
        *slot.table.get() = sys::fs_context_operations {
            free: Some(free_tramp),
            dup: if o.dup.is_some() { Some(dup_tramp) } else { None },
            parse_param: o.parse_param,
            parse_monolithic: o.parse_monolithic,
            get_tree: Some(get_tree_tramp),
            reconfigure: Some(reconfigure_tramp),
        };
    }
    slot.orig.store(orig.cast_mut(), Ordering::Relaxed);
    slot.owner.store(owner, Ordering::Relaxed);
    slot.ready.store(true, Ordering::Relaxed);
    Some(slot)
}

/// Frees the slots of the tables of `module`, which is going away.
///
/// # Safety
///
/// `module` is a module in `MODULE_STATE_GOING` with no references left
/// (so no `fs_context` of its types exists), and `HOOK_LOCK` is held.
unsafe fn free_slots_of(module: *mut sys::module) -> usize {
    let mut freed = 0;
    for slot in SLOTS.iter() {
        if !slot.ready.load(Ordering::Relaxed) {
            continue;
        }
        let orig = slot.orig.load(Ordering::Relaxed);
        // SAFETY: `module` is valid for the notifier call (caller).
        let inside = unsafe { sys::snapguard_within_module(orig.cast::<c_void>(), module) };
        if inside || ptr::eq(slot.owner.load(Ordering::Relaxed), module) {
            slot.ready.store(false, Ordering::Relaxed);
            slot.orig.store(ptr::null_mut(), Ordering::Relaxed);
            slot.owner.store(ptr::null_mut(), Ordering::Relaxed);
            freed += 1;
        }
    }
    freed
}

/// The original operations behind a wrapped `fc->ops`.
///
/// # Safety
///
/// `fc` must be a live `fs_context` whose `ops` point at one of our tables.
unsafe fn orig_ops(fc: *mut sys::fs_context) -> &'static sys::fs_context_operations {
    // SAFETY: per the caller, `ops` is the `table` field (first, repr(C))
    // of a static `OpsSlot` in `SLOTS`, so the cast is valid. `orig` was
    // stored before the slot became ready and points at the file system's
    // static table, pinned by the `fs_context`'s reference on its module.
    unsafe {
        let slot = &*(*fc).ops.cast::<OpsSlot>();
        &*slot.orig.load(Ordering::Relaxed)
    }
}

/// Our `init_fs_context` for every hooked type.
///
/// # Safety
///
/// Called by the VFS with a live `fs_context` of a hooked type.
unsafe extern "C" fn init_tramp(fc: *mut sys::fs_context) -> c_int {
    let _in = InFlight::enter();
    // SAFETY: the VFS passes a live `fs_context` being initialised.
    let fs_type = unsafe { (*fc).fs_type };
    let Some(hook) = HOOKS.iter().find(|h| ptr::eq(h.fs_type.load(Ordering::Acquire), fs_type)) else {
        // Cannot happen: we are only installed in types listed in HOOKS,
        // and entries are cleared only when the type's module is gone.
        return EINVAL.to_errno();
    };
    let orig = hook.orig_init.load(Ordering::Acquire);
    if orig.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: `orig_init` holds the type's original `init_fs_context`,
    // stored from a value of type `InitFn`.
    let orig: InitFn = unsafe { core::mem::transmute::<*mut c_void, InitFn>(orig) };
    // SAFETY: plain call on our own module.
    let pinned = unsafe { sys::try_module_get(this_module()) };
    // SAFETY: forwarding the VFS call to the file system.
    let ret = unsafe { orig(fc) };
    if ret != 0 || !pinned {
        if pinned {
            // SAFETY: drops the reference taken above.
            unsafe { sys::module_put(this_module()) };
        }
        return ret;
    }
    // SAFETY: `fc` is live and the file system set `fc->ops`; `fs_type`
    // is its registered type.
    let (fs_ops, owner) = unsafe { ((*fc).ops, (*fs_type).owner) };
    match slot_for(fs_ops, owner) {
        // SAFETY: `fc` is live; our table stays valid while this module is
        // pinned, which it is until `free_tramp` runs for this context, and
        // stays in the slot while the context pins the file system module.
        Some(slot) => unsafe { (*fc).ops = slot.table.get() },
        None => {
            // Never let a mount through unguarded: this context cannot be
            // used at all. (Cannot happen with the guarded types: see
            // `MAX_TABLES`.) The VFS frees it through the file system's
            // own `free`, since `fc->ops` is still the file system's.
            pr_err!("out of operation tables ({} in use): refusing this mount\n", MAX_TABLES);
            // SAFETY: drops the reference taken above.
            unsafe { sys::module_put(this_module()) };
            return EROFS.to_errno();
        }
    }
    0
}

/// Our `dup`: the copy gets its own reference on this module.
///
/// # Safety
///
/// Called by the VFS with `fc` a fresh copy of `src`, whose ops are ours.
unsafe extern "C" fn dup_tramp(fc: *mut sys::fs_context, src: *mut sys::fs_context) -> c_int {
    let _in = InFlight::enter();
    // SAFETY: `fc` is a copy of `src`, whose ops are ours and which holds a
    // reference on this module, so taking another one cannot fail; the
    // copy's `free_tramp` will drop it.
    unsafe { sys::__module_get(this_module()) };
    // SAFETY: `fc->ops` is ours (copied from `src`).
    let ops = unsafe { orig_ops(fc) };
    match ops.dup {
        // SAFETY: forwarding the VFS call to the file system.
        Some(dup) => unsafe { dup(fc, src) },
        None => -(kernel::bindings::EOPNOTSUPP as c_int),
    }
}

/// Our `free`: forwards, then drops the context's module reference.
///
/// # Safety
///
/// Called by the VFS once per context whose ops are ours.
unsafe extern "C" fn free_tramp(fc: *mut sys::fs_context) {
    let _in = InFlight::enter();
    // SAFETY: `fc->ops` is ours (we are its `free`).
    let ops = unsafe { orig_ops(fc) };
    if let Some(free) = ops.free {
        // SAFETY: forwarding the VFS call to the file system.
        unsafe { free(fc) };
    }
    // SAFETY: drops the reference taken in `init_tramp`/`dup_tramp`. Our
    // code keeps running until `_in` drops; unload waits for that.
    unsafe { sys::module_put(this_module()) };
}

/// Our `get_tree`: asks the guard before a read-write mount.
///
/// The source is resolved once and pinned ([`PinnedSource`]); the guard
/// and the file system both look up the pinned name, so they get the same
/// device whatever happens to the caller's path meanwhile, and the file
/// system's `fill_super` never runs read-write on a device that was not
/// checked. `fc->source` names the pinned link only during the call.
///
/// # Safety
///
/// Called by the VFS with a live `fs_context` whose ops are ours.
unsafe extern "C" fn get_tree_tramp(fc: *mut sys::fs_context) -> c_int {
    let _in = InFlight::enter();
    // SAFETY: `fc->ops` is ours (we are its `get_tree`).
    let ops = unsafe { orig_ops(fc) };
    let Some(get_tree) = ops.get_tree else { return EINVAL.to_errno() };
    // SAFETY: `fc` is live for the call.
    let (flags, source, fs_type) = unsafe { ((*fc).sb_flags, (*fc).source, (*fc).fs_type) };
    if flags & SB_RDONLY != 0 || source.is_null() || !super::guarding() {
        // SAFETY: forwarding the VFS call to the file system.
        return unsafe { get_tree(fc) };
    }
    // SAFETY: `source` is a NUL-terminated string owned by `fc`, and
    // `fs_type->name` a static string of the file system.
    let (src, fs_name) = unsafe { (CStr::from_char_ptr(source), CStr::from_char_ptr((*fs_type).name)) };
    let pinned = match PinnedSource::new(src) {
        Ok(p) => p,
        // Every guarded type mounts a block device named by a path: the
        // file system's own lookup fails the same way (unless the path
        // changes in between, which is why this is not "not ours").
        Err(PinError::Lookup(e)) => return e.to_errno(),
        Err(PinError::Short(e)) => {
            pr_warn!(
                "cannot pin the source of a read-write {} mount ({:?}: no free descriptor, no procfs at /proc, or a kernel thread): refusing it\n",
                fs_name.to_str().unwrap_or("?"),
                e
            );
            return EROFS.to_errno();
        }
    };
    // SAFETY: `fc` is live; `pinned` outlives the use (restored below).
    unsafe { (*fc).source = pinned.as_cstr().as_char_ptr() };
    let ret = check_and_get_tree(fc, get_tree, &pinned, fs_name);
    // SAFETY: as above; the caller's string is back before anyone else
    // (e.g. the new mount's device name) reads it, and freed with `fc`.
    unsafe { (*fc).source = source };
    drop(pinned);
    ret
}

/// The check, then the file system's `get_tree` on the pinned source.
fn check_and_get_tree(
    fc: *mut sys::fs_context,
    get_tree: unsafe extern "C" fn(*mut sys::fs_context) -> c_int,
    pinned: &PinnedSource,
    fs_name: &CStr,
) -> c_int {
    // Holds the checked device open until the file system has opened it.
    let checked = match super::check_new_mount(fc, pinned.as_cstr(), fs_name) {
        Ok(pin) => pin,
        Err(e) if e == EROFS => return e.to_errno(),
        Err(e) => {
            let (ma, mi) = crate::kbind::bdev::dev_parts(pinned.dev());
            pr_warn!("cannot check device {}:{} ({:?}): refusing the read-write mount\n", ma, mi, e);
            return EROFS.to_errno();
        }
    };
    // SAFETY: forwarding the VFS call to the file system.
    let ret = unsafe { get_tree(fc) };
    if ret != 0 {
        return ret;
    }
    // The pinned name cannot lead elsewhere; this only states it.
    // SAFETY: `get_tree` succeeded, so `fc->root` pins the superblock.
    let opened = unsafe { sys::snapguard_fc_root_bdev(fc) };
    if let Some(file) = &checked {
        if !file.is(opened) {
            let (ma, mi) = crate::kbind::bdev::dev_parts(pinned.dev());
            pr_err!("the file system opened another device than the checked {}:{}: undoing the mount\n", ma, mi);
            // SAFETY: `fc->root` is set and its superblock locked, as
            // `get_tree` leaves them.
            unsafe { sys::snapguard_fc_drop_root(fc) };
            return EROFS.to_errno();
        }
    }
    0
}

/// Our `reconfigure`: asks the guard before a remount to read-write.
///
/// # Safety
///
/// Called by the VFS with a live `fs_context` whose ops are ours.
unsafe extern "C" fn reconfigure_tramp(fc: *mut sys::fs_context) -> c_int {
    let _in = InFlight::enter();
    // SAFETY: `fc->ops` is ours (we are its `reconfigure`).
    let ops = unsafe { orig_ops(fc) };
    // SAFETY: `fc` is live; for a reconfiguration `fc->root` is set and
    // pins the superblock.
    let (flags, mask, sb) = unsafe { ((*fc).sb_flags, (*fc).sb_flags_mask, sys::snapguard_fc_sb(fc)) };
    if !sb.is_null() && mask & SB_RDONLY != 0 && flags & SB_RDONLY == 0 {
        // SAFETY: `sb` is pinned by `fc->root`; its type name is static.
        let (sb_flags, dev, fs_name) =
            unsafe { ((*sb).s_flags as u32, (*sb).s_dev, CStr::from_char_ptr((*(*sb).s_type).name)) };
        if sb_flags & SB_RDONLY != 0 {
            if let Err(e) = super::check_remount(fc, dev, fs_name) {
                return e.to_errno();
            }
        }
    }
    match ops.reconfigure {
        // SAFETY: forwarding the VFS call to the file system.
        Some(reconf) => unsafe { reconf(fc) },
        None => 0,
    }
}

/// Hooks guarded type `i` if it is registered and not hooked yet; returns
/// whether it is hooked now.
fn install_type(i: usize, announce: bool) -> bool {
    let Some((name, _)) = GUARDED.get(i) else { return false };
    let Some(hook) = HOOKS.get(i) else { return false };
    // SAFETY: `name` is NUL-terminated. Callers make sure the type is
    // registered already (at load, or from its module's LIVE notification)
    // or accept that this loads its module.
    let fs = unsafe { sys::get_fs_type(name.as_char_ptr()) };
    if fs.is_null() {
        return false;
    }
    let _g = HOOK_LOCK.lock();
    let tramp: InitFn = init_tramp;
    // SAFETY: `get_fs_type` returned a registered type and a reference on
    // its module, so `fs` is valid until the `module_put` below.
    unsafe {
        let cur = ptr::read_volatile(ptr::addr_of!((*fs).init_fs_context));
        let hooked = match cur {
            Some(f) if f as usize != tramp as usize => {
                hook.orig_init.store(f as *mut c_void, Ordering::Release);
                hook.fs_type.store(fs, Ordering::Release);
                ptr::write_volatile(ptr::addr_of_mut!((*fs).init_fs_context), Some(tramp));
                if announce {
                    pr_info!("guarding {} mounts\n", name.to_str().unwrap_or("?"));
                }
                true
            }
            Some(_) => true,
            None => false,
        };
        sys::module_put((*fs).owner);
        hooked
    }
}

/// Module notifier: hook types of file system modules that load after us,
/// forget types whose module goes away.
///
/// # Safety
///
/// Called by the module notifier chain with `data` the changing module.
unsafe extern "C" fn module_notify(_nb: *mut sys::notifier_block, action: c_ulong, data: *mut c_void) -> c_int {
    let module = data.cast::<sys::module>();
    if module.is_null() {
        return 0;
    }
    // SAFETY: the notifier chain passes the module whose state changes;
    // it stays valid for the call.
    let (mod_name, state) = unsafe { (&(*module).name, action as u32) };
    let len = mod_name.iter().position(|&c| c == 0).unwrap_or(mod_name.len());
    let bytes: &[u8] = mod_name.get(..len).map(|s| {
        // SAFETY: `c_char` and `u8` have the same layout.
        unsafe { core::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len()) }
    }).unwrap_or(&[]);
    if state == sys::module_state_MODULE_STATE_LIVE {
        for (i, (_, m)) in GUARDED.iter().enumerate() {
            if *m == bytes {
                install_type(i, ANNOUNCE.load(Ordering::Relaxed));
            }
        }
    } else if state == sys::module_state_MODULE_STATE_GOING {
        // A module is GOING here after `delete_module` found it unreferenced:
        // no `fs_context` or superblock of its types exists (each holds a
        // reference on it, and our trampolines are done with a context's
        // table before the VFS drops that reference), and `try_module_get`
        // on it fails from now on. So no mount can be using its types'
        // hooks or tables and none can start: both are forgotten at once,
        // without waiting for anyone. (The other way to GOING, a failed
        // init, must not leave contexts of its types behind either: their
        // code is freed next.)
        let _g = HOOK_LOCK.lock();
        // SAFETY: `module` is going (above) and we hold `HOOK_LOCK`.
        let freed = unsafe { free_slots_of(module) };
        if freed > 0 && ANNOUNCE.load(Ordering::Relaxed) {
            pr_debug!("forgot {} operation table(s) of a module going away\n", freed);
        }
        for hook in HOOKS.iter() {
            let fs = hook.fs_type.load(Ordering::Acquire);
            // SAFETY: a non-null entry is a type whose module has not gone
            // yet (we clear entries here, under the lock), so it is valid.
            if !fs.is_null() && unsafe { ptr::eq((*fs).owner, module) } {
                hook.fs_type.store(ptr::null_mut(), Ordering::Release);
                hook.orig_init.store(ptr::null_mut(), Ordering::Release);
            }
        }
    }
    0
}

/// The installed hooks; dropping them restores the file system types.
///
/// # Invariants
///
/// `nb` is registered as a module notifier while this object lives.
pub(crate) struct Hooks {
    nb: Pin<KBox<UnsafeCell<sys::notifier_block>>>,
}

// SAFETY: the notifier block is only touched by the notifier chain (under
// its own lock) and by `drop`.
unsafe impl Send for Hooks {}
// SAFETY: as above; `&Hooks` gives no access to the block.
unsafe impl Sync for Hooks {}

impl Hooks {
    /// Hooks every guarded type that is present (loading its module if it
    /// is not, unless blacklisted) and every one that appears later.
    /// Returns the hooks and which of [`GUARDED`] are hooked now.
    pub(crate) fn install() -> Result<(Self, [bool; GUARDED.len()])> {
        // SAFETY: called once, at module init, before any other use.
        unsafe { HOOK_LOCK.init() };
        let nb = KBox::pin(
            UnsafeCell::new(sys::notifier_block {
                notifier_call: Some(module_notify),
                next: ptr::null_mut(),
                priority: 0,
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `nb` is pinned and outlives its registration (unregistered
        // in `drop` before it is freed).
        let ret = unsafe { sys::register_module_notifier(nb.get()) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        let hooks = Hooks { nb };
        let mut hooked = [false; GUARDED.len()];
        for (i, h) in hooked.iter_mut().enumerate() {
            *h = install_type(i, false);
        }
        ANNOUNCE.store(true, Ordering::Relaxed);
        Ok((hooks, hooked))
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        // SAFETY: registered in `install` (invariant). Unregistering waits
        // for running notifier calls.
        unsafe { sys::unregister_module_notifier(self.nb.get()) };
        {
            let _g = HOOK_LOCK.lock();
            let tramp: InitFn = init_tramp;
            for hook in HOOKS.iter() {
                let fs = hook.fs_type.load(Ordering::Acquire);
                let orig = hook.orig_init.load(Ordering::Acquire);
                if fs.is_null() || orig.is_null() {
                    continue;
                }
                // SAFETY: non-null entries are live types (see
                // `module_notify`); `orig` was stored from an `InitFn`.
                unsafe {
                    let cur = ptr::read_volatile(ptr::addr_of!((*fs).init_fs_context));
                    if matches!(cur, Some(f) if f as usize == tramp as usize) {
                        let orig = core::mem::transmute::<*mut c_void, InitFn>(orig);
                        ptr::write_volatile(ptr::addr_of_mut!((*fs).init_fs_context), Some(orig));
                    }
                }
                // Keep `orig_init`: a caller may have loaded our pointer.
            }
        }
        // No new call can enter now except ones that loaded the pointer
        // before the restore; wait for those inside, then for a grace
        // period covering those about to enter or about to return.
        // This cannot be given up on: freeing our code under a running
        // call would crash. Calls only linger here while the file system's
        // own `init_fs_context` runs, so the wait is short.
        let mut waited_ms: u64 = 0;
        while INFLIGHT.load(Ordering::SeqCst) != 0 {
            kernel::time::delay::fsleep(kernel::time::Delta::from_millis(1));
            waited_ms = waited_ms.saturating_add(1);
            if waited_ms == 10_000 {
                pr_warn!("unload waits for mount calls still running\n");
            }
        }
        // SAFETY: plain call.
        unsafe { sys::snapguard_synchronize_rcu_tasks() };
    }
}
