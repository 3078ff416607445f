//! `snapguard probe`: hibernation evidence on block devices and images.

use clap::Args;
use serde::Serialize;
use snapguard_hibernate::{self as hib, ReadAt, Report, Verdict};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::ExitCode;

/// Arguments of `snapguard probe`.
#[derive(Args, Debug)]
pub(crate) struct ProbeArgs {
    /// Print one JSON object per line per volume.
    #[arg(long)]
    json: bool,
    /// Make each block device that shows a sleeping OS read-only at the
    /// block layer (BLKROSET), so that no program writes it. With the
    /// snapguard module loaded the kernel does it (and `unprotect` lifts
    /// it); without, this tool sets the flag itself (`blockdev --setrw`
    /// lifts it). Used by the udev rule for new and changed devices.
    #[arg(long)]
    protect: bool,
    /// Block devices or image files to probe.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// A volume in a file or block device.
struct FileDev {
    file: File,
    len: u64,
}

impl ReadAt for FileDev {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), hib::IoError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|_| hib::IoError {
                offset,
                len: buf.len(),
            })
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[derive(Serialize)]
struct JsonEvidence<'a> {
    kind: &'a str,
    detail: &'a str,
    offset: u64,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    path: String,
    fs: &'a str,
    verdict: &'a str,
    sleeping_os: bool,
    evidence: Vec<JsonEvidence<'a>>,
    dropped_evidence: u32,
    remedy: &'a str,
    reads: u32,
    bytes_read: u64,
}

#[derive(Serialize)]
struct JsonError {
    path: String,
    error: String,
}

/// Opens `path` and probes it.
fn probe_path(path: &PathBuf) -> Result<Report, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // Block devices report a zero length in their metadata: seek instead.
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("cannot size: {e}"))?;
    let mut dev = FileDev { file, len };
    let mut scratch = vec![0u8; hib::SCRATCH_LEN];
    hib::probe(&mut dev, &mut scratch).map_err(|e| match e {
        hib::ProbeError::Io(io) => {
            format!("read error at byte {} (+{})", io.offset, io.len)
        }
        hib::ProbeError::ScratchTooSmall => "internal error: scratch too small".to_string(),
    })
}

fn verdict_line(v: Verdict, sleeping: bool) -> String {
    let what = match v {
        Verdict::Clean => "clean: safe to write",
        Verdict::Unsupported => "unsupported: not a file system snapguard knows",
        Verdict::Unclean => "unclean: not cleanly unmounted",
        Verdict::Corrupt => "corrupt: cannot be parsed",
        Verdict::Hibernated => "hibernated: a sleeping OS owns this volume",
    };
    if sleeping && v != Verdict::Hibernated {
        format!("{what} (and a sleeping OS owns this device)")
    } else {
        what.to_string()
    }
}

/// The module's knob that probes a device and protects it.
const PROTECT_KNOB: &str = "/sys/kernel/snapguard/guard/protect";

/// Whether the block device `meta` describes is read-only at the block
/// layer (what `BLKROGET` says; sysfs shows the same, no ioctl needed).
fn blk_ro(meta: &std::fs::Metadata) -> Result<bool, String> {
    let rdev = meta.rdev();
    // glibc's encoding of a dev_t (major/minor of <sys/sysmacros.h>).
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    let attr = format!("/sys/dev/block/{major}:{minor}/ro");
    let v = std::fs::read_to_string(&attr).map_err(|e| format!("{attr}: {e}"))?;
    Ok(v.trim() != "0")
}

/// `--protect` for one probed path: the line to print, or `None` when
/// there is nothing to say (no sleeping OS, or not a block device).
fn protect(path: &Path, rep: &Report) -> Result<Option<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.file_type().is_block_device() {
        return Ok(None);
    }
    let shown = path.display();
    let before = blk_ro(&meta)?;
    if Path::new(PROTECT_KNOB).exists() {
        // The module probes the device itself and decides: it marks it,
        // lifts a mark it left for an earlier medium (a loop device keeps
        // the flag when detached), or leaves it; it remembers what it set,
        // so that its `unprotect` knob and unloading can lift it.
        std::fs::write(PROTECT_KNOB, path.as_os_str().as_bytes())
            .map_err(|e| format!("{PROTECT_KNOB}: {e}"))?;
        let after = blk_ro(&meta)?;
        return Ok(match (rep.sleeping_os(), before, after) {
            (true, false, true) => Some(format!(
                "  made read-only at the block layer by the snapguard module; \
                 lift with: echo {shown} > /sys/kernel/snapguard/guard/unprotect"
            )),
            (true, true, true) => Some("  already read-only at the block layer".to_string()),
            (true, _, false) => Some(
                "  not made read-only by the snapguard module (in use, mode not \
                 enforce, or unprotected by the user; see dmesg)"
                    .to_string(),
            ),
            (false, true, false) => Some(
                "  read-only state the snapguard module set for an earlier medium lifted"
                    .to_string(),
            ),
            (false, _, _) => None,
        });
    }
    if !rep.sleeping_os() {
        return Ok(None);
    }
    if before {
        return Ok(Some("  already read-only at the block layer".to_string()));
    }
    // No module: BLKROSET through util-linux (this crate has no unsafe code).
    let out = Command::new("blockdev")
        .arg("--setro")
        .arg(path)
        .output()
        .map_err(|e| format!("blockdev --setro: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "blockdev --setro: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Some(format!(
        "  made read-only at the block layer; lift with: blockdev --setrw {shown}"
    )))
}

/// Runs `snapguard probe`: exit 0 when every volume is clean or
/// unsupported, 1 when any is hibernated, unclean or corrupt, 2 on I/O
/// errors.
pub(crate) fn run(args: ProbeArgs) -> ExitCode {
    let mut worst = 0u8;
    for path in &args.paths {
        let mut out = String::new();
        let shown = path.display().to_string();
        match probe_path(path) {
            Ok(rep) => {
                if !rep.verdict().is_safe() {
                    worst = worst.max(1);
                }
                let protected = if args.protect {
                    protect(path, &rep).unwrap_or_else(|e| {
                        worst = 2;
                        eprintln!("{shown}: --protect: {e}");
                        None
                    })
                } else {
                    None
                };
                if args.json {
                    let j = JsonReport {
                        path: shown,
                        fs: rep.fs().as_str(),
                        verdict: rep.verdict().as_str(),
                        sleeping_os: rep.sleeping_os(),
                        evidence: rep
                            .evidence()
                            .iter()
                            .map(|e| JsonEvidence {
                                kind: e.kind().as_str(),
                                detail: e.detail(),
                                offset: e.offset(),
                            })
                            .collect(),
                        dropped_evidence: rep.dropped(),
                        remedy: rep.remedy(),
                        reads: rep.reads(),
                        bytes_read: rep.bytes_read(),
                    };
                    let _ = writeln!(out, "{}", serde_json::to_string(&j).unwrap_or_default());
                    if let Some(p) = &protected {
                        eprintln!("{}:{p}", path.display());
                    }
                } else {
                    let v = verdict_line(rep.verdict(), rep.sleeping_os());
                    let _ = writeln!(out, "{shown}: {}, {v}", rep.fs().as_str());
                    for e in rep.evidence() {
                        let _ = writeln!(
                            out,
                            "  {} at byte {}: {}",
                            e.kind().as_str(),
                            e.offset(),
                            e.detail()
                        );
                    }
                    if rep.dropped() > 0 {
                        let _ =
                            writeln!(out, "  ({} more evidence items not shown)", rep.dropped());
                    }
                    if !rep.verdict().is_safe() {
                        let _ = writeln!(out, "  remedy: {}", rep.remedy());
                    }
                    if let Some(p) = &protected {
                        let _ = writeln!(out, "{p}");
                    }
                }
            }
            Err(msg) => {
                worst = 2;
                if args.json {
                    let j = JsonError {
                        path: shown,
                        error: msg,
                    };
                    let _ = writeln!(out, "{}", serde_json::to_string(&j).unwrap_or_default());
                } else {
                    eprintln!("{shown}: {msg}");
                }
            }
        }
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::stdout().write_all(out.as_bytes());
    }
    ExitCode::from(worst)
}
