// SPDX-License-Identifier: GPL-2.0

//! Kernel series differences on the Rust side, one item per difference
//! (the C side's are the "Kernel series difference" helpers in
//! `helpers.c`); see `Documentation/testing.rst`, "Kernel series".

use kernel::prelude::*;

/// `EOPNOTSUPP`, "operation not supported".
///
/// Kernel series difference: the kernel crate's `error::code` has it from
/// 7.3 on; 7.2 lacks it, so it is made from the C constant.
pub(crate) fn eopnotsupp() -> Error {
    Error::from_errno(-(kernel::bindings::EOPNOTSUPP as kernel::ffi::c_int))
}
