//! Prices the dm-thin style data space map (2 bits per data extent, counts
//! above 2 in an overflow tree) against the present one (a u32 per data
//! extent in the fixed area, two copies) on the real core: a
//! target-like workload runs on a pool, and after every operation every
//! data extent's reference count is compared with its value before the
//! operation (`Pool::data_refcount`), giving exactly which counts each
//! operation changed. From that:
//!
//! * present map: space map blocks (1018 counts each) dirtied per
//!   transaction; they are copied inside the fixed area (ping-pong), so
//!   no operation allocates metadata for a count change;
//! * 2-bit map: bitmap blocks (16288 two-bit entries each) dirtied, and
//!   the overflow tree: entries inserted / updated / removed (a change
//!   with the old or the new count above 2), and overflow leaves touched,
//!   modelled as a radix tree of u32 count blocks keyed by
//!   `pext / 1018` (the densest possible overflow leaf: a B-tree of
//!   12-byte (key, count) entries holds 339 per leaf, so it touches at
//!   least as many leaves): each leaf first touched in a transaction is
//!   shadowed (one metadata allocation, plus its path when not yet
//!   shadowed) -- the allocations that count changes would need and that
//!   today's up-front bounds and freeing reserve do not cover.
//!
//! Workload: an origin volume fully provisioned (sequentially, or in a
//! random order so that physical extents are scattered), then epochs of:
//! snapshot of the origin, random writes (sharing breaks) to the origin
//! and to the two newest snapshots, deletion of the oldest snapshot
//! beyond `KEEP`; a commit every 64 operations.
//!
//! `cargo run --release -p snapguard-pool --example refcount_alternatives`
//! (`RC_EXTENTS`, default 16384 origin extents; `RC_EPOCHS`, default 12).

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;
use std::collections::{BTreeMap, BTreeSet};

/// Counts per present space map block.
const SM_ENTRIES: u64 = 1018;
/// Two-bit entries per bitmap block (4072 payload bytes).
const BITMAP_ENTRIES: u64 = 16288;
/// u32 counts per overflow leaf (radix model).
const OVF_LEAF: u64 = 1018;
const KEEP: usize = 8;
const TXN_OPS: u64 = 64;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Default)]
struct OpStats {
    n: u64,
    changes: u64,
    max_changes: u64,
    ovf: u64,
    max_ovf: u64,
    ovf_leaves: u64,
    max_ovf_leaves: u64,
}

#[derive(Default)]
struct TxnStats {
    n: u64,
    sm_blocks: u64,
    max_sm_blocks: u64,
    bitmap_blocks: u64,
    ovf_leaves: u64,
    max_ovf_leaves: u64,
}

struct Bench {
    counts: Vec<u32>,
    ops: BTreeMap<&'static str, OpStats>,
    txn: TxnStats,
    /// Dirty in the open transaction: present space map blocks, bitmap
    /// blocks, overflow leaves.
    t_sm: BTreeSet<u64>,
    t_bm: BTreeSet<u64>,
    t_ovf: BTreeSet<u64>,
    ops_in_txn: u64,
}

impl Bench {
    fn scan(&mut self, pool: &mut Pool<'_, MemDevice>, what: &'static str) {
        let (mut changes, mut ovf) = (0u64, 0u64);
        let mut leaves = BTreeSet::new();
        for (p, c) in self.counts.iter_mut().enumerate() {
            let p = p as u64;
            let new = pool.data_refcount(p).unwrap();
            let old = *c;
            if new == old {
                continue;
            }
            *c = new;
            changes += 1;
            self.t_sm.insert(p / SM_ENTRIES);
            if old.min(3) != new.min(3) {
                self.t_bm.insert(p / BITMAP_ENTRIES);
            }
            if old.max(new) >= 3 {
                ovf += 1;
                leaves.insert(p / OVF_LEAF);
                self.t_ovf.insert(p / OVF_LEAF);
            }
        }
        let s = self.ops.entry(what).or_default();
        s.n += 1;
        s.changes += changes;
        s.max_changes = s.max_changes.max(changes);
        s.ovf += ovf;
        s.max_ovf = s.max_ovf.max(ovf);
        let l = leaves.len() as u64;
        s.ovf_leaves += l;
        s.max_ovf_leaves = s.max_ovf_leaves.max(l);
        self.ops_in_txn += 1;
        if self.ops_in_txn >= TXN_OPS {
            self.commit(pool);
        }
    }

    fn commit(&mut self, pool: &mut Pool<'_, MemDevice>) {
        pool.commit().unwrap();
        let t = &mut self.txn;
        t.n += 1;
        let sm = self.t_sm.len() as u64;
        t.sm_blocks += sm;
        t.max_sm_blocks = t.max_sm_blocks.max(sm);
        t.bitmap_blocks += self.t_bm.len() as u64;
        let o = self.t_ovf.len() as u64;
        t.ovf_leaves += o;
        t.max_ovf_leaves = t.max_ovf_leaves.max(o);
        self.t_sm.clear();
        self.t_bm.clear();
        self.t_ovf.clear();
        self.ops_in_txn = 0;
    }
}

fn run(n: u64, epochs: u32, scattered: bool) {
    let data = n * 4;
    let meta = 4 * (n / 678 + 64) * (epochs as u64 + 4) + 4096;
    let mut s = slots(8192);
    let mut p = FormatParams::new(data);
    p.max_volumes = 1024;
    let mut pool = Pool::format(MemDevice::new(meta), &mut s, p).unwrap();
    let mut rng = Rng(0x5EED ^ n ^ scattered as u64);
    pool.create_volume(0, n).unwrap();
    let mut order: Vec<u64> = (0..n).collect();
    if scattered {
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
    }
    for v in order {
        pool.provision(0, v).unwrap();
    }
    pool.commit().unwrap();
    let mut b = Bench {
        counts: (0..data).map(|p| pool.data_refcount(p).unwrap()).collect(),
        ops: BTreeMap::new(),
        txn: TxnStats::default(),
        t_sm: BTreeSet::new(),
        t_bm: BTreeSet::new(),
        t_ovf: BTreeSet::new(),
        ops_in_txn: 0,
    };
    let writes = n / 64;
    let mut snaps: Vec<u32> = vec![];
    for e in 0..epochs {
        let id = 1 + e;
        pool.snapshot(0, id).unwrap();
        b.scan(&mut pool, "snapshot");
        snaps.push(id);
        for _ in 0..writes {
            let v = rng.below(n);
            pool.break_sharing(0, v).unwrap();
            b.scan(&mut pool, "write origin (break)");
        }
        for &sid in snaps.iter().rev().take(2) {
            for _ in 0..writes / 4 {
                let v = rng.below(n);
                pool.break_sharing(sid, v).unwrap();
                b.scan(&mut pool, "write snapshot (break)");
            }
        }
        if snaps.len() > KEEP {
            let old = snaps.remove(0);
            pool.delete_volume(old).unwrap();
            b.scan(&mut pool, "delete oldest snapshot");
        }
    }
    // A deletion in bounded steps of one leaf (a freeing operation).
    let old = snaps.remove(0);
    loop {
        let done = pool.delete_volume_step(old, 1).unwrap();
        b.scan(&mut pool, "delete_volume_step 1 leaf");
        if done == n {
            break;
        }
    }
    b.commit(&mut pool);

    let mut hist = [0u64; 4];
    for &c in &b.counts {
        hist[(c as usize).min(3)] += 1;
    }
    let ovf_entries = hist[3];
    let ovf_leaves: BTreeSet<u64> = b
        .counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c >= 3)
        .map(|(p, _)| p as u64 / OVF_LEAF)
        .collect();
    let used = hist[1] + hist[2] + hist[3];
    println!(
        "\n== origin {n} extents provisioned {}, {epochs} epochs ({writes} origin writes each), data {data} extents",
        if scattered { "in random order" } else { "sequentially" }
    );
    println!(
        "end: extents in use {used}: count 1: {}, 2: {}, >=3: {} ({:.1}%); overflow tree: {} entries in {} leaves of 1018 (radix) or >= {} leaves of 339 (B-tree)",
        hist[1],
        hist[2],
        hist[3],
        hist[3] as f64 * 100.0 / used.max(1) as f64,
        ovf_entries,
        ovf_leaves.len(),
        ovf_entries.div_ceil(339)
    );
    println!(
        "{:<28} {:>6} | {:>8} {:>6} | {:>9} {:>6} | {:>10} {:>6}",
        "operation", "n", "rc chg", "max", "ovf chg", "max", "ovf leaves", "max"
    );
    for (k, s) in &b.ops {
        println!(
            "{:<28} {:>6} | {:>8.1} {:>6} | {:>9.1} {:>6} | {:>10.2} {:>6}",
            k,
            s.n,
            s.changes as f64 / s.n as f64,
            s.max_changes,
            s.ovf as f64 / s.n as f64,
            s.max_ovf,
            s.ovf_leaves as f64 / s.n as f64,
            s.max_ovf_leaves
        );
    }
    let t = &b.txn;
    println!(
        "per transaction ({} of <= {TXN_OPS} ops): present map {:.2} space map blocks dirtied (max {}), no allocation; 2-bit map {:.2} bitmap blocks + {:.2} overflow leaves shadowed (max {}) = allocations (+ their tree paths)",
        t.n,
        t.sm_blocks as f64 / t.n as f64,
        t.max_sm_blocks,
        t.bitmap_blocks as f64 / t.n as f64,
        t.ovf_leaves as f64 / t.n as f64,
        t.max_ovf_leaves
    );
}

fn main() {
    let n: u64 = std::env::var("RC_EXTENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16384);
    let epochs: u32 = std::env::var("RC_EPOCHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    println!(
        "fixed bytes per data extent: present map 2 x 4 B = 8 B (+ index 2 bits per 1018); 2-bit map 2 x 2 bits = 0.5 B (+ index, + overflow tree as used)"
    );
    run(n, epochs, false);
    run(n, epochs, true);
}
