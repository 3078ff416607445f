// SPDX-License-Identifier: GPL-2.0

//! Linux swap areas and the hibernation signatures written over them.
//!
//! The swap signature (`SWAPSPACE2`, or the old `SWAP-SPACE`) is the last
//! 10 bytes of the first page; swsusp (`kernel/power/swap.c`) replaces it
//! with `S1SUSPEND` while an image is stored, uswsusp with `S2SUSPEND` or
//! `ULSUSPEND`, and others with `LINHIB0001`; TuxOnIce writes its own magic
//! at byte 0. Like util-linux's libblkid (`superblocks/swap.c`), page sizes
//! 4, 8, 16, 32 and 64 KiB are tried and the area must be at least 10 pages
//! of 4 KiB.

use super::{has, Ctx, EvidenceKind, FsKind, ReadAt, Res};

/// TuxOnIce's magic at byte 0 (libblkid `TOI_MAGIC_STRING`).
const TOI_MAGIC: &[u8] = b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c";
/// Page sizes probed, as libblkid does.
const PAGE_SIZES: [u64; 5] = [4096, 8192, 16384, 32768, 65536];
/// libblkid's `minsz` for swap: 10 pages of 4 KiB.
const MIN_SIZE: u64 = 10 * 4096;

/// Hibernation signatures at `PAGE_SIZE - 10` with the bytes compared, as
/// libblkid compares them (9 bytes for the `S?SUSPEND` family).
const HIBER_SIGS: [(&[u8], &str); 4] = [
    (b"S1SUSPEND", "swsusp (S1SUSPEND)"),
    (b"S2SUSPEND", "uswsusp (S2SUSPEND)"),
    (b"ULSUSPEND", "uswsusp (ULSUSPEND)"),
    (b"LINHIB0001", "LINHIB0001"),
];
const SWAP_SIGS: [&[u8]; 2] = [b"SWAPSPACE2", b"SWAP-SPACE"];

/// Looks for a swap area or hibernation image; `head` is the volume's
/// first bytes (up to 4 KiB).
pub(super) fn probe<R: ReadAt + ?Sized>(ctx: &mut Ctx<'_, R>, head: &[u8]) -> Res<()> {
    if ctx.len < MIN_SIZE {
        return Ok(());
    }
    if has(head, 0, TOI_MAGIC) {
        ctx.rep.fs = FsKind::Swap;
        ctx.note(
            EvidenceKind::SwapHibernation,
            0,
            format_args!("TuxOnIce hibernation image header at the start of the device"),
        );
        return Ok(());
    }
    for ps in PAGE_SIZES {
        let off = ps - 10;
        let mut sig = [0u8; 10];
        match usize::try_from(off).ok().and_then(|o| head.get(o..o + 10)) {
            Some(s) => sig.copy_from_slice(s),
            None => {
                if off + 10 > ctx.len {
                    break;
                }
                ctx.read(off, &mut sig)?;
            }
        }
        for (magic, name) in HIBER_SIGS {
            if has(&sig, 0, magic) {
                ctx.rep.fs = FsKind::Swap;
                ctx.note(
                    EvidenceKind::SwapHibernation,
                    off,
                    format_args!("swap area holds a Linux hibernation image: {name} signature for {ps}-byte pages"),
                );
                return Ok(());
            }
        }
        if SWAP_SIGS.iter().any(|m| sig == **m) {
            ctx.rep.fs = FsKind::Swap;
            ctx.note(
                EvidenceKind::Info,
                off,
                format_args!("swap area for {ps}-byte pages, no hibernation image"),
            );
            return Ok(());
        }
    }
    Ok(())
}
