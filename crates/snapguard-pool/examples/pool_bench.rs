//! Pool benchmarks on a RAM-backed metadata device (figures only, no
//! assertions): largest pools per extent size, a 2^32-extent pool with a
//! 1 TiB metadata device formatted on a sparse file and exercised,
//! snapshot time of a full vs an empty volume, warm-cache lookups,
//! provision and break-sharing throughput, metadata bytes per mapped
//! extent (counted by the checker from the device's space map), commit
//! latency with N dirty blocks, the distribution of time each operation
//! holds the pool (the writer's lock hold time: max, p99), and check time
//! with 100 snapshots.
//!
//! `cargo run --release -p snapguard-pool --example pool_bench`
//! (`BENCH_EXTENTS=1000000` for a quicker run; default 16 Mi extents).

use snapguard_pool::host::{slots, FileDevice, MemDevice};
use snapguard_pool::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Time each operation holds the pool (what a writer holds its lock for).
#[derive(Default)]
struct Holds(BTreeMap<&'static str, Vec<Duration>>);

impl Holds {
    fn time<T>(&mut self, op: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.0.entry(op).or_default().push(t.elapsed());
        r
    }

    fn print(&mut self) {
        println!("lock hold time per operation (n, p50, p99, max):");
        for (op, v) in self.0.iter_mut() {
            v.sort();
            let q = |f: f64| v[((v.len() - 1) as f64 * f) as usize];
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            println!(
                "  {op:<28} n {:>9}  p50 {:>10.1} us  p99 {:>10.1} us  max {:>10.1} us",
                v.len(),
                us(q(0.5)),
                us(q(0.99)),
                us(*v.last().unwrap())
            );
        }
    }
}

fn human(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut b = bytes;
    let mut i = 0;
    while b >= 1024.0 && i + 1 < units.len() {
        b /= 1024.0;
        i += 1;
    }
    format!("{b:.2} {}", units[i])
}

/// Largest pools, and a 2^32-extent pool with a 1 TiB metadata device
/// formatted on a sparse file and exercised.
fn geometry() {
    let tib_meta = 1u64 << 28;
    let abs = max_data_extents(1 << 36);
    for es in [4096u64, 64 << 10, 1 << 20] {
        let m = max_data_extents(tib_meta);
        // Fully mappable: fixed area (8 B/extent) plus leaves (6.05 B per
        // mapped extent) in the metadata device.
        let full = ((tib_meta * BLOCK_SIZE as u64) as f64 / 14.1) as u64;
        println!(
            "max pool at extent size {}: with a 1 TiB metadata device {} extents = {} fully mappable ({} extents = {} if mostly unmapped: fixed area only); format limit {} extents = {}",
            human(es as f64),
            full,
            human(full as f64 * es as f64),
            m,
            human(m as f64 * es as f64),
            abs,
            human(abs as f64 * es as f64)
        );
    }
    let need = min_meta_blocks(1 << 32).unwrap();
    println!(
        "2^32 data extents need a metadata device of at least {} (fixed area: space maps, written lazily)",
        human((need * BLOCK_SIZE as u64) as f64)
    );
    let path = std::env::temp_dir().join(format!("pool_bench_{}.img", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.set_len(1 << 40).unwrap();
    let dev = FileDevice::new(f, 1 << 40);
    let mut arena = slots(4096);
    let mut p = FormatParams::new(1 << 32);
    p.extent_size = 64 << 10;
    let t = Instant::now();
    let mut pool = Pool::format(dev, &mut arena, p).unwrap();
    let tf = t.elapsed();
    let t = Instant::now();
    pool.create_volume(1, 1 << 32).unwrap();
    for i in 0..10_000u64 {
        pool.provision(1, i * 429_496).unwrap();
    }
    pool.commit().unwrap();
    pool.snapshot(1, 2).unwrap();
    for i in 0..1000u64 {
        pool.break_sharing(2, i * 4_294_960).unwrap();
    }
    pool.commit().unwrap();
    let (dev, arena) = pool.into_parts();
    let mut pool = Pool::open(dev, arena).unwrap();
    let m = pool.lookup(2, 4_294_960).unwrap();
    let te = t.elapsed();
    let st = pool.stats();
    // Growth beyond the format-time capacity: the data device doubles,
    // the metadata device stays (a growth extension in free blocks).
    let t = Instant::now();
    pool.grow(1 << 33, st.meta_blocks).unwrap();
    pool.commit().unwrap();
    let tg = t.elapsed();
    let sg = pool.stats();
    let (dev, arena) = pool.into_parts();
    let mut pool = Pool::open(dev, arena).unwrap();
    pool.resize_volume(1, 1 << 33).unwrap();
    pool.provision(1, (1 << 33) - 1).unwrap();
    pool.commit().unwrap();
    let mg = pool.lookup(1, (1 << 33) - 1).unwrap();
    println!(
        "grow to 2^33 extents (data device only): {:.1} ms incl. commit; growth extension of {} metadata blocks, capacity now {} extents; reopened, volume resized, last extent provisioned: {mg:?}",
        tg.as_secs_f64() * 1e3,
        sg.meta_fixed - st.meta_fixed,
        sg.data_capacity
    );
    drop(pool);
    let alloc = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    println!(
        "2^32 extents (256 TiB at 64 KiB), 1 TiB sparse metadata file: format {:.1} ms; 10000 provisions across the volume, snapshot, 1000 breaks, 2 commits, reopen, lookup ({m:?}) {:.1} ms; file allocation {}; data extents {}, metadata blocks {}",
        tf.as_secs_f64() * 1e3,
        te.as_secs_f64() * 1e3,
        human(alloc as f64),
        st.data_extents,
        st.meta_blocks
    );
}

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
    geometry();
    println!("pool_bench: {n} mapped extents, data {data} extents, metadata {meta} blocks, cache {cache} slots");
    let mut holds = Holds::default();

    let mut arena = slots(cache);
    let mut p = FormatParams::new(data);
    p.extent_size = 64 << 10;
    let mut pool = Pool::format(MemDevice::new(meta), &mut arena, p).unwrap();
    let fast_arena: Vec<FastSlot> = (0..(n as usize).clamp(1 << 16, 1 << 22))
        .map(|_| FastSlot::new())
        .collect();
    let fast = FastMap::new(&fast_arena).unwrap();
    pool.set_fast_map(fast);

    // Provision throughput (commit every 1 Mi extents).
    pool.create_volume(1, n).unwrap();
    pool.create_volume(9, n).unwrap();
    pool.create_volume(8, n).unwrap();
    let t = Instant::now();
    for v in 0..n {
        holds.time("provision", || pool.provision(1, v).unwrap());
        if v % (1 << 20) == (1 << 20) - 1 {
            holds.time("commit (1 Mi provisions)", || pool.commit().unwrap());
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

    // Metadata cost per mapped extent, counted by the checker from the
    // device's metadata space map (blocks with a non-zero count) and the
    // nodes it walked.
    let mut scratch = vec![0u32; pool.check_scratch_len() as usize];
    let r = pool.check(&mut scratch).unwrap();
    let written = pool
        .device()
        .blocks
        .iter()
        .filter(|b| b.iter().any(|&x| x != 0))
        .count();
    println!(
        "metadata counted from the device: {} blocks in use ({} tree nodes, {} fixed area reserved), {} blocks ever written; {:.2} bytes per mapped extent in use excluding the reserved fixed area, {:.2} B/extent of written blocks",
        r.meta_used,
        r.nodes,
        pool.stats().meta_fixed,
        written,
        (r.meta_used - pool.stats().meta_fixed) as f64 * BLOCK_SIZE as f64 / r.mapped as f64,
        written as f64 * BLOCK_SIZE as f64 / r.mapped as f64
    );
    let st = pool.stats();
    let used = st.meta_blocks - st.meta_free - st.meta_reserve;
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
    // Lock-free fast map: it holds unshared mappings only, so drop the
    // snapshot, fill the map with blocking lookups of a window of volume
    // 1, then take the snapshot again for the break measurements.
    let uid1 = pool.volume(1).unwrap().uid;
    let window = n.min(1 << 20);
    pool.delete_volume(2).unwrap();
    pool.commit().unwrap();
    for v in 0..window {
        pool.lookup(1, v).unwrap();
    }
    let t = Instant::now();
    let mut hits = 0u64;
    for _ in 0..probes {
        if fast.lookup(uid1, rnd() % window).is_some() {
            hits += 1;
        }
    }
    let df = t.elapsed();
    println!(
        "fast map lookup (lock-free, {} slots, random over {window} extents): {:.0} ns, {hits} hits of {probes}",
        fast_arena.len(),
        per(df, probes)
    );
    pool.snapshot(1, 2).unwrap();
    pool.commit().unwrap();

    // Break-sharing throughput: the snapshot's first `breaks` extents.
    let t = Instant::now();
    for v in 0..breaks {
        holds.time("break_sharing", || pool.break_sharing(2, v).unwrap());
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

    // Long operations: what they hold the pool for today.
    let big = (n / 2).min(1 << 20);
    pool.create_volume(20, n).unwrap();
    pool.create_volume(21, n).unwrap();
    holds.time("copy_range 1 Mi extents", || {
        pool.copy_range(1, 0, 20, 0, big).unwrap()
    });
    holds.time("copy_range 1 Mi extents", || {
        pool.copy_range(1, big, 21, 0, big).unwrap()
    });
    holds.time("commit after copies", || pool.commit().unwrap());
    holds.time("discard 1 Mi extents", || pool.discard(20, 0, big).unwrap());
    holds.time("delete 1 Mi-extent volume", || {
        pool.delete_volume(21).unwrap()
    });
    holds.time("delete emptied volume", || pool.delete_volume(20).unwrap());
    holds.time("commit after deletes", || pool.commit().unwrap());
    // The same work in bounded steps (the kernel releases its lock
    // between steps).
    pool.create_volume(22, n).unwrap();
    pool.create_volume(23, n).unwrap();
    let mut done = 0;
    while done < big {
        done += holds.time("copy_range_step 4096", || {
            pool.copy_range_step(1, done, 22, done, big - done, 4096)
                .unwrap()
        });
    }
    let mut done = 0;
    while done < big {
        done += holds.time("copy_range_step 4096", || {
            pool.copy_range_step(1, big + done, 23, done, big - done, 4096)
                .unwrap()
        });
    }
    pool.commit().unwrap();
    // Un-share volume 23's table first so that emptying it frees leaves.
    for v in (0..big).step_by(678) {
        pool.break_sharing(23, v).unwrap();
    }
    pool.commit().unwrap();
    let mut done = 0;
    while done < big {
        done += holds.time("discard_step 64 leaves", || {
            pool.discard_step(22, done, big - done, 64).unwrap()
        });
    }
    holds.time("delete emptied volume", || pool.delete_volume(22).unwrap());
    // Volume 23 (1 Mi extents, its own leaves) deleted in bounded steps.
    let mut steps = 0;
    loop {
        steps += 1;
        let done = holds.time("delete_volume_step 64 leaves", || {
            pool.delete_volume_step(23, 64).unwrap()
        });
        if done == n {
            break;
        }
    }
    println!(
        "delete_volume_step: volume of {big} mapped extents deleted in {steps} steps of 64 leaves"
    );
    // Again with a smaller bound (a shorter hold, more steps).
    pool.create_volume(24, n).unwrap();
    let mut done = 0;
    while done < big {
        done += pool
            .copy_range_step(1, done, 24, done, big - done, 1 << 16)
            .unwrap();
    }
    pool.commit().unwrap();
    for v in (0..big).step_by(678) {
        pool.break_sharing(24, v).unwrap();
    }
    pool.commit().unwrap();
    let mut steps = 0;
    loop {
        steps += 1;
        let done = holds.time("delete_volume_step 8 leaves", || {
            pool.delete_volume_step(24, 8).unwrap()
        });
        if done == n {
            break;
        }
    }
    println!(
        "delete_volume_step: volume of {big} mapped extents deleted in {steps} steps of 8 leaves"
    );
    pool.commit().unwrap();
    // 100 snapshots, each with one extent un-shared.
    for i in 0..100u32 {
        holds.time("snapshot", || pool.snapshot(1, 300 + i).unwrap());
        holds.time("break_sharing", || {
            pool.break_sharing(300 + i, u64::from(i) * 678 % n).unwrap()
        });
    }
    holds.time("commit (100 snapshots)", || pool.commit().unwrap());
    for i in 0..2000u64 {
        let v = (i * 7919) % n;
        holds.time("lookup (warm)", || pool.lookup(300, v).unwrap());
    }
    holds.print();

    // Check time on the full pool with 100 snapshots.
    let mut scratch = vec![0u32; pool.check_scratch_len() as usize];
    let t = Instant::now();
    let r = pool.check(&mut scratch).unwrap();
    println!(
        "check ({n} mapped extents, {} volumes incl. 100 snapshots): {:.2} s, clean {}, {} nodes, {} mapped leaf entries, {} passes",
        r.volumes,
        t.elapsed().as_secs_f64(),
        r.is_clean(),
        r.nodes,
        r.mapped,
        r.passes
    );
}
