// SPDX-License-Identifier: GPL-2.0

//! snapguard: a mount guard against writing volumes that a hibernated OS
//! still owns, and a shared-extent snapshot device-mapper target.
//!
//! This crate is the kernel side: glue, I/O and locking. The on-disk logic
//! is `no_std` Rust shared with the userspace crates (`rust/shared/`), see
//! `Documentation/shared-code.rst`.

use core::fmt::Write;
use kernel::prelude::*;

/// The mount guard: mount hooks, the decision, the detector glue.
mod guard;
/// Raw bindings (confined to `kbind::sys`) and safe kernel wrappers.
mod kbind;
/// The `/sys/kernel/snapguard/` tree.
mod knobs;
/// The device-mapper targets `snapguard-pool` and `snapguard`.
mod target;

use guard::fshook;
use kbind::{sys, text};

/// Hibernation evidence detector shared with userspace.
#[path = "shared/hibernate/mod.rs"]
pub mod hibernate;

/// Snapshot pool metadata core shared with userspace.
#[path = "shared/pool/mod.rs"]
pub mod pool;

/// Table, message and status lines of the targets, shared with userspace.
#[path = "shared/dmtarget/mod.rs"]
pub mod dmtarget;

/// The module version (`MODULE_VERSION`, set in `Kbuild`), also shown in
/// `/sys/kernel/snapguard/version`.
pub(crate) fn version() -> &'static str {
    // SAFETY: `snapguard_version` is a NUL-terminated constant string.
    let c = unsafe { CStr::from_char_ptr(core::ptr::addr_of!(sys::snapguard_version).cast()) };
    c.to_str().unwrap_or("?")
}

module! {
    type: SnapGuard,
    name: "snapguard",
    authors: ["snapguard developers"],
    description: "Mount guard for hibernated volumes and shared-extent snapshots",
    license: "GPL",
}

struct SnapGuard {
    // Dropped in declaration order: unregister the targets, unhook, then
    // remove the knobs.
    _targets: target::Targets,
    _hooks: fshook::Hooks,
    _knobs: knobs::Knobs,
    // Last: lifts the block-layer read-only states snapguard set, once no
    // knob or scan can set one any more.
    _protect: guard::protect::Protection,
}

impl kernel::Module for SnapGuard {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        guard::init();
        let knobs = knobs::Knobs::new()?;
        let (hooks, hooked) = fshook::Hooks::install()?;
        let targets = target::Targets::register(knobs.top())?;
        let mut types = text::Text::<64>::new();
        for ((name, _), on) in fshook::GUARDED.iter().zip(hooked) {
            if on {
                let _ = write!(types, " {}", name.to_str().unwrap_or("?"));
            }
        }
        pr_info!("version {} loaded, guarding:{}\n", version(), types.as_str());
        let protect = guard::protect::Protection::start();
        Ok(SnapGuard { _targets: targets, _hooks: hooks, _knobs: knobs, _protect: protect })
    }
}

impl Drop for SnapGuard {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
