//! Full check time of a pool with `CHECK_MAPPED` mapped leaf entries
//! (default 256 Mi) and 100 snapshots: volume 1 gets `CHECK_BASE` (default
//! 16 Mi) provisioned extents, copies of it fill further volumes (each copy
//! has its own leaves, sharing the data extents) until the target is
//! reached, then 100 snapshots of volume 1 each un-share one extent.
//!
//! `cargo run --release -p snapguard-pool --example pool_check_bench`

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;
use std::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let target = env("CHECK_MAPPED", 256 << 20);
    let base = env("CHECK_BASE", 16 << 20).min(target);
    let copies = target.div_ceil(base) - 1;
    let data = base + 1000;
    let meta = target / 678 + target / 678 / 400 + data / 1018 * 2 + 100_000;
    let mut arena = slots(64 * 1024);
    let mut p = FormatParams::new(data);
    p.extent_size = 64 << 10;
    p.max_volumes = 1024;
    let mut pool = Pool::format(MemDevice::new(meta), &mut arena, p).unwrap();
    let t = Instant::now();
    pool.create_volume(1, base).unwrap();
    for v in 0..base {
        pool.provision(1, v).unwrap();
    }
    pool.commit().unwrap();
    for c in 0..copies {
        let id = 10 + c as u32;
        pool.create_volume(id, base).unwrap();
        let mut done = 0;
        while done < base {
            done += pool
                .copy_range_step(1, done, id, done, base - done, 1 << 20)
                .unwrap();
        }
        pool.commit().unwrap();
    }
    for i in 0..100u32 {
        pool.snapshot(1, 500 + i).unwrap();
        pool.break_sharing(500 + i, u64::from(i) * 6781 % base)
            .unwrap();
    }
    pool.commit().unwrap();
    let build = t.elapsed();
    let (dev, arena) = pool.into_parts();
    let mut pool = Pool::open(dev, arena).unwrap();
    let mut scratch = vec![0u32; pool.check_scratch_len() as usize];
    let t = Instant::now();
    let r = pool.check(&mut scratch).unwrap();
    let d = t.elapsed();
    println!(
        "check: {} mapped leaf entries, {} volumes (100 snapshots), {} nodes, metadata {} blocks used: {:.2} s (clean {}, {} passes, {} blocks read); built in {:.1} s",
        r.mapped,
        r.volumes,
        r.nodes,
        r.meta_used,
        d.as_secs_f64(),
        r.is_clean(),
        r.passes,
        pool.stats().blocks_read,
        build.as_secs_f64()
    );
}
