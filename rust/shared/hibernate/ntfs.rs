// SPDX-License-Identifier: GPL-2.0

//! NTFS: `$Volume` dirty flag, `$LogFile` restart pages and the
//! `hiberfil.sys` header found through the root directory index.
//!
//! Layouts (see `Documentation/hibernation-evidence.rst`): `fs/ntfs/layout.h`
//! and `fs/ntfs/logfile.h` of Linux 7.2, `fs/ntfs3/ntfs.h`; the checks follow
//! ntfs-3g's `libntfs-3g/volume.c` (`ntfs_volume_check_hiberfile`) and
//! `libntfs-3g/logfile.c` (`ntfs_check_logfile`, `ntfs_is_logfile_clean`),
//! and `fs/ntfs/super.c` (`check_windows_hibernation_status`).

use core::num::NonZeroU64;

use super::{byte, has, le16, le32, le64, Ctx, EvidenceKind, Halt, ReadAt, Res};

const AT_ATTRIBUTE_LIST: u32 = 0x20;
const AT_VOLUME_INFORMATION: u32 = 0x70;
const AT_DATA: u32 = 0x80;
const AT_INDEX_ROOT: u32 = 0x90;
const AT_INDEX_ALLOCATION: u32 = 0xA0;
const AT_END: u32 = 0xFFFF_FFFF;

const FILE_LOGFILE: u64 = 2;
const FILE_VOLUME: u64 = 3;
const FILE_ROOT: u64 = 5;

/// The multi-sector transfer stride: always 512 bytes (`NTFS_BLOCK_SIZE`).
const BLOCK: usize = 512;
/// Largest MFT record handled (Windows uses 1 KiB or 4 KiB).
const MAX_RECORD: usize = 4096;
/// Largest index block handled (Windows uses 4 KiB).
const MAX_INDEX_BLOCK: usize = 8192;
/// Largest cluster (Windows allows up to 2 MiB).
const MAX_CLUSTER: u64 = 2 * 1024 * 1024;
/// Bounds on loops over on-disk data.
const MAX_ATTRS: usize = 128;
const MAX_RUNS: usize = 512;
const MAX_CHUNKS: usize = 64;
const MAX_ALIST_ENTRIES: usize = 256;
const MAX_INDEX_ENTRIES: usize = 1024;
const MAX_INDEX_DEPTH: usize = 8;
const MAX_LOG_CLIENTS: usize = 64;

/// The hibernation file header size ntfs-3g and fs/ntfs read.
const HIBERFIL_HEADER: usize = 4096;
/// `$LogFile` page size ntfs-3g assumes (`DefaultLogPageSize`).
const LOG_PAGE: u64 = 4096;
/// Where restart pages may start: 0 and the system page size.
const RESTART_POSITIONS: [u64; 9] = [0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
const LOGFILE_NO_CLIENT: u16 = 0xFFFF;
const RESTART_VOLUME_IS_CLEAN: u16 = 0x0002;
const LOG_CLIENT_RECORD_SIZE: usize = 0xA0;
const VOLUME_IS_DIRTY: u16 = 0x0001;

/// Whether the boot sector's OEM id says NTFS.
pub(super) fn is_ntfs(head: &[u8]) -> bool {
    has(head, 3, b"NTFS    ")
}

/// Volume geometry from the boot sector.
struct Geo {
    /// Cluster size in bytes; `NonZeroU64` so that dividing by it cannot
    /// panic.
    cluster: NonZeroU64,
    total_clusters: u64,
    rec_size: usize,
    idx_size: usize,
    /// First cluster of `$MFT`.
    mft_lcn: u64,
}

/// The scratch buffers, carved out of the caller's scratch area.
struct Bufs<'a> {
    mft0: &'a mut [u8],
    rec: &'a mut [u8],
    ext: &'a mut [u8],
    alist: &'a mut [u8],
    page: &'a mut [u8],
    ext_no: Option<u64>,
}

fn carve(rest: &mut [u8]) -> Option<Bufs<'_>> {
    let (mft0, rest) = rest.split_at_mut_checked(MAX_RECORD)?;
    let (rec, rest) = rest.split_at_mut_checked(MAX_RECORD)?;
    let (ext, rest) = rest.split_at_mut_checked(MAX_RECORD)?;
    let (alist, rest) = rest.split_at_mut_checked(MAX_RECORD)?;
    let page = rest.get_mut(..MAX_INDEX_BLOCK)?;
    Some(Bufs {
        mft0,
        rec,
        ext,
        alist,
        page,
        ext_no: None,
    })
}

/// Decodes a "clusters per record" byte: positive counts clusters, negative
/// `n` means 2^-n bytes.
fn record_size(raw: u8, cluster: u64) -> Option<u64> {
    let v = raw as i8;
    if v > 0 {
        u64::try_from(v).ok()?.checked_mul(cluster)
    } else {
        let shift = u32::from(v.unsigned_abs());
        if shift > 31 {
            None
        } else {
            Some(1u64 << shift)
        }
    }
}

/// The fields of an NTFS boot sector that a driver accepts.
struct Boot {
    bps: u64,
    cluster: u64,
    sectors: u64,
    mft_lcn: u64,
    rec: u64,
    idx: u64,
}

/// Checks an NTFS boot sector as the kernel's drivers do before they
/// mount: `ntfs_init_from_boot` (fs/ntfs3/super.c) and
/// `is_boot_sector_ntfs` + `parse_ntfs_boot_sector` (fs/ntfs/super.c of
/// 7.3). A boot sector either driver accepts passes; neither needs the
/// 0x55AA end marker. When the primary boot sector fails these checks,
/// ntfs3 mounts from the backup one (see [`probe`]).
fn boot_fields(b: &[u8]) -> Result<Boot, (u64, &'static str)> {
    if !is_ntfs(b) {
        return Err((3, "NTFS boot sector: no NTFS OEM id"));
    }
    // ntfs3: >= 512; fs/ntfs: 256-4096; both: a power of two.
    let bps = u64::from(le16(b, 0x0B));
    if bps < 256 || !bps.is_power_of_two() {
        return Err((0x0B, "NTFS boot sector: bad bytes per sector"));
    }
    // 0x00-0x80 count sectors, 0xF4-0xFF mean 2^(256-v); the rest is
    // invalid for both drivers.
    let raw = byte(b, 0x0D);
    let spc = match raw {
        0..=0x80 => u64::from(raw),
        0xF4..=0xFF => 1u64 << (256 - u32::from(raw)),
        _ => 0,
    };
    if !spc.is_power_of_two() {
        return Err((0x0D, "NTFS boot sector: bad sectors per cluster"));
    }
    // bps <= 32768 and spc <= 4096: never saturates.
    let cluster = bps.saturating_mul(spc);
    let sectors = le64(b, 0x28);
    let mft_lcn = le64(b, 0x30);
    let inside = |lcn: u64| lcn.checked_mul(spc).is_some_and(|s| s < sectors);
    if !inside(mft_lcn) || !inside(le64(b, 0x38)) {
        return Err((
            0x30,
            "NTFS boot sector: $MFT or $MFTMirr cluster outside the volume",
        ));
    }
    let rec = record_size(byte(b, 0x40), cluster).unwrap_or(0);
    if !(512..=MAX_RECORD as u64).contains(&rec) || !rec.is_power_of_two() {
        return Err((0x40, "NTFS boot sector: bad MFT record size"));
    }
    let idx = record_size(byte(b, 0x44), cluster).unwrap_or(0);
    if idx < 512 || !idx.is_power_of_two() {
        return Err((0x44, "NTFS boot sector: bad index block size"));
    }
    Ok(Boot {
        bps,
        cluster,
        sectors,
        mft_lcn,
        rec,
        idx,
    })
}

/// The geometry of a boot sector the drivers accept, within what
/// snapguard reads and the device holds.
fn geometry(f: &Boot, dev_len: u64) -> Result<Geo, (u64, &'static str)> {
    let Some(cluster) = NonZeroU64::new(f.cluster) else {
        return Err((0x0D, "NTFS boot sector: bad sectors per cluster"));
    };
    if cluster.get() > MAX_CLUSTER {
        return Err((0x0D, "NTFS boot sector: cluster larger than 2 MiB"));
    }
    if f.idx > MAX_INDEX_BLOCK as u64 {
        return Err((0x44, "NTFS boot sector: unsupported index block size"));
    }
    let vol_bytes = f
        .sectors
        .checked_mul(f.bps)
        .ok_or((0x28, "NTFS boot sector: volume size overflows"))?;
    if vol_bytes > dev_len {
        return Err((0x28, "NTFS volume is larger than the device (truncated)"));
    }
    Ok(Geo {
        cluster,
        total_clusters: vol_bytes / cluster,
        rec_size: usize::try_from(f.rec).unwrap_or(MAX_RECORD),
        idx_size: usize::try_from(f.idx).unwrap_or(MAX_INDEX_BLOCK),
        mft_lcn: f.mft_lcn,
    })
}

/// Where the backup boot sector may be, counted back from the end of the
/// device: the last 512 bytes (what ntfs3 reads, whatever the device's
/// sector size; mkntfs and Windows put it there with 512-byte sectors),
/// and the start of the last 4 KiB sector (where mkntfs and Windows put it
/// with 4096-byte sectors).
const BACKUP_FROM_END: [u64; 2] = [512, 4096];

/// Looks for a backup boot sector the drivers accept; reads into `buf`
/// (at least 512 bytes). Returns its fields and device offset.
fn find_backup<R: ReadAt + ?Sized>(
    ctx: &mut Ctx<'_, R>,
    buf: &mut [u8],
) -> Res<Option<(Boot, u64)>> {
    let sec = buf.get_mut(..BLOCK).ok_or(Halt::Malformed)?;
    for back in BACKUP_FROM_END {
        // Not the primary itself, and not inside the head read first.
        let Some(off) = ctx.len.checked_sub(back).filter(|&o| o >= 4096) else {
            continue;
        };
        ctx.read(off, sec)?;
        if let Ok(f) = boot_fields(sec) {
            return Ok(Some((f, off)));
        }
    }
    Ok(None)
}

/// Why a multi-sector protected record failed its fixups.
enum FixupErr {
    /// The update sequence array does not fit the record.
    Layout,
    /// A sector's last two bytes do not match the sequence number: a torn
    /// write.
    Torn,
}

/// Applies the update-sequence fixups to the 512-byte blocks of `buf` that
/// are present; `full_len` is the size of the whole protected record.
fn fixup(buf: &mut [u8], full_len: usize) -> Result<(), FixupErr> {
    let ofs = usize::from(le16(buf, 4));
    let cnt = usize::from(le16(buf, 6));
    let usa_end = cnt
        .checked_mul(2)
        .and_then(|n| n.checked_add(ofs))
        .ok_or(FixupErr::Layout)?;
    if cnt == 0 || ofs & 1 != 0 || usa_end > BLOCK || (cnt - 1).checked_mul(BLOCK) != Some(full_len)
    {
        return Err(FixupErr::Layout);
    }
    let usn = [byte(buf, ofs), byte(buf, ofs + 1)];
    // cnt <= 256 because usa_end <= 512.
    for i in 1..cnt {
        let end = i * BLOCK;
        if end > buf.len() {
            break;
        }
        let fix = [byte(buf, ofs + 2 * i), byte(buf, ofs + 2 * i + 1)];
        let tail = buf.get_mut(end - 2..end).ok_or(FixupErr::Layout)?;
        if tail != usn {
            return Err(FixupErr::Torn);
        }
        tail.copy_from_slice(&fix);
    }
    Ok(())
}

/// Finds attribute `ty` named `name` (ASCII, case-sensitive) in an MFT
/// record; for a non-resident one, the extent covering `vcn` if given.
/// Returns (offset, length) within the record.
fn find_attr(
    rec: &[u8],
    ty: u32,
    name: &[u8],
    vcn: Option<u64>,
) -> Result<Option<(usize, usize)>, &'static str> {
    let end = usize::try_from(le32(rec, 0x18))
        .unwrap_or(usize::MAX)
        .min(rec.len());
    let mut pos = usize::from(le16(rec, 0x14));
    for _ in 0..MAX_ATTRS {
        let t = le32(rec, pos);
        if t == AT_END || pos.saturating_add(8) > end {
            return Ok(None);
        }
        let len = usize::try_from(le32(rec, pos + 4)).unwrap_or(usize::MAX);
        if len < 0x18 || len % 8 != 0 || pos.saturating_add(len) > end {
            return Err("attribute record overruns its MFT record");
        }
        let a = rec.get(pos..pos + len).ok_or("attribute out of range")?;
        if t == ty && name_is(a, name) {
            let nonres = byte(a, 8) != 0;
            match vcn {
                Some(v) if nonres => {
                    if le64(a, 0x10) <= v && v <= le64(a, 0x18) {
                        return Ok(Some((pos, len)));
                    }
                }
                _ => return Ok(Some((pos, len))),
            }
        }
        pos += len;
    }
    Err("too many attributes in an MFT record")
}

fn name_is(a: &[u8], name: &[u8]) -> bool {
    let nl = usize::from(byte(a, 9));
    let no = usize::from(le16(a, 10));
    nl == name.len()
        && name
            .iter()
            .enumerate()
            .all(|(i, &c)| le16(a, no + 2 * i) == u16::from(c) && no + 2 * i + 2 <= a.len())
}

/// The value of a resident attribute.
fn resident_value(a: &[u8]) -> Option<&[u8]> {
    if byte(a, 8) != 0 {
        return None;
    }
    let len = usize::try_from(le32(a, 0x10)).ok()?;
    let off = usize::from(le16(a, 0x14));
    a.get(off..off.checked_add(len)?)
}

/// Where a virtual cluster of a non-resident attribute lives.
struct Run {
    /// First logical cluster, or `None` for a sparse (all-zero) run.
    lcn: Option<u64>,
    /// Clusters left in the run from the asked VCN.
    left: u64,
}

/// Reads a little-endian integer of `n` <= 8 bytes at `pos`, sign-extended
/// if `signed`.
fn var_int(a: &[u8], pos: usize, n: usize, signed: bool) -> Option<i64> {
    let bytes = a.get(pos..pos.checked_add(n)?)?;
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        v |= u64::from(b) << (8 * i);
    }
    if signed && n > 0 && n < 8 && bytes.last().is_some_and(|&b| b & 0x80 != 0) {
        v |= u64::MAX << (8 * n);
    }
    Some(v as i64)
}

/// Maps `vcn` through the runlist (mapping pairs) of non-resident
/// attribute `a`; `Ok(None)` when this extent does not hold it.
fn map_vcn(geo: &Geo, a: &[u8], vcn: u64) -> Result<Option<Run>, &'static str> {
    if byte(a, 8) == 0 {
        return Err("attribute is resident, expected a runlist");
    }
    let mut cur = le64(a, 0x10);
    if vcn < cur {
        return Ok(None);
    }
    let mut pos = usize::from(le16(a, 0x20));
    let mut lcn: i64 = 0;
    for _ in 0..MAX_RUNS {
        let h = *a.get(pos).ok_or("runlist runs past its attribute")?;
        if h == 0 {
            return Ok(None);
        }
        let ls = usize::from(h & 0x0F);
        let os = usize::from(h >> 4);
        if ls == 0 || ls > 8 || os > 8 {
            return Err("runlist entry has a bad header");
        }
        let len = var_int(a, pos + 1, ls, false).ok_or("runlist runs past its attribute")?;
        let len = u64::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or("runlist has a run of zero or negative length")?;
        let sparse = os == 0;
        if !sparse {
            let delta =
                var_int(a, pos + 1 + ls, os, true).ok_or("runlist runs past its attribute")?;
            lcn = lcn
                .checked_add(delta)
                .filter(|&l| l >= 0)
                .ok_or("runlist points before the volume")?;
        }
        pos += 1 + ls + os;
        let start = u64::try_from(lcn).unwrap_or(0);
        if !sparse
            && start
                .checked_add(len)
                .is_none_or(|e| e > geo.total_clusters)
        {
            return Err("runlist points past the end of the volume");
        }
        let next = cur.checked_add(len).ok_or("runlist VCNs overflow")?;
        if vcn < next {
            let skip = vcn - cur;
            return Ok(Some(Run {
                lcn: if sparse { None } else { Some(start + skip) },
                left: next - vcn,
            }));
        }
        cur = next;
    }
    Err("runlist has too many runs")
}

/// Reads `buf.len()` bytes at byte `pos` of non-resident attribute extent
/// `a`. Bytes at or past `init` (the initialized size, when known) read as
/// zero. Returns the device offset of the first byte (0 if sparse).
fn read_nonres<R: ReadAt + ?Sized>(
    ctx: &mut Ctx<'_, R>,
    geo: &Geo,
    a: &[u8],
    pos: u64,
    buf: &mut [u8],
    init: Option<u64>,
    what: &str,
) -> Res<u64> {
    let mut done = 0usize;
    let mut first = None;
    for _ in 0..MAX_CHUNKS {
        if done >= buf.len() {
            break;
        }
        let p = pos.saturating_add(done as u64);
        let vcn = p / geo.cluster;
        let within = p % geo.cluster;
        let run = match map_vcn(geo, a, vcn) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(ctx.malformed(
                    0,
                    format_args!("{what}: byte {p} is not mapped by its runlist"),
                ))
            }
            Err(e) => return Err(ctx.malformed(0, format_args!("{what}: {e}"))),
        };
        let avail = run
            .left
            .saturating_mul(geo.cluster.get())
            .saturating_sub(within);
        let n = usize::try_from(avail)
            .unwrap_or(usize::MAX)
            .min(buf.len() - done);
        let chunk = buf.get_mut(done..done + n).ok_or(Halt::Malformed)?;
        match run.lcn {
            None => chunk.fill(0),
            Some(lcn) => {
                let off = lcn.saturating_mul(geo.cluster.get()).saturating_add(within);
                first.get_or_insert(off);
                ctx.read(off, chunk)?;
            }
        }
        done += n;
    }
    if done < buf.len() {
        return Err(ctx.malformed(
            0,
            format_args!("{what}: too fragmented to read within the probe's bounds"),
        ));
    }
    if let Some(init) = init {
        let valid = usize::try_from(init.saturating_sub(pos)).unwrap_or(usize::MAX);
        if let Some(tail) = buf.get_mut(valid..) {
            tail.fill(0);
        }
    }
    Ok(first.unwrap_or(0))
}

/// Checks an MFT record after reading: fixups, `FILE` magic, in use.
fn check_record<R: ReadAt + ?Sized>(
    ctx: &mut Ctx<'_, R>,
    rec: &mut [u8],
    n: u64,
    off: u64,
) -> Res<()> {
    if !has(rec, 0, b"FILE") {
        let what = if has(rec, 0, b"BAAD") {
            "marked BAAD (torn write)"
        } else {
            "has no FILE magic"
        };
        return Err(ctx.malformed(off, format_args!("MFT record {n} {what}")));
    }
    let full = rec.len();
    match fixup(rec, full) {
        Ok(()) => {}
        Err(FixupErr::Layout) => {
            return Err(ctx.malformed(
                off,
                format_args!("MFT record {n}: bad update sequence array"),
            ))
        }
        Err(FixupErr::Torn) => {
            return Err(ctx.malformed(
                off,
                format_args!("MFT record {n}: update sequence mismatch (torn write)"),
            ))
        }
    }
    if le16(rec, 0x16) & 1 == 0 {
        return Err(ctx.malformed(off, format_args!("MFT record {n} is not in use")));
    }
    let used = usize::try_from(le32(rec, 0x18)).unwrap_or(usize::MAX);
    let attrs = usize::from(le16(rec, 0x14));
    if used > rec.len() || attrs < 0x18 || attrs >= used || attrs % 8 != 0 {
        return Err(ctx.malformed(off, format_args!("MFT record {n}: bad header sizes")));
    }
    Ok(())
}

/// Reads MFT record `n` into `out` (`geo.rec_size` bytes) through the
/// `$MFT` runlist in `mft0`. Returns its device offset.
fn read_record<R: ReadAt + ?Sized>(
    ctx: &mut Ctx<'_, R>,
    geo: &Geo,
    mft0: &[u8],
    n: u64,
    out: &mut [u8],
) -> Res<u64> {
    let rs = geo.rec_size as u64;
    let pos = n.checked_mul(rs).ok_or(Halt::Malformed)?;
    let data = match find_attr(mft0, AT_DATA, b"", Some(pos / geo.cluster)) {
        Ok(Some((o, l))) => mft0.get(o..o + l).ok_or(Halt::Malformed)?,
        Ok(None) => {
            return Err(ctx.malformed(
                0,
                format_args!("MFT record {n} lies past the first extent of $MFT (not followed)"),
            ))
        }
        Err(e) => return Err(ctx.malformed(0, format_args!("$MFT record: {e}"))),
    };
    if byte(data, 8) == 0 {
        return Err(ctx.malformed(0, format_args!("$MFT $DATA is resident")));
    }
    if le64(data, 0x10) == 0 && pos.saturating_add(rs) > le64(data, 0x30) {
        return Err(ctx.malformed(0, format_args!("MFT record {n} lies past the end of $MFT")));
    }
    let out = out.get_mut(..geo.rec_size).ok_or(Halt::Malformed)?;
    let off = read_nonres(ctx, geo, data, pos, out, None, "$MFT")?;
    check_record(ctx, out, n, off)?;
    Ok(off)
}

/// Where [`locate`] found an attribute: in the base record or in the
/// extension record loaded into `Bufs::ext`.
#[derive(Clone, Copy)]
enum Place {
    Base(usize, usize),
    Ext(usize, usize),
}

/// Finds attribute `ty`/`name` covering `vcn` for the file whose base
/// record (number `base_no`) is in `base`, following `$ATTRIBUTE_LIST`
/// into one extension record if needed.
#[allow(clippy::too_many_arguments)]
fn locate<R: ReadAt + ?Sized>(
    ctx: &mut Ctx<'_, R>,
    geo: &Geo,
    mft0: &[u8],
    base: &[u8],
    base_no: u64,
    ext: &mut [u8],
    ext_no: &mut Option<u64>,
    alist: &mut [u8],
    ty: u32,
    name: &[u8],
    vcn: u64,
) -> Res<Option<Place>> {
    match find_attr(base, ty, name, Some(vcn)) {
        Ok(Some((o, l))) => return Ok(Some(Place::Base(o, l))),
        Ok(None) => {}
        Err(e) => return Err(ctx.malformed(0, format_args!("MFT record {base_no}: {e}"))),
    }
    let al = match find_attr(base, AT_ATTRIBUTE_LIST, b"", None) {
        Ok(Some((o, l))) => base.get(o..o + l).ok_or(Halt::Malformed)?,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ctx.malformed(0, format_args!("MFT record {base_no}: {e}"))),
    };
    // The list itself: resident, or its first 4 KiB read through its runlist.
    let list: &[u8] = match resident_value(al) {
        Some(v) => v,
        None => {
            let size = le64(al, 0x30);
            let n = usize::try_from(size).unwrap_or(usize::MAX).min(alist.len());
            let dst = alist.get_mut(..n).ok_or(Halt::Malformed)?;
            read_nonres(
                ctx,
                geo,
                al,
                0,
                dst,
                Some(le64(al, 0x38)),
                "$ATTRIBUTE_LIST",
            )?;
            dst
        }
    };
    let mut pos = 0usize;
    let mut best: Option<u64> = None;
    for _ in 0..MAX_ALIST_ENTRIES {
        if pos.saturating_add(0x1A) > list.len() {
            break;
        }
        let t = le32(list, pos);
        let len = usize::from(le16(list, pos + 4));
        if len < 0x1A || pos.saturating_add(len) > list.len() {
            return Err(ctx.malformed(
                0,
                format_args!("MFT record {base_no}: bad $ATTRIBUTE_LIST entry"),
            ));
        }
        let nl = usize::from(byte(list, pos + 6));
        let no = pos + usize::from(byte(list, pos + 7));
        let name_ok = nl == name.len()
            && no.saturating_add(2 * nl) <= pos + len
            && name
                .iter()
                .enumerate()
                .all(|(i, &c)| le16(list, no + 2 * i) == u16::from(c));
        if t == ty && name_ok && le64(list, pos + 8) <= vcn {
            best = Some(le64(list, pos + 0x10) & 0xFFFF_FFFF_FFFF);
        }
        pos += len;
    }
    let Some(rec_no) = best else { return Ok(None) };
    if rec_no == base_no {
        return Ok(None);
    }
    if *ext_no != Some(rec_no) {
        *ext_no = None;
        read_record(ctx, geo, mft0, rec_no, ext)?;
        if le64(ext, 0x20) & 0xFFFF_FFFF_FFFF != base_no {
            return Err(ctx.malformed(
                0,
                format_args!("MFT record {rec_no} listed in record {base_no}'s $ATTRIBUTE_LIST belongs to another file"),
            ));
        }
        *ext_no = Some(rec_no);
    }
    let ext = ext.get(..geo.rec_size).ok_or(Halt::Malformed)?;
    match find_attr(ext, ty, name, Some(vcn)) {
        Ok(Some((o, l))) => Ok(Some(Place::Ext(o, l))),
        Ok(None) => Ok(None),
        Err(e) => Err(ctx.malformed(0, format_args!("MFT record {rec_no}: {e}"))),
    }
}

fn place<'b>(p: Place, base: &'b [u8], ext: &'b [u8]) -> Option<&'b [u8]> {
    match p {
        Place::Base(o, l) => base.get(o..o.checked_add(l)?),
        Place::Ext(o, l) => ext.get(o..o.checked_add(l)?),
    }
}

/// Probes a volume whose primary boot sector, in `head`, says NTFS: from
/// the primary boot sector if the drivers accept it, else (as ntfs3 does)
/// from a valid backup boot sector.
pub(super) fn probe<R: ReadAt + ?Sized>(
    ctx: &mut Ctx<'_, R>,
    head: &[u8],
    rest: &mut [u8],
) -> Res<()> {
    let mut b = carve(rest).ok_or(Halt::Malformed)?;
    let boot = match boot_fields(head) {
        Ok(f) => f,
        Err((off, what)) => match find_backup(ctx, b.page)? {
            Some((f, at)) => {
                note_backup(ctx, at, what);
                f
            }
            None => {
                return Err(ctx.malformed(
                    off,
                    format_args!("{what}; no valid backup boot sector at the end of the device"),
                ))
            }
        },
    };
    probe_volume(ctx, &boot, &mut b)
}

/// Probes a volume whose primary boot sector is nothing snapguard knows:
/// ntfs3 mounts it from a valid NTFS backup boot sector (and rewrites the
/// primary). Leaves the report untouched when there is none.
pub(super) fn probe_backup<R: ReadAt + ?Sized>(ctx: &mut Ctx<'_, R>, rest: &mut [u8]) -> Res<()> {
    let mut b = carve(rest).ok_or(Halt::Malformed)?;
    let Some((boot, at)) = find_backup(ctx, b.page)? else {
        return Ok(());
    };
    ctx.rep.fs = super::FsKind::Ntfs;
    note_backup(ctx, at, "no NTFS OEM id");
    probe_volume(ctx, &boot, &mut b)
}

fn note_backup<R: ReadAt + ?Sized>(ctx: &mut Ctx<'_, R>, at: u64, why: &str) {
    let why = why.strip_prefix("NTFS boot sector: ").unwrap_or(why);
    ctx.note(
        EvidenceKind::Info,
        at,
        format_args!("backup boot sector used, primary has {why} (ntfs3 mounts from the backup, rewriting the primary)"),
    );
}

/// The checks of an NTFS volume with boot sector fields `boot`.
fn probe_volume<R: ReadAt + ?Sized>(
    ctx: &mut Ctx<'_, R>,
    boot: &Boot,
    b: &mut Bufs<'_>,
) -> Res<()> {
    let geo = match geometry(boot, ctx.len) {
        Ok(g) => g,
        Err((off, what)) => return Err(ctx.malformed(off, format_args!("{what}"))),
    };
    // Record 0 ($MFT) is read straight from the boot sector's cluster.
    let mft_off = geo.mft_lcn.saturating_mul(geo.cluster.get());
    let mft0 = b.mft0.get_mut(..geo.rec_size).ok_or(Halt::Malformed)?;
    ctx.read(mft_off, mft0)?;
    check_record(ctx, mft0, 0, mft_off)?;
    let steps: [Step; 3] = [Step::Volume, Step::LogFile, Step::Hiberfil];
    for step in steps {
        let r = match step {
            Step::Volume => check_volume(ctx, &geo, b),
            Step::LogFile => check_logfile(ctx, &geo, b),
            Step::Hiberfil => check_hiberfil(ctx, &geo, b),
        };
        match r {
            // One unparseable structure does not hide the others' evidence.
            Ok(()) | Err(Halt::Malformed) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Step {
    Volume,
    LogFile,
    Hiberfil,
}

/// `$Volume`'s `$VOLUME_INFORMATION` flags.
fn check_volume<R: ReadAt + ?Sized>(ctx: &mut Ctx<'_, R>, geo: &Geo, b: &mut Bufs<'_>) -> Res<()> {
    let off = read_record(ctx, geo, b.mft0, FILE_VOLUME, b.rec)?;
    let rec = b.rec.get(..geo.rec_size).ok_or(Halt::Malformed)?;
    let (ao, al) = match find_attr(rec, AT_VOLUME_INFORMATION, b"", None) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(ctx.malformed(off, format_args!("$Volume has no $VOLUME_INFORMATION")))
        }
        Err(e) => return Err(ctx.malformed(off, format_args!("$Volume: {e}"))),
    };
    let a = rec.get(ao..ao + al).ok_or(Halt::Malformed)?;
    let Some(v) = resident_value(a).filter(|v| v.len() >= 12) else {
        return Err(ctx.malformed(
            off,
            format_args!("$VOLUME_INFORMATION is not a resident 12-byte value"),
        ));
    };
    let flags = le16(v, 10);
    let at = off + (ao as u64) + u64::from(le16(a, 0x14)) + 10;
    if flags & VOLUME_IS_DIRTY != 0 {
        ctx.note(
            EvidenceKind::NtfsVolumeDirty,
            at,
            format_args!("$Volume flags {flags:#06x}: VOLUME_IS_DIRTY (mounted, or not cleanly unmounted; chkdsk pending)"),
        );
    }
    Ok(())
}

/// One consistent restart page.
#[derive(Clone, Copy)]
struct Restart {
    rstr: bool,
    lsn: u64,
    major: i16,
    minor: i16,
    in_use: u16,
    flags: u16,
    off: u64,
}

/// Number of significant bits of `v`.
fn bits(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// The restart page header and restart area checks of ntfs-3g's
/// `ntfs_check_restart_page_header` and `ntfs_check_restart_area`, on the
/// first 512 bytes of the page.
fn restart_header_ok(p: &[u8], pos: u64) -> Result<(), &'static str> {
    let sys = le32(p, 16);
    let logp = le32(p, 20);
    if sys < 512 || logp < 512 || !sys.is_power_of_two() || !logp.is_power_of_two() {
        return Err("unsupported page size");
    }
    if pos != 0 && pos != u64::from(sys) {
        return Err("restart page in the wrong position");
    }
    let ver = (le16(p, 28) as i16, le16(p, 26) as i16);
    if ver != (1, 1) && ver != (2, 0) {
        return Err("unsupported log version");
    }
    let chkd = has(p, 0, b"CHKD");
    let usa_count = usize::from(le16(p, 6));
    let ra = usize::from(le16(p, 24));
    if chkd && usa_count == 0 {
        if ra < 0x1E {
            return Err("bad restart area offset");
        }
    } else {
        let want = 1 + usize::try_from(sys / 512).unwrap_or(0);
        let usa_ofs = usize::from(le16(p, 4));
        let usa_end = usa_ofs + usa_count * 2;
        if usa_count != want || usa_ofs < 0x1E || usa_end > BLOCK - 2 {
            return Err("bad update sequence array");
        }
        if ra < usa_end {
            return Err("bad restart area offset");
        }
    }
    if ra % 8 != 0 || ra as u64 > u64::from(sys) {
        return Err("bad restart area offset");
    }
    if !chkd && le64(p, 8) != 0 {
        return Err("chkdsk LSN on a page chkdsk did not write");
    }
    // Restart area fields up to file_size lie in the first block.
    if ra + 0x18 > BLOCK - 2 {
        return Err("restart area beyond the first block");
    }
    let ca = usize::from(le16(p, ra + 0x16));
    if ca % 8 != 0 || ra + ca > BLOCK - 2 {
        return Err("bad client array offset");
    }
    let clients = usize::from(le16(p, ra + 8));
    let ra_len = ca + clients * LOG_CLIENT_RECORD_SIZE;
    let ra_len_field = usize::from(le16(p, ra + 0x14));
    let sys = usize::try_from(sys).unwrap_or(usize::MAX);
    if ra + ra_len > sys || ra + ra_len_field > sys || ra_len > ra_len_field {
        return Err("restart area out of bounds");
    }
    let free = le16(p, ra + 0x0A);
    let in_use = le16(p, ra + 0x0C);
    let nc = le16(p, ra + 8);
    if (free != LOGFILE_NO_CLIENT && free >= nc) || (in_use != LOGFILE_NO_CLIENT && in_use >= nc) {
        return Err("client lists overflow the client array");
    }
    if le32(p, ra + 0x10) != 67u32.wrapping_sub(bits(le64(p, ra + 0x18))) {
        return Err("inconsistent sequence number bits");
    }
    if le16(p, ra + 0x24) % 8 != 0 || le16(p, ra + 0x26) % 8 != 0 {
        return Err("misaligned log record header length or page data offset");
    }
    Ok(())
}

/// ntfs-3g's `ntfs_check_log_client_array`: both client lists walk the
/// array without loops or overflow. `p` is the (fixed-up) page read so far.
fn client_array_ok(p: &[u8]) -> bool {
    let ra = usize::from(le16(p, 24));
    let ca = ra + usize::from(le16(p, ra + 0x16));
    let nc = le16(p, ra + 8);
    for head in [le16(p, ra + 0x0A), le16(p, ra + 0x0C)] {
        let mut left = nc;
        let mut idx = head;
        let mut first = true;
        for _ in 0..MAX_LOG_CLIENTS {
            if idx == LOGFILE_NO_CLIENT {
                break;
            }
            if left == 0 || idx >= nc {
                return false;
            }
            let cr = ca + usize::from(idx) * LOG_CLIENT_RECORD_SIZE;
            if cr + LOG_CLIENT_RECORD_SIZE > p.len() {
                return false;
            }
            if first && le16(p, cr + 16) != LOGFILE_NO_CLIENT {
                return false;
            }
            first = false;
            left -= 1;
            idx = le16(p, cr + 18);
        }
        if idx != LOGFILE_NO_CLIENT {
            return false;
        }
    }
    true
}

/// `$LogFile`: finds the restart pages as ntfs-3g does and judges the more
/// recent one.
fn check_logfile<R: ReadAt + ?Sized>(ctx: &mut Ctx<'_, R>, geo: &Geo, b: &mut Bufs<'_>) -> Res<()> {
    let roff = read_record(ctx, geo, b.mft0, FILE_LOGFILE, b.rec)?;
    let rec = b.rec.get(..geo.rec_size).ok_or(Halt::Malformed)?;
    let Some(p) = locate(
        ctx,
        geo,
        b.mft0,
        rec,
        FILE_LOGFILE,
        b.ext,
        &mut b.ext_no,
        b.alist,
        AT_DATA,
        b"",
        0,
    )?
    else {
        return Err(ctx.malformed(roff, format_args!("$LogFile has no $DATA")));
    };
    let a = place(p, rec, b.ext).ok_or(Halt::Malformed)?;
    if byte(a, 8) == 0 || le64(a, 0x10) != 0 {
        return Err(ctx.malformed(
            roff,
            format_args!("$LogFile $DATA is resident or not at VCN 0"),
        ));
    }
    let size = le64(a, 0x30) & !(LOG_PAGE - 1);
    let init = le64(a, 0x38);
    if size < 2 * LOG_PAGE {
        return Err(ctx.malformed(roff, format_args!("$LogFile is too small ({size} bytes)")));
    }
    let mut empty = true;
    let mut found: [Option<Restart>; 2] = [None, None];
    let mut bad: Option<(u64, &'static str)> = None;
    for pos in RESTART_POSITIONS {
        if pos >= size {
            break;
        }
        let blk = b.page.get_mut(..BLOCK).ok_or(Halt::Malformed)?;
        let off = read_nonres(ctx, geo, a, pos, blk, Some(init), "$LogFile")?;
        if le32(blk, 0) == 0xFFFF_FFFF {
            if !empty {
                break;
            }
            continue;
        }
        empty = false;
        if has(blk, 0, b"RCRD") {
            break;
        }
        if !has(blk, 0, b"RSTR") && !has(blk, 0, b"CHKD") {
            continue;
        }
        if let Err(e) = restart_header_ok(blk, pos) {
            bad = Some((off, e));
            continue;
        }
        let sys = usize::try_from(le32(blk, 16)).unwrap_or(usize::MAX);
        let n = sys.min(HIBERFIL_HEADER);
        let pg = b.page.get_mut(..n).ok_or(Halt::Malformed)?;
        if n > BLOCK {
            read_nonres(ctx, geo, a, pos, pg, Some(init), "$LogFile")?;
        }
        let rstr = has(pg, 0, b"RSTR");
        let ra = usize::from(le16(pg, 24));
        // A multi-sector transfer error only matters (to ntfs-3g) when the
        // restart area crosses into the second block.
        if (rstr || le16(pg, 6) != 0)
            && fixup(pg, sys).is_err()
            && ra + usize::from(le16(pg, ra + 0x14)) > BLOCK - 2
        {
            bad = Some((off, "multi-sector transfer error in the restart page"));
            continue;
        }
        if rstr && le16(pg, ra + 0x0C) != LOGFILE_NO_CLIENT && !client_array_ok(pg) {
            bad = Some((off, "corrupt log client array"));
            continue;
        }
        let r = Restart {
            rstr,
            lsn: if rstr { le64(pg, ra) } else { le64(pg, 8) },
            major: le16(pg, 28) as i16,
            minor: le16(pg, 26) as i16,
            in_use: le16(pg, ra + 0x0C),
            flags: le16(pg, ra + 0x0E),
            off,
        };
        if found[0].is_none() {
            found[0] = Some(r);
        } else {
            found[1] = Some(r);
        }
        if pos != 0 {
            break;
        }
    }
    if empty {
        ctx.note(
            EvidenceKind::Info,
            roff,
            format_args!("$LogFile is empty (reset by chkdsk, ntfs-3g or mkntfs): clean"),
        );
        return Ok(());
    }
    let chosen = match found {
        [Some(a), Some(b2)] => {
            if b2.lsn > a.lsn {
                b2
            } else {
                a
            }
        }
        [Some(a), None] | [None, Some(a)] => a,
        [None, None] => {
            let (off, why) = bad.unwrap_or((roff, "no restart page"));
            return Err(ctx.malformed(
                off,
                format_args!("$LogFile is not empty but has no valid restart page ({why})"),
            ));
        }
    };
    let unclean = chosen.rstr
        && chosen.in_use != LOGFILE_NO_CLIENT
        && chosen.flags & RESTART_VOLUME_IS_CLEAN == 0;
    if (chosen.major, chosen.minor) == (2, 0) {
        ctx.note(
            EvidenceKind::LogFileFastStartup,
            chosen.off,
            format_args!("$LogFile restart page version 2.0: Windows Fast Startup/hibernation keeps this volume's metadata cached"),
        );
    }
    if unclean {
        ctx.note(
            EvidenceKind::LogFileUnclean,
            chosen.off,
            format_args!(
                "$LogFile client in use ({}) without the clean flag (flags {:#06x}): not cleanly unmounted",
                chosen.in_use, chosen.flags
            ),
        );
    } else if (chosen.major, chosen.minor) != (2, 0) {
        ctx.note(
            EvidenceKind::Info,
            chosen.off,
            format_args!(
                "$LogFile restart page version {}.{}: clean",
                chosen.major, chosen.minor
            ),
        );
    }
    Ok(())
}

/// ASCII upper case; other UTF-16 units compare as they are (snapguard does
/// not read `$UpCase`; only names that upcase into ASCII could sort wrong).
fn upcase(c: u16) -> u16 {
    if (u16::from(b'a')..=u16::from(b'z')).contains(&c) {
        c - 32
    } else {
        c
    }
}

/// Result of searching one index node.
enum Found {
    Entry(u64),
    Child(u64),
    Missing,
}

/// Searches the index entries `e` (from the first entry to the end of the
/// node) for `name`, in `$I30` filename collation order.
fn search_node(e: &[u8], name: &[u8]) -> Result<Found, &'static str> {
    let mut pos = 0usize;
    for _ in 0..MAX_INDEX_ENTRIES {
        let len = usize::from(le16(e, pos + 8));
        let flags = le16(e, pos + 12);
        if len < 16 || len % 8 != 0 || pos.saturating_add(len) > e.len() {
            return Err("bad index entry length");
        }
        let node = flags & 1 != 0;
        let child = || le64(e, pos + len - 8);
        if node && len < 24 {
            return Err("index node entry without a child VCN");
        }
        if flags & 2 != 0 {
            return Ok(if node {
                Found::Child(child())
            } else {
                Found::Missing
            });
        }
        let key = pos + 16;
        let key_len = usize::from(le16(e, pos + 10));
        let nl = usize::from(byte(e, key + 0x40));
        if key_len < 0x42 + 2 * nl || 16 + key_len > len {
            return Err("index entry key is not a file name");
        }
        let mut ord = core::cmp::Ordering::Equal;
        for i in 0..nl.min(name.len()) {
            let a = upcase(u16::from(name.get(i).copied().unwrap_or(0)));
            let b = upcase(le16(e, key + 0x42 + 2 * i));
            ord = a.cmp(&b);
            if ord.is_ne() {
                break;
            }
        }
        if ord.is_eq() {
            ord = name.len().cmp(&nl);
        }
        match ord {
            core::cmp::Ordering::Equal => return Ok(Found::Entry(le64(e, pos) & 0xFFFF_FFFF_FFFF)),
            core::cmp::Ordering::Less => {
                return Ok(if node {
                    Found::Child(child())
                } else {
                    Found::Missing
                })
            }
            core::cmp::Ordering::Greater => pos += len,
        }
    }
    Err("too many index entries in one node")
}

/// The entries of an index node whose INDEX_HEADER starts at `h` in `buf`.
fn node_entries(buf: &[u8], h: usize) -> Option<&[u8]> {
    let first = h.checked_add(usize::try_from(le32(buf, h)).ok()?)?;
    let end = h.checked_add(usize::try_from(le32(buf, h + 4)).ok()?)?;
    buf.get(first..end)
}

const HIBERFIL: &[u8] = b"hiberfil.sys";

/// Finds `hiberfil.sys` in the root directory index and reads its header.
fn check_hiberfil<R: ReadAt + ?Sized>(
    ctx: &mut Ctx<'_, R>,
    geo: &Geo,
    b: &mut Bufs<'_>,
) -> Res<()> {
    let roff = read_record(ctx, geo, b.mft0, FILE_ROOT, b.rec)?;
    let rec = b.rec.get(..geo.rec_size).ok_or(Halt::Malformed)?;
    let ir = match find_attr(rec, AT_INDEX_ROOT, b"$I30", None) {
        Ok(Some((o, l))) => rec.get(o..o + l).and_then(resident_value),
        Ok(None) => None,
        Err(e) => return Err(ctx.malformed(roff, format_args!("root directory: {e}"))),
    };
    let Some(ir) = ir else {
        return Err(ctx.malformed(
            roff,
            format_args!("root directory has no resident $INDEX_ROOT $I30"),
        ));
    };
    let idx_size = usize::try_from(le32(ir, 8)).unwrap_or(0);
    if idx_size != geo.idx_size {
        return Err(ctx.malformed(
            roff,
            format_args!(
                "root directory index block size {idx_size} differs from the boot sector's {}",
                geo.idx_size
            ),
        ));
    }
    let vcn_unit = if idx_size as u64 >= geo.cluster.get() {
        geo.cluster.get()
    } else {
        BLOCK as u64
    };
    let mut step = match node_entries(ir, 0x10)
        .ok_or("index root entries out of range")
        .and_then(|e| search_node(e, HIBERFIL))
    {
        Ok(f) => f,
        Err(e) => return Err(ctx.malformed(roff, format_args!("root directory $INDEX_ROOT: {e}"))),
    };
    let mut depth = 0;
    let mref = loop {
        let vcn = match step {
            Found::Entry(m) => break Some(m),
            Found::Missing => break None,
            Found::Child(v) => v,
        };
        depth += 1;
        if depth > MAX_INDEX_DEPTH {
            return Err(ctx.malformed(
                roff,
                format_args!("root directory index deeper than {MAX_INDEX_DEPTH} levels (loop?)"),
            ));
        }
        let pos = vcn.checked_mul(vcn_unit).ok_or(Halt::Malformed)?;
        let Some(p) = locate(
            ctx,
            geo,
            b.mft0,
            rec,
            FILE_ROOT,
            b.ext,
            &mut b.ext_no,
            b.alist,
            AT_INDEX_ALLOCATION,
            b"$I30",
            pos / geo.cluster,
        )?
        else {
            return Err(ctx.malformed(
                roff,
                format_args!("root directory: no $INDEX_ALLOCATION for index VCN {vcn}"),
            ));
        };
        let a = place(p, rec, b.ext).ok_or(Halt::Malformed)?;
        let init = if le64(a, 0x10) == 0 {
            Some(le64(a, 0x38))
        } else {
            None
        };
        let blk = b.page.get_mut(..idx_size).ok_or(Halt::Malformed)?;
        let off = read_nonres(
            ctx,
            geo,
            a,
            pos,
            blk,
            init,
            "root directory $INDEX_ALLOCATION",
        )?;
        if !has(blk, 0, b"INDX") || fixup(blk, idx_size).is_err() || le64(blk, 0x10) != vcn {
            return Err(ctx.malformed(
                off,
                format_args!("root directory index block at VCN {vcn} is not a valid INDX record"),
            ));
        }
        step = match node_entries(blk, 0x18)
            .ok_or("index block entries out of range")
            .and_then(|e| search_node(e, HIBERFIL))
        {
            Ok(f) => f,
            Err(e) => {
                return Err(ctx.malformed(
                    off,
                    format_args!("root directory index block at VCN {vcn}: {e}"),
                ))
            }
        };
    };
    let Some(hno) = mref else {
        ctx.note(
            EvidenceKind::Info,
            roff,
            format_args!("no hiberfil.sys in the root directory"),
        );
        return Ok(());
    };
    let hoff = read_record(ctx, geo, b.mft0, hno, b.rec)?;
    let rec = b.rec.get(..geo.rec_size).ok_or(Halt::Malformed)?;
    if le16(rec, 0x16) & 2 != 0 {
        ctx.note(
            EvidenceKind::Info,
            hoff,
            format_args!("hiberfil.sys is a directory: not a hibernation file"),
        );
        return Ok(());
    }
    let Some(p) = locate(
        ctx,
        geo,
        b.mft0,
        rec,
        hno,
        b.ext,
        &mut b.ext_no,
        b.alist,
        AT_DATA,
        b"",
        0,
    )?
    else {
        return Err(ctx.malformed(
            hoff,
            format_args!("hiberfil.sys (MFT record {hno}) has no $DATA"),
        ));
    };
    let a = place(p, rec, b.ext).ok_or(Halt::Malformed)?;
    let hdr_buf = b.page.get_mut(..HIBERFIL_HEADER).ok_or(Halt::Malformed)?;
    let (size, at) = match resident_value(a) {
        Some(v) => {
            let n = v.len().min(HIBERFIL_HEADER);
            hdr_buf.fill(0);
            if let (Some(d), Some(s)) = (hdr_buf.get_mut(..n), v.get(..n)) {
                d.copy_from_slice(s);
            }
            (v.len() as u64, hoff)
        }
        None => {
            if le16(a, 0x0C) & 0x40FF != 0 || le64(a, 0x10) != 0 {
                return Err(ctx.malformed(
                    hoff,
                    format_args!(
                        "hiberfil.sys $DATA is compressed or encrypted: header unreadable"
                    ),
                ));
            }
            let size = le64(a, 0x30);
            let n = usize::try_from(size)
                .unwrap_or(usize::MAX)
                .min(HIBERFIL_HEADER);
            hdr_buf.fill(0);
            let dst = hdr_buf.get_mut(..n).ok_or(Halt::Malformed)?;
            let at = read_nonres(ctx, geo, a, 0, dst, Some(le64(a, 0x38)), "hiberfil.sys")?;
            (size, at)
        }
    };
    let hdr: &[u8] = hdr_buf;
    if size < HIBERFIL_HEADER as u64 {
        ctx.note(
            EvidenceKind::HiberfileShort,
            at,
            format_args!("hiberfil.sys is only {size} bytes (< 4 KiB): Windows hibernated with this non-system volume in use"),
        );
    } else if has(hdr, 0, b"hibr") || has(hdr, 0, b"HIBR") {
        ctx.note(
            EvidenceKind::HiberfileLive,
            at,
            format_args!(
                "hiberfil.sys header '{}': Windows is hibernated (or Fast Startup) on this volume",
                sig(hdr)
            ),
        );
    } else if has(hdr, 0, b"RSTR") {
        ctx.note(
            EvidenceKind::HiberfileResuming,
            at,
            format_args!("hiberfil.sys header 'RSTR': a resume from this image began and may not have finished"),
        );
    } else if has(hdr, 0, b"wake") || has(hdr, 0, b"WAKE") {
        ctx.note(
            EvidenceKind::HiberfileSpent,
            at,
            format_args!("hiberfil.sys header '{}': spent image", sig(hdr)),
        );
    } else if hdr.iter().all(|&x| x == 0) {
        ctx.note(
            EvidenceKind::HiberfileSpent,
            at,
            format_args!("hiberfil.sys header is all zero: spent image"),
        );
    } else {
        ctx.note(
            EvidenceKind::HiberfileUnknown,
            at,
            format_args!(
                "hiberfil.sys header {:02x?} is neither zero nor a known signature",
                hdr.get(..4).unwrap_or(&[])
            ),
        );
    }
    Ok(())
}

/// The first four header bytes as text (they are ASCII when called).
fn sig(hdr: &[u8]) -> &str {
    hdr.get(..4)
        .and_then(|s| core::str::from_utf8(s).ok())
        .unwrap_or("?")
}
