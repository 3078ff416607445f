//! Shared helpers: the fixture images made by `tools/fixtures/mkimages.sh`
//! with the real mkfs tools, their expectations, and a counting reader.
#![allow(dead_code)]

use snapguard_hibernate::{probe, IoError, ReadAt, Report, SCRATCH_LEN};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One row of `expect.tsv`.
#[derive(Debug, Clone)]
pub(crate) struct Fixture {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) fs: String,
    pub(crate) verdict: String,
    pub(crate) sleeping_os: bool,
    pub(crate) kinds: Vec<String>,
}

pub(crate) fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/fixtures/mkimages.sh")
}

/// Makes every fixture once per test binary (into `dir_name` under cargo's
/// test temp dir) and returns them.
pub(crate) fn fixtures(dir_name: &str) -> &'static [Fixture] {
    static F: OnceLock<Vec<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir_name);
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("bash")
            .arg(script())
            .arg(&dir)
            .output()
            .expect("run mkimages.sh");
        assert!(
            out.status.success(),
            "mkimages.sh failed (are ntfs-3g, dosfstools, exfatprogs, util-linux installed?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tsv = std::fs::read_to_string(dir.join("expect.tsv")).expect("expect.tsv");
        tsv.lines()
            .map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                assert_eq!(c.len(), 5, "bad expect.tsv line {l:?}");
                Fixture {
                    name: c[0].to_string(),
                    path: dir.join(format!("{}.img", c[0])),
                    fs: c[1].to_string(),
                    verdict: c[2].to_string(),
                    sleeping_os: c[3] == "true",
                    kinds: if c[4] == "-" {
                        vec![]
                    } else {
                        c[4].split(',').map(str::to_string).collect()
                    },
                }
            })
            .collect()
    })
}

pub(crate) fn fixture<'a>(all: &'a [Fixture], name: &str) -> &'a Fixture {
    all.iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// A reader over memory that counts reads and checks the per-read bound.
pub(crate) struct Counting<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) reads: u32,
    pub(crate) bytes: u64,
    pub(crate) max_len: usize,
}

impl<'a> Counting<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Counting {
            data,
            reads: 0,
            bytes: 0,
            max_len: 0,
        }
    }
}

impl ReadAt for Counting<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.reads += 1;
        self.bytes += buf.len() as u64;
        self.max_len = self.max_len.max(buf.len());
        let err = IoError {
            offset,
            len: buf.len(),
        };
        let start = usize::try_from(offset).map_err(|_| err)?;
        let src = self.data.get(start..start + buf.len()).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

/// Probes bytes in memory, checking the documented bounds on the way.
pub(crate) fn probe_bytes(data: &[u8]) -> Report {
    let mut dev = Counting::new(data);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let rep = probe(&mut dev, &mut scratch).expect("in-memory reads within the device never fail");
    assert!(
        dev.reads <= snapguard_hibernate::MAX_READS,
        "{} reads",
        dev.reads
    );
    assert!(
        dev.bytes <= snapguard_hibernate::MAX_BYTES,
        "{} bytes",
        dev.bytes
    );
    assert!(
        dev.max_len <= snapguard_hibernate::MAX_READ_LEN,
        "read of {}",
        dev.max_len
    );
    assert_eq!(dev.reads, rep.reads());
    assert_eq!(dev.bytes, rep.bytes_read());
    rep
}

/// The non-informational evidence kinds of a report, sorted.
pub(crate) fn kinds(rep: &Report) -> Vec<String> {
    let mut k: Vec<String> = rep
        .evidence()
        .iter()
        .map(|e| e.kind().as_str().to_string())
        .filter(|k| k != "info")
        .collect();
    k.sort();
    k
}

/// Runs a tool that must exist; a missing tool fails the test loudly.
pub(crate) fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output();
    assert!(
        found.map(|o| o.status.success()).unwrap_or(false),
        "{name} is required for this test (install ntfs-3g / dosfstools / util-linux)"
    );
    Command::new(name)
}
