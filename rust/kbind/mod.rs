// SPDX-License-Identifier: GPL-2.0

//! Kernel bindings and the small safe wrappers around them.
//!
//! `sys` is the only module that sees the raw bindgen output (generated from
//! `snapguard.h` by our Kbuild; `helpers.c` wraps the static inline
//! functions and macros bindgen cannot bind). The other modules are safe
//! abstractions the guard and the target are written against.

pub(crate) mod bdev;
pub(crate) mod compat;
pub(crate) mod dm;
pub(crate) mod sys;
pub(crate) mod sysfs;
pub(crate) mod text;
