// SPDX-License-Identifier: GPL-2.0

//! The mount guard's decision: may this read-write mount go ahead?
//!
//! Called from the trampolines in [`fshook`] before the file system
//! touches the device. Reads the volume (and, with the `machine` policy,
//! every other block device) through the block layer, runs the shared
//! detector (via [`evidence`]), and refuses with `EROFS` so that
//! util-linux `mount` falls back to read-only by itself.

pub(crate) mod evidence;
pub(crate) mod fshook;
pub(crate) mod protect;

use crate::kbind::bdev::{self, BdevFile, DevT};
use crate::kbind::sys;
use crate::kbind::sysfs::Knob;
use crate::kbind::text::Text;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use evidence::{Prober, Verdict};
use kernel::ffi::c_int;
use kernel::prelude::*;

// ---------------------------------------------------------------- knobs

/// A knob whose value is one of a fixed list of words.
struct Choice {
    names: &'static [&'static str],
    value: AtomicU8,
}

impl Choice {
    const fn new(names: &'static [&'static str]) -> Self {
        Choice { names, value: AtomicU8::new(0) }
    }
    fn get(&self) -> usize {
        usize::from(self.value.load(Ordering::Relaxed))
    }
    fn show(&self, w: &mut dyn Write) -> Result {
        for (i, n) in self.names.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let r = if i == self.get() { write!(w, "{sep}[{n}]") } else { write!(w, "{sep}{n}") };
            r.map_err(|_| EINVAL)?;
        }
        writeln!(w).map_err(|_| EINVAL)
    }
    fn store(&self, input: &[u8]) -> Result {
        let i = self.names.iter().position(|n| n.as_bytes() == input).ok_or(EINVAL)?;
        self.value.store(u8::try_from(i).map_err(|_| EINVAL)?, Ordering::Relaxed);
        Ok(())
    }
}

/// `mode`: 0 enforce, 1 audit, 2 off.
static MODE: Choice = Choice::new(&["enforce", "audit", "off"]);
const MODE_AUDIT: usize = 1;
const MODE_OFF: usize = 2;
/// `policy`: 0 machine, 1 volume.
static POLICY: Choice = Choice::new(&["machine", "volume"]);
const POLICY_MACHINE: usize = 0;
/// `unclean`: 0 refuse, 1 allow.
static UNCLEAN: Choice = Choice::new(&["refuse", "allow"]);
const UNCLEAN_REFUSE: usize = 0;

static CHECKED: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
static OVERRIDDEN: AtomicU64 = AtomicU64::new(0);
static AUDITED: AtomicU64 = AtomicU64::new(0);
static PROBE_ERRORS: AtomicU64 = AtomicU64::new(0);
static DEVICES_PROBED: AtomicU64 = AtomicU64::new(0);
static NOT_CHECKED: AtomicU64 = AtomicU64::new(0);
/// Tickets of the `allow_once` entries that mounts under way are using.
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

/// One `allow_once` entry: the device and what it was when the entry was
/// written. It lets one read-write mount of that same device through.
struct Allow {
    dev: DevT,
    /// The device's disk sequence number when the entry was written.
    diskseq: u64,
    /// The digest of the probe when the entry was written (the blocks the
    /// detector read, see [`evidence::Probe`]).
    digest: u64,
    /// What was written, for the listing.
    name: Text<32>,
    /// The mount under way that this entry let through, if any.
    ticket: Option<u64>,
}

/// Pending `allow_once` entries and the last refusal, under one lock. The
/// lock is never held across I/O: a sysfs read never waits for a device.
struct Shared {
    allow: [Option<Allow>; MAX_ALLOW],
    last_refusal: Text<1024>,
}

const MAX_ALLOW: usize = 8;
/// The machine scan looks at every block device; past this many it stops
/// and, since it could not look at them all, refuses (no system has this
/// many block devices: minor numbers have 20 bits).
const MAX_SCAN: usize = 1 << 20;

kernel::sync::global_lock! {
    // SAFETY: initialised in `init` before first use.
    unsafe(uninit) static SHARED: Mutex<Shared> = Shared {
        allow: [const { None }; MAX_ALLOW],
        last_refusal: Text::new(),
    };
}

fn show_mode(w: &mut dyn Write) -> Result {
    MODE.show(w)
}
fn store_mode(i: &[u8]) -> Result {
    MODE.store(i)
}
fn show_policy(w: &mut dyn Write) -> Result {
    POLICY.show(w)
}
fn store_policy(i: &[u8]) -> Result {
    POLICY.store(i)
}
fn show_unclean(w: &mut dyn Write) -> Result {
    UNCLEAN.show(w)
}
fn store_unclean(i: &[u8]) -> Result {
    UNCLEAN.store(i)
}

fn show_stats(w: &mut dyn Write) -> Result {
    let r = (|| -> core::fmt::Result {
        writeln!(w, "checked {}", CHECKED.load(Ordering::Relaxed))?;
        writeln!(w, "refused {}", REFUSED.load(Ordering::Relaxed))?;
        writeln!(w, "allowed_override {}", OVERRIDDEN.load(Ordering::Relaxed))?;
        writeln!(w, "audit_only {}", AUDITED.load(Ordering::Relaxed))?;
        writeln!(w, "probe_errors {}", PROBE_ERRORS.load(Ordering::Relaxed))?;
        writeln!(w, "devices_probed {}", DEVICES_PROBED.load(Ordering::Relaxed))?;
        writeln!(w, "devices_not_checked {}", NOT_CHECKED.load(Ordering::Relaxed))
    })();
    r.map_err(|_| EINVAL)
}

fn show_last_refusal(w: &mut dyn Write) -> Result {
    let s = SHARED.lock();
    if s.last_refusal.is_empty() {
        return Ok(());
    }
    writeln!(w, "{}", s.last_refusal).map_err(|_| EINVAL)
}

fn show_allow_once(w: &mut dyn Write) -> Result {
    let s = SHARED.lock();
    for a in s.allow.iter().flatten() {
        let (ma, mi) = bdev::dev_parts(a.dev);
        writeln!(w, "{ma}:{mi} {}", a.name).map_err(|_| EINVAL)?;
    }
    Ok(())
}

/// Parses `MAJ:MIN`; `None` if it is not of that form.
fn parse_majmin(input: &[u8]) -> Option<Result<DevT>> {
    let colon = input.iter().position(|&c| c == b':')?;
    let (ma, mi) = (input.get(..colon)?, input.get(colon + 1..)?);
    let num = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || s.len() > 7 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        s.iter().try_fold(0u32, |a, &d| a.checked_mul(10)?.checked_add(u32::from(d - b'0')))
    };
    Some(match (num(ma), num(mi)) {
        (Some(a), Some(b)) => bdev::mkdev(a, b).ok_or(EINVAL),
        _ => Err(EINVAL),
    })
}

/// `allow_once`: `clear`, or a device (`sdb1`, `/dev/sdb1`, `8:17`) that
/// must exist now. The entry records the device's identity now (disk
/// sequence number and a probe's digest) and only lets the same contents
/// through. Errors: `EINVAL` (malformed), `ENODEV` (no such device, or no
/// medium),
/// `EBUSY` (the device is suspended: it cannot be read; or a mount is
/// using its entry), `ENOSPC` (8 entries pending), `ENOMEM`.
fn store_allow_once(input: &[u8]) -> Result {
    if input == b"clear" {
        SHARED.lock().allow = [const { None }; MAX_ALLOW];
        return Ok(());
    }
    if input.is_empty() || input.len() > 64 || input.iter().any(|c| c.is_ascii_whitespace() || *c == 0) {
        return Err(EINVAL);
    }
    let text = core::str::from_utf8(input).map_err(|_| EINVAL)?;
    let dev = match parse_majmin(input) {
        Some(r) => r?,
        None => {
            // A name (`sdb1`) or a path (`/dev/sdb1`): resolve the path.
            let mut path = [0u8; 80];
            let prefix: &[u8] = if input.first() == Some(&b'/') { b"" } else { b"/dev/" };
            let total = prefix.len() + input.len();
            path.get_mut(..prefix.len()).ok_or(EINVAL)?.copy_from_slice(prefix);
            path.get_mut(prefix.len()..total).ok_or(EINVAL)?.copy_from_slice(input);
            let c = CStr::from_bytes_with_nul(path.get(..=total).ok_or(EINVAL)?).map_err(|_| EINVAL)?;
            bdev::lookup(c).map_err(|_| ENODEV)?
        }
    };
    if bdev::io_held_by(dev).is_some() {
        return Err(EBUSY);
    }
    // The device must exist now; the entry is for what it holds now.
    let file = BdevFile::open_read(dev).map_err(|_| ENODEV)?;
    if file.size() == 0 {
        return Err(ENODEV);
    }
    let mut prober = Prober::new()?;
    let probe = prober.probe(&file);
    let diskseq = file.diskseq();
    let mut name = Text::<32>::new();
    let _ = name.write_str(text);
    // A mount cannot be read-write on a device that is read-only at the
    // block layer: allowing it lifts snapguard's protection too.
    protect::user_override(dev)?;
    let mut s = SHARED.lock();
    // A new entry for the same device replaces the old one (same identity
    // or a newer one), unless a mount is using the old one right now.
    let slot = match s.allow.iter().position(|e| matches!(e, Some(a) if a.dev == dev)) {
        Some(i) => {
            if matches!(s.allow.get(i), Some(Some(a)) if a.ticket.is_some()) {
                return Err(EBUSY);
            }
            i
        }
        None => s.allow.iter().position(Option::is_none).ok_or(ENOSPC)?,
    };
    if let Some(e) = s.allow.get_mut(slot) {
        *e = Some(Allow { dev, diskseq, digest: probe.digest, name, ticket: None });
    }
    Ok(())
}

/// The files in `/sys/kernel/snapguard/guard/`.
pub(crate) static GUARD_KNOBS: [Knob; 8] = [
    Knob { name: c"mode", show: show_mode, store: Some(store_mode) },
    Knob { name: c"policy", show: show_policy, store: Some(store_policy) },
    Knob { name: c"unclean", show: show_unclean, store: Some(store_unclean) },
    Knob { name: c"allow_once", show: show_allow_once, store: Some(store_allow_once) },
    Knob { name: c"stats", show: show_stats, store: None },
    Knob { name: c"last_refusal", show: show_last_refusal, store: None },
    Knob { name: c"protect", show: protect::show_protect, store: Some(protect::store_protect) },
    Knob { name: c"unprotect", show: protect::show_unprotect, store: Some(protect::store_unprotect) },
];

/// Whether the guard enforces (`mode` is `enforce`): block-layer
/// protection ([`protect`]) marks devices only then.
pub(crate) fn enforcing() -> bool {
    MODE.get() == 0
}

/// Sets up the guard's shared state. Call once, before the hooks.
pub(crate) fn init() {
    // SAFETY: called once, at module init, before any other use.
    unsafe { SHARED.init() };
    protect::init();
}

// ---------------------------------------------------------------- checks

/// Whether read-write mounts are checked at all (`mode` is not `off`).
pub(crate) fn guarding() -> bool {
    MODE.get() != MODE_OFF
}

/// A read-write mount that may go on.
///
/// It holds the checked device open until the file system's operation has
/// returned, so the blocks the probe read stay in the device's page cache
/// for the file system (the last close of a block device drops its page
/// cache). If an `allow_once` entry let the mount through, the entry is
/// used up only when [`Pass::done`] reports success; a failed mount, or a
/// `Pass` dropped without `done`, leaves it for the next attempt.
pub(crate) struct Pass {
    _file: Option<BdevFile>,
    /// The ticket of the `allow_once` entry this mount uses.
    ticket: Option<u64>,
}

impl Pass {
    /// Whether `bdev` is the device that was checked and is held open;
    /// also true when none is held (audit mode let through a device that
    /// could not be opened: there is nothing to compare with).
    pub(crate) fn is(&self, bdev: *const sys::block_device) -> bool {
        self._file.as_ref().is_none_or(|f| f.is(bdev))
    }

    /// The file system's `get_tree` or `reconfigure` returned `ret`.
    pub(crate) fn done(mut self, ret: c_int) {
        if let Some(t) = self.ticket.take() {
            finish_allow(t, ret == 0);
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            finish_allow(t, false);
        }
    }
}

/// Uses up (`ok`) or releases the `allow_once` entry holding `ticket`.
fn finish_allow(ticket: u64, ok: bool) {
    let mut s = SHARED.lock();
    let Some(e) = s.allow.iter_mut().find(|e| matches!(e, Some(a) if a.ticket == Some(ticket))) else { return };
    if ok {
        if let Some(a) = e.take() {
            OVERRIDDEN.fetch_add(1, Ordering::Relaxed);
            pr_info!("allow_once entry for {} used\n", a.name.as_str());
        }
    } else if let Some(a) = e.as_mut() {
        a.ticket = None;
        pr_info!("read-write mount of {} failed; its allow_once entry is kept\n", a.name.as_str());
    }
}

/// A read-write mount of `source` is being set up. On yes, the caller
/// holds the returned [`Pass`] across the file system's `get_tree` and
/// then hands it back with [`Pass::done`].
pub(crate) fn check_new_mount(fc: *mut sys::fs_context, source: &CStr, fs: &CStr) -> Result<Option<Pass>> {
    if MODE.get() == MODE_OFF {
        return Ok(None);
    }
    // A source that is not a block device path is the file system's
    // business: it fails the same lookup itself.
    let Ok(dev) = bdev::lookup(source) else { return Ok(None) };
    check(fc, dev, fs, "mount").map(Some)
}

/// A read-only mount of device `dev` is being remounted read-write. On
/// yes, as for [`check_new_mount`] (around `reconfigure`).
pub(crate) fn check_remount(fc: *mut sys::fs_context, dev: DevT, fs: &CStr) -> Result<Option<Pass>> {
    if MODE.get() == MODE_OFF {
        return Ok(None);
    }
    check(fc, dev, fs, "remount").map(Some)
}

/// Why a mount would be refused: the reasons so far and the first remedy.
struct Reasons {
    text: Text<768>,
    remedy: &'static str,
    /// Whether any reason is evidence (not only devices not checked).
    evidence: bool,
}

impl Reasons {
    /// Adds evidence found on a device.
    fn evidence(&mut self, remedy: &'static str, args: core::fmt::Arguments<'_>) {
        self.evidence = true;
        self.add(remedy, args);
    }

    /// Adds a device that could not be checked.
    fn add(&mut self, remedy: &'static str, args: core::fmt::Arguments<'_>) {
        let sep = if self.text.is_empty() { "" } else { "; " };
        let _ = write!(self.text, "{sep}{args}");
        if self.remedy.is_empty() {
            self.remedy = remedy;
        }
    }
}

const REMEDY_SUSPENDED: &str =
    "resume it (dmsetup resume, cryptsetup luksResume), or mount read-only";
const REMEDY_UNREADABLE: &str =
    "check the device (its I/O errors are in dmesg) and try again, or mount read-only";
const REMEDY_SCAN: &str = "make the device readable (resume or detach it), or use policy=volume \
     (echo volume > /sys/kernel/snapguard/guard/policy) to check only the volume being mounted";

/// Names device `dev` as `MAJ:MIN` into `buf`.
fn dev_label(dev: DevT, buf: &mut Text<32>) {
    let (ma, mi) = bdev::dev_parts(dev);
    let _ = write!(buf, "{ma}:{mi}");
}

/// Names device-mapper device `dev` as the kernel does (`dm-N`) into `buf`.
fn dm_label(dev: DevT, buf: &mut Text<32>) {
    let _ = write!(buf, "dm-{}", bdev::dev_parts(dev).1);
}

/// Decides on a read-write `what` of `dev`.
fn check(fc: *mut sys::fs_context, dev: DevT, fs: &CStr, what: &str) -> Result<Pass> {
    CHECKED.fetch_add(1, Ordering::Relaxed);
    let fs = fs.to_str().unwrap_or("?");
    let mut reasons = KBox::new(Reasons { text: Text::new(), remedy: "", evidence: false }, GFP_KERNEL)?;
    let mut prober = Prober::new()?;
    let mut name = Text::<32>::new();
    let mut digest = None;
    let mut diskseq = 0;

    // The volume itself, probed fresh every time: a cached answer cannot
    // know about every way its contents can change (writes through a
    // loop device's backing file, a new dm table, a loop offset...).
    let file = match BdevFile::open_read(dev) {
        Ok(f) => Some(f),
        Err(e) => {
            PROBE_ERRORS.fetch_add(1, Ordering::Relaxed);
            dev_label(dev, &mut name);
            reasons.add(REMEDY_UNREADABLE, format_args!("cannot open {name} to check it ({e:?})"));
            None
        }
    };
    if let Some(f) = file.as_ref() {
        protect::refresh(f, dev);
        let mut nb = [0u8; 32];
        let _ = name.write_str(f.name(&mut nb));
        diskseq = f.diskseq();
        if let Some(h) = bdev::io_held_by(dev) {
            let mut hl = Text::<32>::new();
            dm_label(h, &mut hl);
            reasons.add(REMEDY_SUSPENDED, format_args!("{name} cannot be read: device-mapper device {hl} is suspended"));
        } else {
            DEVICES_PROBED.fetch_add(1, Ordering::Relaxed);
            let p = prober.probe(f);
            digest = Some(p.digest);
            match p.outcome {
                Ok(own) => {
                    let refuse = match own.verdict {
                        Verdict::Hibernated => true,
                        Verdict::Unclean | Verdict::Corrupt => UNCLEAN.get() == UNCLEAN_REFUSE,
                        Verdict::Clean | Verdict::Unsupported => false,
                    };
                    if refuse {
                        reasons.evidence(own.remedy, format_args!("{} {}: {}", own.fs, own.verdict.as_str(), own.text));
                    }
                }
                Err(rf) => {
                    PROBE_ERRORS.fetch_add(1, Ordering::Relaxed);
                    reasons.add(
                        REMEDY_UNREADABLE,
                        format_args!(
                            "cannot read {name} at byte {:#x} (+{}): {:?}, so cannot tell whether it is safe to write",
                            rf.offset, rf.len, rf.err
                        ),
                    );
                }
            }
        }
        if POLICY.get() == POLICY_MACHINE {
            machine_scan(f, dev, &mut prober, &mut reasons);
        }
    }

    if reasons.text.is_empty() {
        return Ok(Pass { _file: file, ticket: None });
    }

    // Would be refused: audit mode only logs it (an allow_once entry is
    // left alone), an allow_once entry for this very device lets it go.
    if MODE.get() == MODE_AUDIT {
        AUDITED.fetch_add(1, Ordering::Relaxed);
        pr_warn!("audit: would refuse read-write {} of {} ({}): {}\n", what, name.as_str(), fs, reasons.text.as_str());
        return Ok(Pass { _file: file, ticket: None });
    }
    // (An entry for a device that could not be read now is left alone.)
    let mut s = SHARED.lock();
    let entry = s.allow.iter().position(|e| matches!(e, Some(a) if a.dev == dev && a.ticket.is_none()));
    if let Some(i) = entry.filter(|_| digest.is_some()) {
        let same = matches!(s.allow.get(i), Some(Some(a)) if Some(a.digest) == digest && a.diskseq == diskseq);
        if same {
            let t = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
            if let Some(Some(a)) = s.allow.get_mut(i) {
                a.ticket = Some(t);
            }
            drop(s);
            pr_warn!("allowing read-write {} of {} ({}) by allow_once despite: {}\n", what, name.as_str(), fs, reasons.text.as_str());
            return Ok(Pass { _file: file, ticket: Some(t) });
        }
        if let Some(e) = s.allow.get_mut(i) {
            *e = None;
        }
        pr_warn!("allow_once entry for {} dropped: the device changed since it was written\n", name.as_str());
    }
    REFUSED.fetch_add(1, Ordering::Relaxed);
    s.last_refusal.clear();
    let _ = write!(
        s.last_refusal,
        "refused read-write {what} of {name} ({fs}): {}; remedy: {}; \
         override: echo {name} > /sys/kernel/snapguard/guard/allow_once",
        reasons.text,
        reasons.remedy
    );
    pr_warn!("{}\n", s.last_refusal.as_str());
    drop(s);
    let mut msg = KBox::new(Text::<256>::new(), GFP_KERNEL)?;
    let why = if reasons.evidence { "may belong to a hibernated OS" } else { "could not be checked" };
    let _ = write!(msg, "snapguard: {name} {why}; see dmesg\0");
    if let Ok(c) = CStr::from_bytes_with_nul(msg.as_str().as_bytes()) {
        // SAFETY: `fc` is the live context of this mount; `c` is
        // NUL-terminated and copied by the log.
        unsafe { sys::snapguard_fc_log(fc, b'e', c.as_char_ptr()) };
    }
    Err(EROFS)
}

/// Whether an open failed because there is no medium (or no device).
fn no_medium(e: Error) -> bool {
    let no_medium = -(kernel::bindings::ENOMEDIUM as c_int);
    e == ENXIO || e == ENODEV || e.to_errno() == no_medium
}

/// A block device found by the machine scan.
struct Found {
    dev: DevT,
    name: Text<32>,
}

/// Adds evidence of a sleeping OS found on any other block device, and
/// every device that could not be checked (then the scan is incomplete
/// and the mount is refused, naming the device).
fn machine_scan(target: &BdevFile, target_dev: DevT, prober: &mut Prober, reasons: &mut Reasons) {
    // Collect the devices first: probing opens them, which must not
    // happen inside the class iteration.
    let mut devs: KVec<Found> = KVec::new();
    let mut oom = false;
    let walk = target.for_each_device(MAX_SCAN, |d, size, n| {
        if d != target_dev && size > 0 {
            let mut name = Text::new();
            let _ = name.write_str(n);
            if devs.push(Found { dev: d, name }, GFP_KERNEL).is_err() {
                oom = true;
                return false;
            }
        }
        true
    });
    match walk {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            NOT_CHECKED.fetch_add(1, Ordering::Relaxed);
            let why = if oom { "out of memory" } else { "too many block devices" };
            reasons.add(REMEDY_SCAN, format_args!("the scan for a sleeping OS on other devices is incomplete ({why})"));
        }
    }
    let mut unchecked = 0u32;
    for f in devs.iter() {
        let name = &f.name;
        // Never wait for a device that cannot answer.
        if let Some(h) = bdev::io_held_by(f.dev) {
            let mut hl = Text::<32>::new();
            dm_label(h, &mut hl);
            unchecked = unchecked.saturating_add(1);
            NOT_CHECKED.fetch_add(1, Ordering::Relaxed);
            reasons.add(REMEDY_SCAN, format_args!("{name} not checked: device-mapper device {hl} is suspended"));
            continue;
        }
        let file = match BdevFile::open_read(f.dev) {
            Ok(file) => file,
            // No medium (an empty drive), or gone since the walk: nothing
            // there to hold evidence.
            Err(e) if no_medium(e) => continue,
            Err(e) => {
                unchecked = unchecked.saturating_add(1);
                NOT_CHECKED.fetch_add(1, Ordering::Relaxed);
                reasons.add(REMEDY_SCAN, format_args!("{name} not checked: cannot open it ({e:?})"));
                continue;
            }
        };
        DEVICES_PROBED.fetch_add(1, Ordering::Relaxed);
        let sm = match prober.probe(&file).outcome {
            Ok(sm) => sm,
            Err(rf) => {
                unchecked = unchecked.saturating_add(1);
                PROBE_ERRORS.fetch_add(1, Ordering::Relaxed);
                NOT_CHECKED.fetch_add(1, Ordering::Relaxed);
                reasons.add(REMEDY_SCAN, format_args!("{name} not checked: read error at byte {:#x} ({:?})", rf.offset, rf.err));
                continue;
            }
        };
        // This device's verdict is known here: `sm` (and whether it is
        // this system's own active swap).
        protect::note(&file, f.dev, &sm);
        if sm.sleeping_os && !file.is_active_swap() {
            reasons.evidence(sm.remedy, format_args!("sleeping OS on {name}: {} {}", sm.fs, sm.text));
        }
    }
    if unchecked > 0 {
        pr_info!("machine scan: {} device(s) could not be checked\n", unchecked);
    }
}
