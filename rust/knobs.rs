// SPDX-License-Identifier: GPL-2.0

//! The knobs under `/sys/kernel/snapguard/` (see
//! `Documentation/ABI/testing/sysfs-kernel-snapguard`).

use crate::kbind::sysfs::{Dir, Knob};
use core::fmt::Write;
use kernel::prelude::*;

fn show_version(w: &mut dyn Write) -> Result {
    writeln!(w, "{}", crate::version()).map_err(|_| EINVAL)
}

static TOP_KNOBS: [Knob; 1] = [Knob {
    name: c"version",
    show: show_version,
    store: None,
}];

/// The `/sys/kernel/snapguard` tree; removed on drop (children first).
pub(crate) struct Knobs {
    _guard: Dir,
    top: Dir,
}

impl Knobs {
    /// Creates `/sys/kernel/snapguard/` and its subdirectories.
    pub(crate) fn new() -> Result<Self> {
        let top = Dir::new(c"snapguard", None, &TOP_KNOBS)?;
        let guard = Dir::new(c"guard", Some(&top), &crate::guard::GUARD_KNOBS)?;
        Ok(Knobs { _guard: guard, top })
    }

    /// `/sys/kernel/snapguard/` (the target adds `pools/` under it).
    pub(crate) fn top(&self) -> &Dir {
        &self.top
    }
}
