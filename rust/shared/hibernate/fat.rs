// SPDX-License-Identifier: GPL-2.0

//! FAT12/16/32 and exFAT: the dirty flags in the boot sector, and on FAT16
//! and FAT32 the clean-shutdown and hard-error bits of FAT entry 1.
//!
//! Layouts: `include/uapi/linux/msdos_fs.h` (`struct fat_boot_sector`),
//! `fs/fat/inode.c` (`fat_read_bpb`, FAT type from the cluster count),
//! `fs/exfat/exfat_raw.h` (`struct boot_sector`, `VOLUME_DIRTY`,
//! `MEDIA_FAILURE`).

use core::num::NonZeroU64;

use super::{byte, has, le16, le32, le64, Ctx, EvidenceKind, FsKind, ReadAt, Res};

/// Largest FAT12 cluster count (`MAX_FAT12` in msdos_fs.h).
const MAX_FAT12: u64 = 0xFF4;
/// FAT boot-sector `state` bit set while mounted (`FAT_STATE_DIRTY`).
const FAT_STATE_DIRTY: u8 = 0x01;
/// FAT16 entry 1: 1 = volume was cleanly unmounted.
const FAT16_CLEAN: u16 = 0x8000;
/// FAT16 entry 1: 1 = no disk I/O errors were seen.
const FAT16_NO_ERR: u16 = 0x4000;
/// FAT32 entry 1: 1 = volume was cleanly unmounted.
const FAT32_CLEAN: u32 = 0x0800_0000;
/// FAT32 entry 1: 1 = no disk I/O errors were seen.
const FAT32_NO_ERR: u32 = 0x0400_0000;
/// exFAT VolumeFlags byte offset in the boot sector.
const EXFAT_FLAGS: usize = 106;
/// exFAT VolumeFlags bits (exfat_raw.h).
const EXFAT_VOLUME_DIRTY: u16 = 0x0002;
const EXFAT_MEDIA_FAILURE: u16 = 0x0004;

/// Whether the boot sector says exFAT.
pub(super) fn is_exfat(head: &[u8]) -> bool {
    has(head, 3, b"EXFAT   ")
}

/// Whether the boot sector has a FAT BIOS parameter block that
/// `fat_read_bpb` (fs/fat/inode.c) accepts: a power-of-two sector size of
/// 512-4096 and cluster size, reserved sectors, FATs, a valid media byte
/// and a FAT length. Like the kernel, no jump instruction is required
/// (DOS 1.x and some formatters leave those bytes zero).
pub(super) fn looks_fat(head: &[u8]) -> bool {
    let bps = le16(head, 11);
    let spc = byte(head, 13);
    let media = byte(head, 21);
    (512..=4096).contains(&bps)
        && bps.is_power_of_two()
        && spc.is_power_of_two()
        && le16(head, 14) != 0
        && byte(head, 16) != 0
        && (media == 0xF0 || media >= 0xF8)
        && (le16(head, 22) != 0 || le32(head, 36) != 0)
}

/// Device sizes (in 512-byte sectors) of the DOS 1.x floppies that vfat's
/// `dos1xfloppy` option mounts without a BPB (`floppy_defaults` in
/// fs/fat/inode.c): 160, 180, 320 and 360 KiB.
const DOS1X_SECTORS: [u64; 4] = [320, 360, 640, 720];

/// Whether the volume is a DOS 1.x floppy as `fat_read_static_bpb` takes
/// it: a jump instruction, an all-zero BPB (bytes 11-27) and a known
/// floppy size.
pub(super) fn looks_dos1x(head: &[u8], dev_len: u64) -> bool {
    let jump = (byte(head, 0) == 0xEB && byte(head, 2) == 0x90) || byte(head, 0) == 0xE9;
    let zero = head.get(11..28).is_some_and(|z| z.iter().all(|&b| b == 0));
    jump && zero && dev_len % 512 == 0 && DOS1X_SECTORS.contains(&(dev_len / 512))
}

/// Probes a volume that `looks_fat`.
pub(super) fn probe_fat<R: ReadAt + ?Sized>(ctx: &mut Ctx<'_, R>, head: &[u8]) -> Res<()> {
    let bps = u64::from(le16(head, 11));
    let spc = u64::from(byte(head, 13));
    let reserved = u64::from(le16(head, 14));
    let fats = u64::from(byte(head, 16));
    let root_entries = u64::from(le16(head, 17));
    let fat16_len = u64::from(le16(head, 22));
    let fat32_len = u64::from(le32(head, 36));
    let is32 = fat16_len == 0;
    ctx.rep.fs = if is32 { FsKind::Fat32 } else { FsKind::Fat16 };
    let fat_len = if is32 { fat32_len } else { fat16_len };
    let total = match le16(head, 19) {
        0 => u64::from(le32(head, 32)),
        n => u64::from(n),
    };
    if fat_len == 0 || total == 0 {
        return Err(ctx.malformed(
            11,
            format_args!("FAT boot sector: zero FAT length or sector count"),
        ));
    }
    // `looks_fat` checked both sizes; the check here keeps a division
    // panic out of the code (and so out of the kernel's objtool view).
    let (Some(bps_nz), Some(spc_nz)) = (NonZeroU64::new(bps), NonZeroU64::new(spc)) else {
        return Err(ctx.malformed(
            11,
            format_args!("FAT boot sector: zero sector or cluster size"),
        ));
    };
    // bps >= 512, so this cannot overflow.
    let root_sectors = (root_entries * 32).div_ceil(bps_nz.get());
    let data_start = reserved + fats * fat_len + root_sectors;
    if total < data_start {
        return Err(ctx.malformed(
            11,
            format_args!("FAT data area starts beyond the volume ({data_start} > {total} sectors)"),
        ));
    }
    let clusters = (total - data_start) / spc_nz;
    if !is32 && clusters <= MAX_FAT12 {
        ctx.rep.fs = FsKind::Fat12;
    }
    let kind = ctx.rep.fs;
    let size = total * bps;
    let dev = ctx.len;
    if size > dev {
        return Err(ctx.malformed(
            0,
            format_args!(
                "{} volume of {size} bytes on a device of {dev} bytes (truncated)",
                kind.as_str()
            ),
        ));
    }
    let state_off = if is32 { 0x41 } else { 0x25 };
    if byte(head, state_off) & FAT_STATE_DIRTY != 0 {
        ctx.note(
            EvidenceKind::FatDirty,
            state_off as u64,
            format_args!("boot sector dirty flag set: the volume is mounted somewhere, or was not unmounted cleanly"),
        );
    }
    if kind == FsKind::Fat12 {
        return Ok(());
    }
    let fat_off = reserved * bps;
    let mut ent = [0u8; 8];
    ctx.read(fat_off, &mut ent)?;
    if is32 {
        let e1 = le32(&ent, 4);
        note_entry1(
            ctx,
            fat_off + 4,
            e1 & FAT32_CLEAN != 0,
            e1 & FAT32_NO_ERR != 0,
            u64::from(e1),
        );
    } else {
        let e1 = le16(&ent, 2);
        note_entry1(
            ctx,
            fat_off + 2,
            e1 & FAT16_CLEAN != 0,
            e1 & FAT16_NO_ERR != 0,
            u64::from(e1),
        );
    }
    Ok(())
}

fn note_entry1<R: ReadAt + ?Sized>(
    ctx: &mut Ctx<'_, R>,
    off: u64,
    clean: bool,
    no_err: bool,
    raw: u64,
) {
    if !clean {
        ctx.note(
            EvidenceKind::FatUncleanShutdown,
            off,
            format_args!("FAT entry 1 ({raw:#x}) clean-shutdown bit clear: not cleanly unmounted"),
        );
    }
    if !no_err {
        ctx.note(
            EvidenceKind::FatHardError,
            off,
            format_args!("FAT entry 1 ({raw:#x}) hard-error bit clear: disk I/O errors were seen"),
        );
    }
}

/// Probes an exFAT volume.
pub(super) fn probe_exfat<R: ReadAt + ?Sized>(ctx: &mut Ctx<'_, R>, head: &[u8]) -> Res<()> {
    let zero = head.get(11..64).is_some_and(|z| z.iter().all(|&b| b == 0));
    let ssb = byte(head, 108);
    let spcb = byte(head, 109);
    if !zero
        || !(9..=12).contains(&ssb)
        || u32::from(spcb) > 25 - u32::from(ssb)
        || le16(head, 510) != 0xAA55
    {
        return Err(ctx.malformed(
            0,
            format_args!("exFAT boot sector fails its consistency checks"),
        ));
    }
    let sectors = le64(head, 72);
    let size = sectors
        .checked_shl(u32::from(ssb))
        .filter(|s| s >> ssb == sectors);
    let dev = ctx.len;
    match size {
        Some(s) if s <= dev => {}
        _ => {
            return Err(ctx.malformed(
                72,
                format_args!("exFAT volume of {sectors} sectors of {} bytes on a device of {dev} bytes (truncated)", 1u32 << ssb),
            ))
        }
    }
    let flags = le16(head, EXFAT_FLAGS);
    if flags & EXFAT_VOLUME_DIRTY != 0 {
        ctx.note(
            EvidenceKind::ExfatDirty,
            EXFAT_FLAGS as u64,
            format_args!("VolumeFlags ({flags:#06x}) VolumeDirty set: mounted somewhere, or not unmounted cleanly"),
        );
    }
    if flags & EXFAT_MEDIA_FAILURE != 0 {
        ctx.note(
            EvidenceKind::ExfatMediaFailure,
            EXFAT_FLAGS as u64,
            format_args!("VolumeFlags ({flags:#06x}) MediaFailure set: the medium reported errors"),
        );
    }
    Ok(())
}
