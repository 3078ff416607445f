//! Replays the fuzz regression corpus (`tests/corpus/`) through the fuzz
//! harness: no input may panic; the valid seeds must check clean. With
//! `SNAPGUARD_GEN_CORPUS=1` the seed images are (re)written first.

use snapguard_pool::host::{fuzz_one, slots, MemDevice};
use snapguard_pool::*;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Encodes an image as a fuzz input: flags, size, image without its
/// trailing zero blocks.
fn encode(flags: u8, dev: &MemDevice) -> Vec<u8> {
    let mut n = dev.blocks.len();
    while n > 0 && dev.blocks[n - 1].iter().all(|&b| b == 0) {
        n -= 1;
    }
    let mut out = vec![flags, dev.blocks.len() as u8];
    for b in &dev.blocks[..n] {
        out.extend_from_slice(b);
    }
    out
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut s = slots(32);
    let mut p = FormatParams::new(1000);
    p.max_volumes = 200;
    p.extent_size = 4096;
    let mut pool = Pool::format(MemDevice::new(48), &mut s, p).unwrap();
    let empty = encode(0, pool.device());
    pool.create_volume(1, 1500).unwrap();
    for v in 0..700 {
        pool.provision(1, v).unwrap();
    }
    pool.create_volume(150, 20).unwrap();
    pool.commit().unwrap();
    pool.snapshot(1, 2).unwrap();
    pool.break_sharing(2, 3).unwrap();
    pool.copy_range(1, 10, 150, 0, 20).unwrap();
    pool.commit().unwrap();
    let populated = encode(2, pool.device());
    // Grown beyond its data capacity: a growth extension in free blocks.
    let mut s2 = slots(32);
    let mut pool2 = Pool::open(
        MemDevice::from_blocks(pool.device().blocks.clone()),
        &mut s2,
    )
    .unwrap();
    pool2.grow(5000, 48).unwrap();
    pool2.commit().unwrap();
    assert_eq!(pool2.stats().extensions, 1);
    let grown = encode(2, pool2.device());
    // An uncommitted transaction's blocks on disk (as after a crash).
    pool.discard(1, 0, 300).unwrap();
    pool.provision(1, 1000).unwrap();
    let (dev, _) = pool.into_parts();
    let crashed = encode(3, &dev);
    vec![
        ("seed-empty", empty),
        ("seed-populated", populated),
        ("seed-uncommitted", crashed),
        ("seed-grown", grown),
    ]
}

#[test]
fn corpus_replays_without_panic() {
    let d = dir();
    if std::env::var_os("SNAPGUARD_GEN_CORPUS").is_some() {
        std::fs::create_dir_all(&d).unwrap();
        for (name, data) in seeds() {
            std::fs::write(d.join(name), data).unwrap();
        }
    }
    let mut n = 0;
    for e in std::fs::read_dir(&d).unwrap() {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let rep = fuzz_one(&data);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("seed-") {
            let rep = rep.unwrap_or_else(|| panic!("{name}: does not open"));
            assert!(rep.is_clean(), "{name}: {rep:?}");
        }
        n += 1;
    }
    eprintln!("corpus: {n} inputs replayed");
    assert!(n >= 4);
}

#[test]
fn seeds_are_current() {
    // The generator still produces clean pools.
    for (name, data) in seeds() {
        let rep = fuzz_one(&data).unwrap_or_else(|| panic!("{name}"));
        assert!(rep.is_clean(), "{name}: {rep:?}");
    }
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
