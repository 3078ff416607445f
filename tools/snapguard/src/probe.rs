//! `snapguard probe`: hibernation evidence on block devices and images.

use clap::Args;
use serde::Serialize;
use snapguard_hibernate::{self as hib, ReadAt, Report, Verdict};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write as _};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `snapguard probe`.
#[derive(Args, Debug)]
pub(crate) struct ProbeArgs {
    /// Print one JSON object per line per volume.
    #[arg(long)]
    json: bool,
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
