//! Benchmark (not a test): probe cost per file system kind on the fixture
//! images made by `tools/fixtures/mkimages.sh`: reads issued, bytes read,
//! and time per probe from memory and through `pread` on the image file
//! (page cache warm). Usage: `cargo run --release --example probe_bench
//! [ITERATIONS]`.

use snapguard_hibernate::{probe, IoError, ReadAt, SliceDev, SCRATCH_LEN};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

struct FileDev(File, u64);

impl ReadAt for FileDev {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.0.read_exact_at(buf, offset).map_err(|_| IoError {
            offset,
            len: buf.len(),
        })
    }
    fn len(&self) -> u64 {
        self.1
    }
}

const CASES: &[&str] = &[
    "ntfs-clean",
    "ntfs-hiberfil-HIBR",
    "ntfs-hiberfil-frag",
    "ntfs-faststartup-full",
    "fat12-clean",
    "fat16-dirty",
    "fat32-clean",
    "exfat-dirty",
    "swap-clean",
    "swap-S1SUSPEND-4096",
    "swap-LINHIB0001-65536",
    "garbage",
];

fn main() {
    let iters: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("snapguard-bench-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/fixtures/mkimages.sh");
    let st = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .args(CASES)
        .status()
        .expect("run mkimages.sh");
    assert!(st.success(), "mkimages.sh failed");
    let mut scratch = vec![0u8; SCRATCH_LEN];
    println!(
        "{:<24} {:<7} {:<11} {:>5} {:>7} {:>10} {:>10}",
        "fixture", "fs", "verdict", "reads", "bytes", "us/mem", "us/pread"
    );
    for name in CASES {
        let path = dir.join(format!("{name}.img"));
        let data = std::fs::read(&path).unwrap();
        let rep = probe(&mut SliceDev(&data), &mut scratch).unwrap();
        let t = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(probe(&mut SliceDev(&data), &mut scratch).unwrap());
        }
        let mem = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
        let file = File::open(&path).unwrap();
        let mut dev = FileDev(file, data.len() as u64);
        let t = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(probe(&mut dev, &mut scratch).unwrap());
        }
        let pread = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
        println!(
            "{:<24} {:<7} {:<11} {:>5} {:>7} {:>10.2} {:>10.2}",
            name,
            rep.fs().as_str(),
            rep.verdict().as_str(),
            rep.reads(),
            rep.bytes_read(),
            mem,
            pread
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
