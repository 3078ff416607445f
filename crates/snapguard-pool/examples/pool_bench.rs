//! Pool benchmarks on a RAM-backed metadata device (figures only, no
//! assertions): snapshot time of a full vs an empty volume, warm-cache
//! lookups, provision and break-sharing throughput, metadata bytes per
//! mapped extent, commit latency with N dirty blocks.
//!
//! `cargo run --release -p snapguard-pool --example pool_bench`
//! (`BENCH_EXTENTS=1000000` for a quicker run; default 16 Mi extents).

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;
use std::time::{Duration, Instant};

fn per(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1e9 / n.max(1) as f64
}

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..runs).map(|_| f()).collect();
    v.sort();
    v[runs / 2]
}

fn main() {
    let n: u64 = std::env::var("BENCH_EXTENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16 << 20);
    let breaks = (n / 16).min(1 << 20);
    let data = n + breaks + 200_000;
    // Metadata: leaves (~n/678), space maps (2 x data/1018) and room for
    // shadow copies.
    let meta = n / 678 * 3 + data / 1018 * 2 + 200_000;
    let cache = 96 * 1024; // 384 MiB arena: the whole table stays cached
    println!("pool_bench: {n} mapped extents, data {data} extents, metadata {meta} blocks, cache {cache} slots");

    let mut arena = slots(cache);
    let mut p = FormatParams::new(data);
    p.extent_size = 64 << 10;
    let mut pool = Pool::format(MemDevice::new(meta), &mut arena, p).unwrap();

    // Provision throughput (commit every 1 Mi extents).
    pool.create_volume(1, n).unwrap();
    pool.create_volume(9, n).unwrap();
    pool.create_volume(8, n).unwrap();
    let t = Instant::now();
    for v in 0..n {
        pool.provision(1, v).unwrap();
        if v % (1 << 20) == (1 << 20) - 1 {
            pool.commit().unwrap();
        }
    }
    pool.commit().unwrap();
    let d = t.elapsed();
    pool.provision(8, n / 2).unwrap();
    pool.commit().unwrap();
    println!(
        "provision: {n} extents in {:.2} s = {:.0} extents/s ({:.0} ns each, commits included)",
        d.as_secs_f64(),
        n as f64 / d.as_secs_f64(),
        per(d, n)
    );

    // Metadata cost per mapped extent.
    let st = pool.stats();
    let used = st.meta_blocks - st.meta_free;
    let dynamic = used - st.meta_fixed;
    let dsm_per_extent = 2.0 * BLOCK_SIZE as f64 / 1018.0;
    println!(
        "metadata: {used} blocks used ({dynamic} tree blocks, {} fixed space map blocks)",
        st.meta_fixed
    );
    println!(
        "metadata per mapped extent: {:.2} B tables + {:.2} B data space map (two copies, per data extent) = {:.2} B (all used metadata / mapped: {:.2} B)",
        dynamic as f64 * BLOCK_SIZE as f64 / n as f64,
        dsm_per_extent,
        dynamic as f64 * BLOCK_SIZE as f64 / n as f64 + dsm_per_extent,
        used as f64 * BLOCK_SIZE as f64 / n as f64
    );

    // Snapshot time: full vs empty volume (snapshot + commit), median of 9.
    let mut next_id = 100u32;
    let mut snap = |pool: &mut Pool<'_, MemDevice>, src: u32| {
        let id = next_id;
        next_id += 1;
        let t = Instant::now();
        pool.snapshot(src, id).unwrap();
        let op = t.elapsed();
        pool.commit().unwrap();
        let with_commit = t.elapsed();
        pool.delete_volume(id).unwrap();
        pool.commit().unwrap();
        (op, with_commit)
    };
    let mut full = vec![];
    let mut empty = vec![];
    let mut one = vec![];
    for _ in 0..31 {
        full.push(snap(&mut pool, 1));
        empty.push(snap(&mut pool, 9));
        one.push(snap(&mut pool, 8));
    }
    full.sort();
    empty.sort();
    one.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (fo, fc) = full[15];
    let (eo, ec) = empty[15];
    let (oo, oc) = one[15];
    println!(
        "snapshot (median of 31): full volume {:.1} us (with commit {:.1} us); empty volume {:.1} us ({:.1} us); 1-extent volume {:.1} us ({:.1} us)",
        us(fo), us(fc), us(eo), us(ec), us(oo), us(oc)
    );
    println!(
        "snapshot ratio full/empty: {:.2} (with commit {:.2}); full/1-extent: {:.2} (with commit {:.2})",
        us(fo) / us(eo),
        us(fc) / us(ec),
        us(fo) / us(oo),
        us(fc) / us(oc)
    );

    // Warm-cache lookups (random vext), blocking and cache-only.
    pool.snapshot(1, 2).unwrap();
    pool.commit().unwrap();
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let probes = 2_000_000u64;
    for _ in 0..probes {
        pool.lookup(2, rnd() % n).unwrap();
    }
    let t = Instant::now();
    for _ in 0..probes {
        pool.lookup(2, rnd() % n).unwrap();
    }
    let d = t.elapsed();
    let t = Instant::now();
    let mut blocked = 0u64;
    for _ in 0..probes {
        if pool.lookup_cached(2, rnd() % n).is_err() {
            blocked += 1;
        }
    }
    let dc = t.elapsed();
    println!(
        "lookup (warm cache, random, snapshot volume, with shared flag): {:.0} ns; lookup_cached {:.0} ns ({blocked} would-block of {probes})",
        per(d, probes),
        per(dc, probes)
    );

    // Break-sharing throughput: the snapshot's first `breaks` extents.
    let t = Instant::now();
    for v in 0..breaks {
        pool.break_sharing(2, v).unwrap();
    }
    let d = t.elapsed();
    let t2 = Instant::now();
    pool.commit().unwrap();
    let dcommit = t2.elapsed();
    println!(
        "break sharing: {breaks} extents in {:.2} s = {:.0} extents/s ({:.0} ns each); commit after it {:.1} ms",
        d.as_secs_f64(),
        breaks as f64 / d.as_secs_f64(),
        per(d, breaks),
        dcommit.as_secs_f64() * 1e3
    );

    // Commit latency with N dirty leaves (one break per leaf).
    let mut base = breaks;
    for dirty in [1u64, 10, 100, 1000, 10_000] {
        let mut blocks = 0;
        let lat = median(3, || {
            for i in 0..dirty {
                pool.break_sharing(2, (base + i * 678) % n).unwrap();
            }
            base += dirty * 678 + 1;
            blocks = pool.stats().dirty_blocks;
            let t = Instant::now();
            pool.commit().unwrap();
            t.elapsed()
        });
        println!(
            "commit with {dirty} dirty leaves ({blocks} dirty blocks): {:.1} us",
            lat.as_secs_f64() * 1e6
        );
    }

    // Check time on the full pool.
    let mut scratch = vec![0u32; pool.check_scratch_len() as usize];
    let t = Instant::now();
    let r = pool.check(&mut scratch).unwrap();
    println!(
        "check: {:.2} s, clean {}, {} nodes, {} mapped leaf entries",
        t.elapsed().as_secs_f64(),
        r.is_clean(),
        r.nodes,
        r.mapped
    );
}
