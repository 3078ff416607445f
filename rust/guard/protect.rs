// SPDX-License-Identifier: GPL-2.0

//! Block-layer protection: a device that shows a sleeping OS is made
//! read-only at the block layer (the `BLKROSET` state), so that programs
//! that write the device without mounting it (`ntfs-3g -o
//! remove_hiberfile`, `fsck`, `mkfs`, `dd`) fail too, not only mounts.
//!
//! Devices are looked at when the module loads ([`Protection::start`]),
//! whenever the mount guard's machine scan probes them ([`note`]), and when
//! a device is written to the `protect` knob (the udev rule does that
//! through `snapguard probe --protect` for new and changed devices). The
//! user lifts it with the `unprotect` knob (or `allow_once`, or `blockdev
//! --setrw`); it stays lifted for that medium. A read-only state snapguard
//! did not set is never cleared. See `Documentation/mount-guard.rst`,
//! "Block-layer protection".

use super::evidence::{self, Summary};
use crate::kbind::bdev::{self, BdevFile, DevT};
use crate::kbind::text::Text;
use core::fmt::Write;
use kernel::prelude::*;

/// At most this many devices are remembered (marked or unprotected).
const SLOTS: usize = 64;
/// At most this many block devices are looked at by the load-time scan.
const MAX_SCAN: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// snapguard set the device's read-only flag.
    Marked,
    /// The user lifted the protection (or allowed a mount) for this medium.
    Unprotected,
}

/// One remembered device.
///
/// # Invariants
///
/// `diskseq` is the disk sequence number the device had when the entry was
/// made: the entry is about that medium only.
struct Entry {
    dev: DevT,
    diskseq: u64,
    state: State,
    name: Text<32>,
}

struct Table {
    entries: [Option<Entry>; SLOTS],
}

kernel::sync::global_lock! {
    // SAFETY: initialised in `init` (called from `guard::init`) before the
    // knobs exist and before any scan.
    unsafe(uninit) static TABLE: Mutex<Table> = Table { entries: [const { None }; SLOTS] };
}

/// Sets up the table. Call once, at module init, before the knobs.
pub(crate) fn init() {
    // SAFETY: called once, at module init, before any other use.
    unsafe { TABLE.init() };
}

/// What [`apply`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing: no sleeping OS on the device, or already handled.
    Nothing,
    /// The device was made read-only now.
    Marked,
}

const OVERRIDE: &str = "/sys/kernel/snapguard/guard/unprotect";

/// Brings the block-layer state of the open device `file` (number `dev`)
/// in line with its probe `summary`.
fn apply(file: &BdevFile, dev: DevT, summary: &Summary) -> Outcome {
    let diskseq = file.stamp().diskseq;
    let mut nb = [0u8; 32];
    let name = file.name(&mut nb);
    let mut t = TABLE.lock();
    forget_stale(&mut t, file, dev, diskseq, name);

    let sleeping = summary.sleeping_os && !file.is_active_swap();
    let known = t.entries.iter().position(|e| matches!(e, Some(e) if e.dev == dev));
    let Some(i) = known else {
        if !sleeping {
            return Outcome::Nothing;
        }
        return mark(&mut t, file, dev, diskseq, name, summary);
    };
    let Some(slot) = t.entries.get_mut(i) else { return Outcome::Nothing };
    let Some(e) = slot.as_mut() else { return Outcome::Nothing };
    if e.state == State::Marked && !file.ro_flag() {
        // Someone cleared our flag (`blockdev --setrw`): an override.
        e.state = State::Unprotected;
        pr_info!("{}: read-only state cleared by someone else; taken as an override\n", name);
    }
    if !sleeping {
        // The evidence is gone: so is the reason for our mark, and an
        // override ends with it.
        if e.state == State::Marked {
            file.set_ro_flag(false);
            pr_info!("{}: no sleeping OS any more; read-write again at the block layer\n", name);
        }
        *slot = None;
    }
    Outcome::Nothing
}

/// Forgets the entry about an earlier medium in device `dev` (a loop
/// device detached or re-attached, a disk swapped): it no longer holds. The
/// flag survives a loop detach, so a mark of ours is lifted with it.
fn forget_stale(t: &mut Table, file: &BdevFile, dev: DevT, diskseq: u64, name: &str) {
    let stale = t.entries.iter().position(|e| matches!(e, Some(e) if e.dev == dev && e.diskseq != diskseq));
    if let Some(slot) = stale.and_then(|i| t.entries.get_mut(i)) {
        if matches!(slot, Some(e) if e.state == State::Marked) && file.ro_flag() {
            file.set_ro_flag(false);
            pr_info!("{}: new medium; read-only state set by snapguard for the previous one lifted\n", name);
        }
        *slot = None;
    }
}

/// A read-write mount of `file` (device `dev`) is being checked: lift a
/// mark left from an earlier medium in the device, which would otherwise
/// make the mount fail with `EACCES` for a reason that no longer holds.
/// (The device being mounted is not marked here: the guard refuses the
/// mount itself, with its reason.)
pub(crate) fn refresh(file: &BdevFile, dev: DevT) {
    let diskseq = file.stamp().diskseq;
    let mut nb = [0u8; 32];
    let name = file.name(&mut nb);
    let mut t = TABLE.lock();
    forget_stale(&mut t, file, dev, diskseq, name);
}

/// Marks `file` read-only and remembers it (the caller checked there is
/// no entry for `dev`).
fn mark(t: &mut Table, file: &BdevFile, dev: DevT, diskseq: u64, name: &str, summary: &Summary) -> Outcome {
    if !super::enforcing() {
        // `mode` audit or off: the guard refuses nothing, so neither does
        // the block layer on its behalf (marks already set stay).
        return Outcome::Nothing;
    }
    if file.is_read_only() {
        // Read-only already, by the user, the disk or the driver: not ours
        // to set, nor ever to clear.
        return Outcome::Nothing;
    }
    if file.has_holder() {
        // Mounted, swap, stacked under device-mapper or md, or opened
        // exclusively (fsck): failing its writes midway would do the very
        // damage this is about. Looked at again by the next scan.
        pr_info!("{}: sleeping OS on it, but it is in use; not made read-only at the block layer\n", name);
        return Outcome::Nothing;
    }
    let Some(slot) = t.entries.iter_mut().find(|e| e.is_none()) else {
        pr_warn!("{}: sleeping OS on it, but {} devices are protected already; not made read-only\n", name, SLOTS);
        return Outcome::Nothing;
    };
    file.set_ro_flag(true);
    let mut n = Text::new();
    let _ = n.write_str(name);
    *slot = Some(Entry { dev, diskseq, state: State::Marked, name: n });
    pr_warn!(
        "{}: made read-only at the block layer (every writer fails): {} {}; remedy: {}; override: echo {} > {}\n",
        name,
        summary.fs,
        summary.text.as_str(),
        summary.remedy,
        name,
        OVERRIDE
    );
    Outcome::Marked
}

/// The mount guard's machine scan probed `file` (device `dev`).
pub(crate) fn note(file: &BdevFile, dev: DevT, summary: &Summary) {
    apply(file, dev, summary);
}

/// Opens and probes `dev`, then applies the result.
fn probe_dev(dev: DevT) -> Result<Outcome> {
    let file = BdevFile::open_read(dev)?;
    if file.size() == 0 {
        return Ok(Outcome::Nothing);
    }
    let summary = evidence::probe(&file)?;
    Ok(apply(&file, dev, &summary))
}

/// Looks at every block device once (module load). Returns how many were
/// made read-only.
fn scan_all() -> usize {
    let mut devs: KVec<DevT> = KVec::new();
    // Collect first: probing opens devices, which must not happen inside
    // the class iteration.
    let walk = bdev::for_each_block_device(MAX_SCAN, |d, st| {
        if st.size > 0 {
            let _ = devs.push(d, GFP_KERNEL);
        }
        true
    });
    if walk.is_err() {
        return 0;
    }
    devs.iter().filter(|d| matches!(probe_dev(**d), Ok(Outcome::Marked))).count()
}

/// The user lifts the protection of `dev` (the `unprotect` knob, or
/// `allow_once`): clears the read-only flag if snapguard set it, and
/// remembers the override for the device's current medium so that no later
/// scan marks it again.
pub(crate) fn user_override(dev: DevT) -> Result {
    // A device that cannot be opened (no medium) has nothing to lift.
    let Ok(file) = BdevFile::open_read(dev) else { return Ok(()) };
    let diskseq = file.stamp().diskseq;
    let mut nb = [0u8; 32];
    let name = file.name(&mut nb);
    let mut t = TABLE.lock();
    let known = t.entries.iter().position(|e| matches!(e, Some(e) if e.dev == dev));
    if let Some(slot) = known.and_then(|i| t.entries.get_mut(i)) {
        match slot {
            Some(e) if e.diskseq == diskseq => {
                if e.state == State::Marked {
                    if file.ro_flag() {
                        file.set_ro_flag(false);
                    }
                    pr_warn!("{}: read-only state lifted by the user\n", name);
                }
                e.state = State::Unprotected;
                return Ok(());
            }
            _ => *slot = None,
        }
    }
    let slot = t.entries.iter_mut().find(|e| e.is_none()).ok_or(ENOSPC)?;
    let mut n = Text::new();
    let _ = n.write_str(name);
    *slot = Some(Entry { dev, diskseq, state: State::Unprotected, name: n });
    if file.is_read_only() {
        pr_info!("{}: read-only, but not by snapguard: left as it is (blockdev --setrw lifts it)\n", name);
    }
    Ok(())
}

/// Resolves `sdb1`, `/dev/sdb1` or `8:17` to a device number.
fn resolve(input: &[u8]) -> Result<DevT> {
    if input.is_empty() || input.len() > 64 || input.iter().any(|c| c.is_ascii_whitespace() || *c == 0) {
        return Err(EINVAL);
    }
    if let Some(colon) = input.iter().position(|&c| c == b':') {
        let num = |s: &[u8]| -> Option<u32> {
            if s.is_empty() || s.len() > 7 || !s.iter().all(u8::is_ascii_digit) {
                return None;
            }
            s.iter().try_fold(0u32, |a, &d| a.checked_mul(10)?.checked_add(u32::from(d - b'0')))
        };
        let ma = num(input.get(..colon).ok_or(EINVAL)?).ok_or(EINVAL)?;
        let mi = num(input.get(colon + 1..).ok_or(EINVAL)?).ok_or(EINVAL)?;
        return bdev::mkdev(ma, mi).ok_or(EINVAL);
    }
    let mut path = [0u8; 80];
    let prefix: &[u8] = if input.first() == Some(&b'/') { b"" } else { b"/dev/" };
    let total = prefix.len() + input.len();
    path.get_mut(..prefix.len()).ok_or(EINVAL)?.copy_from_slice(prefix);
    path.get_mut(prefix.len()..total).ok_or(EINVAL)?.copy_from_slice(input);
    let c = CStr::from_bytes_with_nul(path.get(..=total).ok_or(EINVAL)?).map_err(|_| EINVAL)?;
    bdev::lookup(c).map_err(|_| ENODEV)
}

/// `protect` (read): one line per remembered device, `MAJ:MIN NAME
/// protected|unprotected`.
pub(crate) fn show_protect(w: &mut dyn Write) -> Result {
    let t = TABLE.lock();
    for e in t.entries.iter().flatten() {
        let (ma, mi) = bdev::dev_parts(e.dev);
        let st = match e.state {
            State::Marked => "protected",
            State::Unprotected => "unprotected",
        };
        writeln!(w, "{ma}:{mi} {} {st}", e.name).map_err(|_| EINVAL)?;
    }
    Ok(())
}

/// `protect` (write): probe this device now and protect it if it shows a
/// sleeping OS (what the udev rule asks for a new or changed device).
pub(crate) fn store_protect(input: &[u8]) -> Result {
    probe_dev(resolve(input)?).map(drop)
}

/// `unprotect` (read): nothing to show; `protect` lists the state.
pub(crate) fn show_unprotect(_w: &mut dyn Write) -> Result {
    Ok(())
}

/// `unprotect` (write): lift the protection of this device.
pub(crate) fn store_unprotect(input: &[u8]) -> Result {
    user_override(resolve(input)?)
}

/// The load-time scan, and on drop (module unload) the release of every
/// read-only state snapguard set: without the module there is no knob to
/// lift it with.
pub(crate) struct Protection;

impl Protection {
    /// Looks at every block device and protects those with a sleeping OS.
    pub(crate) fn start() -> Self {
        let n = scan_all();
        if n > 0 {
            pr_info!("{} device(s) made read-only at the block layer\n", n);
        }
        Protection
    }
}

impl Drop for Protection {
    fn drop(&mut self) {
        let mut t = TABLE.lock();
        for slot in t.entries.iter_mut() {
            if let Some(e) = slot.take() {
                if e.state != State::Marked {
                    continue;
                }
                // Also on a later medium: the flag survives a loop detach.
                let Ok(file) = BdevFile::open_read(e.dev) else { continue };
                if file.ro_flag() {
                    file.set_ro_flag(false);
                    pr_info!("{}: read-only state set by snapguard lifted (unloading)\n", e.name.as_str());
                }
            }
        }
    }
}
