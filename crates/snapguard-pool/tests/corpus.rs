//! Replays the fuzz seeds ([`fuzz_seeds`], built in memory by the pool
//! core) and the regression inputs the fuzzer found (`tests/corpus/`)
//! through the fuzz harness: no input may panic; the seeds must check
//! clean. With `SNAPGUARD_SEED_DIR=DIR` the seeds are also written into DIR
//! (`tools/fuzz.sh` does that for the fuzzer's working corpus).

use snapguard_pool::host::{fuzz_one, fuzz_seeds};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    fuzz_seeds().expect("the seed generator builds its pools")
}

#[test]
fn seeds_check_clean() {
    let seeds = seeds();
    assert_eq!(seeds.len(), 4);
    for (name, data) in &seeds {
        let rep = fuzz_one(data).unwrap_or_else(|| panic!("{name}: does not open"));
        assert!(rep.is_clean(), "{name}: {rep:?}");
    }
    // The grown seed holds what it says: one growth extension.
    let (_, grown) = seeds.iter().find(|(n, _)| *n == "seed-grown").unwrap();
    let mut dev = snapguard_pool::host::MemDevice::from_image(&grown[2..]);
    dev.blocks
        .resize(usize::from(grown[1]), [0; snapguard_pool::BLOCK_SIZE]);
    let mut s = snapguard_pool::host::slots(32);
    let pool = snapguard_pool::Pool::open(dev, &mut s).unwrap();
    assert_eq!(pool.stats().extensions, 1);
    if let Some(out) = std::env::var_os("SNAPGUARD_SEED_DIR") {
        let out = PathBuf::from(out);
        std::fs::create_dir_all(&out).unwrap();
        for (name, data) in &seeds {
            std::fs::write(out.join(name), data).unwrap();
        }
        eprintln!("{} seeds written to {}", seeds.len(), out.display());
    }
}

#[test]
fn regression_corpus_replays_without_panic() {
    let mut n = 0;
    for e in std::fs::read_dir(dir()).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("fuzz-"),
            "{name}: the regression corpus holds only fuzzer finds (seeds are generated)"
        );
        fuzz_one(&std::fs::read(&path).unwrap());
        n += 1;
    }
    eprintln!("corpus: {n} regression inputs replayed");
    assert!(n >= 4);
}

#[test]
fn random_corruption_never_panics() {
    let (_, base) = seeds().remove(1);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut problems = 0;
    for round in 0..300 {
        let mut d = base.clone();
        d[0] = if round % 2 == 0 { 3 } else { 2 };
        for _ in 0..1 + round % 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = 2 + (x as usize) % (d.len() - 2);
            d[i] ^= (x >> 32) as u8 | 1;
        }
        if let Some(r) = fuzz_one(&d) {
            problems += u64::from(!r.is_clean());
        }
    }
    eprintln!("random corruption: {problems} of 300 corrupted images reported problems");
}
