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

use crate::kbind::bdev::{self, BdevFile, DevT, Stamp};
use crate::kbind::sys;
use crate::kbind::sysfs::Knob;
use crate::kbind::text::Text;
use evidence::{Summary, Verdict};
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
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

/// Pending `allow_once` entries and the last refusal, under one lock.
struct Shared {
    allow: [Option<(DevT, Text<32>)>; MAX_ALLOW],
    last_refusal: Text<1024>,
    cache: [Option<CacheEntry>; CACHE_SLOTS],
    next_victim: usize,
}

const MAX_ALLOW: usize = 8;
const CACHE_SLOTS: usize = 64;
/// At most this many block devices are looked at by one machine scan.
const MAX_SCAN: usize = 256;

struct CacheEntry {
    dev: DevT,
    stamp: Stamp,
    summary: Summary,
}

kernel::sync::global_lock! {
    // SAFETY: initialised in `Guard::new` before first use.
    unsafe(uninit) static SHARED: Mutex<Shared> = Shared {
        allow: [const { None }; MAX_ALLOW],
        last_refusal: Text::new(),
        cache: [const { None }; CACHE_SLOTS],
        next_victim: 0,
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
        writeln!(w, "devices_probed {}", DEVICES_PROBED.load(Ordering::Relaxed))
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
    for (dev, name) in s.allow.iter().flatten() {
        let (ma, mi) = bdev::dev_parts(*dev);
        writeln!(w, "{ma}:{mi} {name}").map_err(|_| EINVAL)?;
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

fn store_allow_once(input: &[u8]) -> Result {
    if input == b"clear" {
        SHARED.lock().allow = [const { None }; MAX_ALLOW];
        return Ok(());
    }
    if input.is_empty() || input.len() > 64 || input.iter().any(|c| c.is_ascii_whitespace() || *c == 0) {
        return Err(EINVAL);
    }
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
    let mut name = Text::<32>::new();
    let _ = name.write_str(core::str::from_utf8(input).map_err(|_| EINVAL)?);
    // A mount cannot be read-write on a device that is read-only at the
    // block layer: allowing it lifts snapguard's protection too.
    protect::user_override(dev)?;
    let mut s = SHARED.lock();
    if s.allow.iter().flatten().any(|(d, _)| *d == dev) {
        return Ok(());
    }
    let slot = s.allow.iter_mut().find(|e| e.is_none()).ok_or(ENOSPC)?;
    *slot = Some((dev, name));
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

/// A read-write mount of `source` is being set up.
///
/// When the mount may go on, the device stays open in the returned handle:
/// the caller holds it until the file system's `get_tree` has returned, so
/// the blocks the probe read stay in the device's page cache for the file
/// system (the last close of a block device drops its page cache). A
/// user task's `fput` is deferred to its return to userspace anyway; this
/// makes the order explicit, and holds for kernel-thread callers too.
pub(crate) fn check_new_mount(fc: *mut sys::fs_context, source: &CStr, fs: &CStr) -> Result<Option<BdevFile>> {
    if MODE.get() == MODE_OFF {
        return Ok(None);
    }
    // A source that is not a block device path is the file system's
    // business: it fails the same lookup itself.
    let Ok(dev) = bdev::lookup(source) else { return Ok(None) };
    check(fc, dev, fs, "mount")
}

/// A read-only mount of device `dev` is being remounted read-write.
pub(crate) fn check_remount(fc: *mut sys::fs_context, dev: DevT, fs: &CStr) -> Result {
    if MODE.get() == MODE_OFF {
        return Ok(());
    }
    // The mounted file system keeps the device open: no need to hold it.
    check(fc, dev, fs, "remount").map(drop)
}

/// Probes `dev` through the cache; `file` must be `dev` opened.
fn probe_cached(s: &mut Shared, dev: DevT, file: &BdevFile) -> Result<Summary> {
    let stamp = file.stamp();
    if let Some(e) = s.cache.iter().flatten().find(|e| e.dev == dev && e.stamp == stamp) {
        return Ok(e.summary.clone());
    }
    DEVICES_PROBED.fetch_add(1, Ordering::Relaxed);
    let summary = evidence::probe(file)?;
    let entry = CacheEntry { dev, stamp, summary: summary.clone() };
    let slot = match s.cache.iter().position(|e| matches!(e, Some(e) if e.dev == dev)) {
        Some(i) => i,
        None => match s.cache.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                let v = s.next_victim % CACHE_SLOTS;
                s.next_victim = v + 1;
                v
            }
        },
    };
    if let Some(e) = s.cache.get_mut(slot) {
        *e = Some(entry);
    }
    Ok(summary)
}

/// Decides on a read-write `what` of `dev`; on yes, returns the device
/// opened (see [`check_new_mount`]), or `None` if it could not be opened.
fn check(fc: *mut sys::fs_context, dev: DevT, fs: &CStr, what: &str) -> Result<Option<BdevFile>> {
    CHECKED.fetch_add(1, Ordering::Relaxed);
    let fs = fs.to_str().unwrap_or("?");
    let file = match BdevFile::open_read(dev) {
        Ok(f) => f,
        Err(e) => {
            // The file system's own open will fail the same way.
            PROBE_ERRORS.fetch_add(1, Ordering::Relaxed);
            pr_warn!("cannot open device {}:{} to check it: {:?}\n", bdev::dev_parts(dev).0, bdev::dev_parts(dev).1, e);
            return Ok(None);
        }
    };
    protect::refresh(&file, dev);
    let mut name_buf = [0u8; 32];
    let name = file.name(&mut name_buf);
    let mut reasons = KBox::new(Text::<768>::new(), GFP_KERNEL)?;
    let mut remedy: &str = "";
    let mut s = SHARED.lock();

    match probe_cached(&mut s, dev, &file) {
        Ok(own) => {
            let refuse = match own.verdict {
                Verdict::Hibernated => true,
                Verdict::Unclean | Verdict::Corrupt => UNCLEAN.get() == UNCLEAN_REFUSE,
                Verdict::Clean | Verdict::Unsupported => false,
            };
            if refuse {
                let _ = write!(reasons, "{} {}: {}", own.fs, own.verdict.as_str(), own.text);
                remedy = own.remedy;
            }
        }
        Err(e) => {
            PROBE_ERRORS.fetch_add(1, Ordering::Relaxed);
            pr_warn!("cannot read {} to check it: {:?}; not refusing\n", name, e);
        }
    }

    if POLICY.get() == POLICY_MACHINE {
        machine_scan(&mut s, &file, dev, &mut reasons, &mut remedy);
    }

    if reasons.is_empty() {
        return Ok(Some(file));
    }

    // Refusal, unless overridden or only audited.
    if let Some(e) = s.allow.iter_mut().find(|e| matches!(e, Some((d, _)) if *d == dev)) {
        *e = None;
        OVERRIDDEN.fetch_add(1, Ordering::Relaxed);
        pr_warn!("allowing read-write {} of {} ({}) by allow_once despite: {}\n", what, name, fs, reasons.as_str());
        return Ok(Some(file));
    }
    if MODE.get() == MODE_AUDIT {
        AUDITED.fetch_add(1, Ordering::Relaxed);
        pr_warn!("audit: would refuse read-write {} of {} ({}): {}\n", what, name, fs, reasons.as_str());
        return Ok(Some(file));
    }
    REFUSED.fetch_add(1, Ordering::Relaxed);
    s.last_refusal.clear();
    let _ = write!(
        s.last_refusal,
        "refused read-write {what} of {name} ({fs}): {}; remedy: {remedy}; \
         override: echo {name} > /sys/kernel/snapguard/guard/allow_once",
        reasons.as_str()
    );
    pr_warn!("{}\n", s.last_refusal.as_str());
    let mut msg = KBox::new(Text::<256>::new(), GFP_KERNEL)?;
    let _ = write!(msg, "snapguard: {name} may belong to a hibernated OS; see dmesg\0");
    if let Ok(c) = CStr::from_bytes_with_nul(msg.as_str().as_bytes()) {
        // SAFETY: `fc` is the live context of this mount; `c` is
        // NUL-terminated and copied by the log.
        unsafe { sys::snapguard_fc_log(fc, b'e', c.as_char_ptr()) };
    }
    Err(EROFS)
}

/// Adds evidence of a sleeping OS found on any other block device.
fn machine_scan(s: &mut Shared, target: &BdevFile, target_dev: DevT, reasons: &mut Text<768>, remedy: &mut &'static str) {
    // Collect the devices first: probing opens them, which must not
    // happen inside the class iteration.
    let mut devs: KVec<(DevT, Stamp)> = KVec::new();
    let walk = target.for_each_device(MAX_SCAN, |d, st| {
        if d != target_dev && st.size > 0 {
            let _ = devs.push((d, st), GFP_KERNEL);
        }
        true
    });
    if walk.is_err() {
        PROBE_ERRORS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    for (d, st) in devs.iter() {
        // A cached answer for an unchanged device needs no I/O at all.
        let cached = s.cache.iter().flatten().find(|e| e.dev == *d && e.stamp == *st).map(|e| e.summary.clone());
        let (summary, swap_active, name) = match cached {
            Some(sm) if !sm.sleeping_os => continue,
            _ => {
                let Ok(f) = BdevFile::open_read(*d) else {
                    PROBE_ERRORS.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let sm = match probe_cached(s, *d, &f) {
                    Ok(sm) => sm,
                    Err(_) => {
                        PROBE_ERRORS.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                protect::note(&f, *d, &sm);
                let mut nb = [0u8; 32];
                let mut name = Text::<32>::new();
                let _ = name.write_str(f.name(&mut nb));
                (sm, f.is_active_swap(), name)
            }
        };
        if summary.sleeping_os && !swap_active {
            let sep = if reasons.is_empty() { "" } else { "; " };
            let _ = write!(reasons, "{sep}sleeping OS on {}: {} {}", name, summary.fs, summary.text);
            if remedy.is_empty() {
                *remedy = summary.remedy;
            }
        }
    }
}
