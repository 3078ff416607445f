//! Crash consistency: a metadata device that records every write and
//! flush; for a crash after every single write, the writes since the last
//! flush are dropped, all kept, kept in random subsets (reordering) or the
//! last one torn. Each resulting image must open to exactly the last
//! committed transaction or the next one, pass the checker, and accept a
//! new transaction. Some transactions set or clear the `needs_check`
//! superblock flag (a commit with the flag), and some fail at their
//! superblock write and then set the flag on the failed pool (a
//! superblock for the last commit alone, then reopened): the flag is part
//! of the state compared, so a torn or lost flag write must leave the
//! older superblock in use and later commits must keep the flag.

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

type Image = Vec<[u8; BLOCK_SIZE]>;

/// Successful prepares, completions/cancels, grows, resizes (two kinds).
static OK_NEW: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
/// Grows that added a growth extension: with the data device alone, with
/// the metadata device too.
static GROW_EXT: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// Deletion steps that left a volume half-deleted, deletions finished by
/// a step, half-deleted volumes found in a crash image and finished there.
static DEL_PARTIAL: AtomicU64 = AtomicU64::new(0);
static DEL_DONE: AtomicU64 = AtomicU64::new(0);
static DEL_RESUMED: AtomicU64 = AtomicU64::new(0);
/// Successful `copy_range_step` calls.
static COPY_STEPS: AtomicU64 = AtomicU64::new(0);
/// `needs_check`: set by a commit, cleared, set on a failed pool, commits
/// that kept it.
static FLAG: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

enum Ev {
    W(u64, Box<[u8; BLOCK_SIZE]>),
    F,
}

struct RecDev {
    live: MemDevice,
    log: Vec<Ev>,
    /// Superblock writes fail (not logged, not done).
    fail_sb: bool,
}

impl MetaDevice for RecDev {
    fn read_block(&mut self, nr: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Error> {
        self.live.read_block(nr, buf)
    }
    fn write_block(&mut self, nr: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Error> {
        if self.fail_sb && nr < 2 {
            return Err(Error::Io);
        }
        self.log.push(Ev::W(nr, Box::new(*buf)));
        self.live.write_block(nr, buf)
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.log.push(Ev::F);
        Ok(())
    }
    fn nr_blocks(&self) -> u64 {
        self.live.nr_blocks()
    }
}

/// Logical state: volumes with their records and mappings, and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    vols: BTreeMap<u32, (VolumeInfo, Vec<(u64, Mapping)>)>,
    data_free: u64,
    meta_free: u64,
    data_extents: u64,
    meta_blocks: u64,
    data_capacity: u64,
    meta_capacity: u64,
    extensions: usize,
    needs_check: bool,
}

fn state<D: MetaDevice>(pool: &mut Pool<'_, D>) -> State {
    let mut vols = BTreeMap::new();
    let mut from = 0;
    while let Some(v) = pool.next_volume(from).unwrap() {
        let mut maps = vec![];
        let mut pos = 0;
        while let Some((k, m)) = pool.next_mapping(v.id, pos).unwrap() {
            maps.push((k, m));
            pos = k + 1;
        }
        vols.insert(v.id, (v, maps));
        from = v.id + 1;
    }
    let st = pool.stats();
    // Pending breaks' extents and reservations are free on disk.
    State {
        vols,
        data_free: st.data_free + st.pending_breaks as u64,
        meta_free: st.meta_free + st.meta_break_reserved,
        data_extents: st.data_extents,
        meta_blocks: st.meta_blocks,
        data_capacity: st.data_capacity,
        meta_capacity: st.meta_capacity,
        extensions: st.extensions,
        needs_check: st.needs_check,
    }
}

fn check_clean<D: MetaDevice>(pool: &mut Pool<'_, D>) {
    let r = snapguard_pool::host::check(pool).unwrap();
    assert!(r.is_clean(), "{r:?}");
}

/// Small deterministic PRNG (xorshift64*).
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

/// One random transaction's worth of operations (errors are fine: a
/// failed operation has no effect). Breaks prepared in `pending` may be
/// completed or cancelled in a later transaction (pending across commits).
fn random_txn<D: MetaDevice>(pool: &mut Pool<'_, D>, rng: &mut Rng, pending: &mut Vec<BreakPlan>) {
    let ids = [0u32, 1, 2, 3, 140];
    for _ in 0..2 + rng.below(9) {
        let id = ids[rng.below(5) as usize];
        let id2 = ids[rng.below(5) as usize];
        let v = rng.below(1400);
        let what = match rng.below(15) {
            // Half the deletes in steps, half the copies in steps.
            6 if rng.below(2) == 0 => 15,
            3 if rng.below(2) == 0 => 16,
            w => w,
        };
        let r = match what {
            // Two-phase breaks and provisions (both in the pending table).
            10 if rng.below(2) == 0 => pool.prepare_provision(id, v).map(|p| pending.push(p)),
            10 => pool.prepare_break(id, v).map(|p| {
                if p.new != p.old {
                    pending.push(p)
                }
            }),
            11 if !pending.is_empty() => {
                let p = pending.remove(rng.below(pending.len() as u64) as usize);
                match (p.old == NO_OLD, rng.below(4) == 0) {
                    (true, true) => pool.cancel_provision(&p),
                    (true, false) => pool.complete_provision(&p),
                    (false, true) => pool.cancel_break(&p),
                    (false, false) => pool.complete_break(&p),
                }
            }
            12 => {
                // Within the capacities, or beyond them (a growth
                // extension: in new metadata space, or in free blocks of
                // the old when only the data device grows).
                let st = pool.stats();
                let dev = pool.device().nr_blocks();
                let (nd, nm) = match rng.below(4) {
                    0 => (st.data_extents + 1 + rng.below(1500), st.meta_blocks),
                    1 => (
                        st.data_extents + rng.below(1500),
                        (st.meta_blocks + rng.below(60)).min(dev),
                    ),
                    _ => (
                        (st.data_extents + rng.below(200)).min(st.data_capacity),
                        (st.meta_blocks + rng.below(20)).min(st.meta_capacity),
                    ),
                };
                let r = pool.grow(nd, nm);
                if r.is_ok() && pool.stats().extensions > st.extensions {
                    GROW_EXT[usize::from(nm > st.meta_blocks)].fetch_add(1, Relaxed);
                }
                r
            }
            13 | 14 => pool.resize_volume(
                id,
                [500, 1000, 1400, 700, 100_000, 1 << 20][rng.below(6) as usize],
            ),
            0 => pool.create_volume(id, [1000, 1400, 100_000][rng.below(3) as usize]),
            1 => (0..rng.below(120)).try_for_each(|i| pool.provision(id, v + i).map(|_| ())),
            2 => pool.snapshot(id, id2),
            3 => pool.copy_range(id, v, id2, rng.below(1000), rng.below(300)),
            4 => pool.break_sharing(id, v).map(|_| ()),
            5 => pool.discard(id, v, rng.below(400)),
            6 => pool.delete_volume(id),
            16 => {
                // A bounded copy step; overlapping ranges of one volume
                // are refused and change nothing.
                let (a, b, len) = (v, rng.below(1400), rng.below(300));
                let overlap = id == id2 && len > 0 && a < b + len && b < a + len;
                let r = pool.copy_range_step(id, a, id2, b, len, 1 + rng.below(100));
                if overlap {
                    assert_eq!(r, Err(Error::Invalid));
                } else if r.is_ok() {
                    COPY_STEPS.fetch_add(1, Relaxed);
                }
                r.map(|_| ())
            }
            15 => pool.delete_volume_step(id, 1).map(|_| {
                let v = pool.next_volume(id).unwrap().filter(|v| v.id == id);
                if let Some(v) = v {
                    assert!(v.deleting);
                    DEL_PARTIAL.fetch_add(1, Relaxed);
                } else {
                    DEL_DONE.fetch_add(1, Relaxed);
                }
            }),
            7 => pool.apply_group(&[
                GroupOp::Snapshot { src: id, dst: id2 },
                GroupOp::Copy {
                    src: id2,
                    src_vext: 0,
                    dst: id,
                    dst_vext: v,
                    len: rng.below(50),
                },
            ]),
            8 => {
                if let Ok(Some(item)) = pool.bg_next(id) {
                    let _ = pool.break_sharing(id, item.vext);
                    pool.bg_advance(&item)
                } else {
                    Ok(())
                }
            }
            _ => (0..rng.below(40)).try_for_each(|i| pool.break_sharing(id, v + i).map(|_| ())),
        };
        if r.is_ok() && (10..15).contains(&what) {
            OK_NEW[(what - 10) as usize].fetch_add(1, Relaxed);
        }
    }
}

struct Outcome {
    points: u64,
    images: u64,
    to_old: u64,
    to_new: u64,
}

fn crash_run(seed: u64, cache: usize, meta_blocks: u64, txns: usize) -> Outcome {
    let mut s = slots(cache);
    let mut p = FormatParams::new(2500);
    p.max_volumes = 300;
    // Room to grow both devices.
    p.data_capacity = 4000;
    p.meta_blocks = meta_blocks - meta_blocks / 8;
    p.meta_capacity = meta_blocks;
    // The device is twice the capacity: growth goes beyond it too.
    let pool = Pool::format(MemDevice::new(meta_blocks * 2), &mut s, p).unwrap();
    let live = pool.into_device();
    let base: Image = live.blocks.clone();
    let mut pool = Pool::open(
        RecDev {
            live,
            log: vec![],
            fail_sb: false,
        },
        &mut s,
    )
    .unwrap();
    let mut rng = Rng(seed);
    // states[c]: after commit c (states[0]: the formatted pool);
    // commit_end[c]: writes logged when commit c finished.
    let mut states = vec![state(&mut pool)];
    let mut commit_end = vec![0usize];
    let mut pending = vec![];
    for _ in 0..txns {
        random_txn(&mut pool, &mut rng, &mut pending);
        let flag = pool.needs_check();
        match rng.below(16) {
            0 => {
                pool.set_needs_check().unwrap();
                assert!(pool.needs_check());
                FLAG[0].fetch_add(u64::from(!flag), Relaxed);
            }
            1 => {
                pool.clear_needs_check().unwrap();
                assert!(!pool.needs_check());
                FLAG[1].fetch_add(u64::from(flag), Relaxed);
            }
            2 if pool.is_dirty() => {
                // The commit fails at its superblock write; the flag goes
                // to the failed pool's last commit; reopened there.
                pool.device_mut().fail_sb = true;
                assert_eq!(pool.commit(), Err(Error::Io));
                pool.device_mut().fail_sb = false;
                assert!(pool.is_failed());
                pool.set_needs_check().unwrap();
                assert!(pool.needs_check());
                FLAG[2].fetch_add(u64::from(!flag), Relaxed);
                let (dev, s) = pool.into_parts();
                pool = Pool::open(dev, s).unwrap();
                assert!(pool.needs_check());
                pending.clear();
            }
            _ => {
                pool.commit().unwrap();
                assert_eq!(pool.needs_check(), flag);
                FLAG[3].fetch_add(u64::from(flag), Relaxed);
            }
        }
        check_clean(&mut pool);
        states.push(state(&mut pool));
        let writes = pool
            .device()
            .log
            .iter()
            .filter(|e| matches!(e, Ev::W(..)))
            .count();
        commit_end.push(writes);
    }
    let dev = pool.into_device();

    let mut out = Outcome {
        points: 0,
        images: 0,
        to_old: 0,
        to_new: 0,
    };
    let mut durable = base;
    let mut pending: Vec<(u64, &[u8; BLOCK_SIZE])> = vec![];
    let mut nwrites = 0usize;
    let mut crng = Rng(seed ^ 0xDEAD_BEEF);
    let mut slots2 = slots(cache);
    for ev in &dev.log {
        match ev {
            Ev::F => {
                for (nr, d) in pending.drain(..) {
                    durable[nr as usize] = *d;
                }
            }
            Ev::W(nr, d) => {
                pending.push((*nr, d));
                nwrites += 1;
                out.points += 1;
                // The write belongs to transaction c (commit c - 1 done).
                let c = commit_end.iter().position(|&e| e >= nwrites).unwrap();
                let n = pending.len();
                let mut variants: Vec<(Vec<bool>, bool)> = vec![
                    (vec![false; n], false),
                    (vec![true; n], false),
                    (vec![true; n], true),
                ];
                for _ in 0..3 {
                    variants.push(((0..n).map(|_| crng.below(2) == 1).collect(), false));
                }
                for (keep, torn) in variants {
                    let mut img = durable.clone();
                    for (i, (nr, d)) in pending.iter().enumerate() {
                        if !keep[i] {
                            continue;
                        }
                        if torn && i + 1 == n {
                            img[*nr as usize][..BLOCK_SIZE / 2]
                                .copy_from_slice(&d[..BLOCK_SIZE / 2]);
                        } else {
                            img[*nr as usize] = **d;
                        }
                    }
                    let dev = MemDevice::from_blocks(img);
                    let mut pool = Pool::open(dev, &mut slots2).expect("open after crash");
                    check_clean(&mut pool);
                    let st = state(&mut pool);
                    if st == states[c - 1] {
                        out.to_old += 1;
                    } else if st == states[c] {
                        out.to_new += 1;
                    } else {
                        panic!("crash after write {nwrites} (txn {c}): state is neither\n{st:?}\n{:?}\n{:?}", states[c - 1], states[c]);
                    }
                    out.images += 1;
                    // Deletions found half done can be finished.
                    let deleting: Vec<u32> = st
                        .vols
                        .values()
                        .filter(|v| v.0.deleting)
                        .map(|v| v.0.id)
                        .collect();
                    if !deleting.is_empty() && crng.below(4) == 0 {
                        let (dev, s) = pool.into_parts();
                        let mut p2 =
                            Pool::open(MemDevice::from_blocks(dev.blocks.clone()), s).unwrap();
                        for id in deleting {
                            let size = st.vols[&id].0.size;
                            let mut n = 0;
                            while p2.delete_volume_step(id, 1).unwrap() < size {
                                n += 1;
                                assert!(n < 2000);
                            }
                            assert!(p2.next_volume(id).unwrap().filter(|v| v.id == id).is_none());
                            DEL_RESUMED.fetch_add(1, Relaxed);
                        }
                        p2.commit().unwrap();
                        check_clean(&mut p2);
                        let (_, s) = p2.into_parts();
                        pool = Pool::open(dev, s).unwrap();
                    }
                    // The recovered pool must accept a new transaction.
                    if crng.below(8) == 0 {
                        random_txn(&mut pool, &mut crng, &mut vec![]);
                        pool.commit().unwrap();
                        check_clean(&mut pool);
                        let (dev, s) = pool.into_parts();
                        let mut pool = Pool::open(dev, s).unwrap();
                        check_clean(&mut pool);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn crash_after_every_write() {
    let mut total = Outcome {
        points: 0,
        images: 0,
        to_old: 0,
        to_new: 0,
    };
    for (seed, cache, meta, txns) in [
        (1u64, MIN_CACHE_SLOTS, 300u64, 150usize),
        (2, 256, 300, 150),
        (3, MIN_CACHE_SLOTS + 8, 120, 150),
    ] {
        let o = crash_run(seed, cache, meta, txns);
        eprintln!(
            "crash run seed {seed} cache {cache}: {} crash points, {} images, {} -> last commit, {} -> next",
            o.points, o.images, o.to_old, o.to_new
        );
        total.points += o.points;
        total.images += o.images;
        total.to_old += o.to_old;
        total.to_new += o.to_new;
    }
    eprintln!(
        "crash points checked: {} (images opened and checked: {}; last commit {}, next commit {})",
        total.points, total.images, total.to_old, total.to_new
    );
    let n: Vec<u64> = OK_NEW.iter().map(|a| a.load(Relaxed)).collect();
    eprintln!(
        "successful: {} prepares, {} completions/cancels (pending across commits), {} grows, {} resizes",
        n[0],
        n[1],
        n[2],
        n[3] + n[4]
    );
    let ge = GROW_EXT.each_ref().map(|a| a.load(Relaxed));
    eprintln!(
        "growth extensions added: {} by the data device alone, {} with the metadata device",
        ge[0], ge[1]
    );
    assert!(ge.iter().all(|&c| c > 0), "{ge:?}");
    let del = [&DEL_PARTIAL, &DEL_DONE, &DEL_RESUMED].map(|a| a.load(Relaxed));
    eprintln!(
        "deletion in steps: {} steps left a volume half-deleted, {} finished one, {} half-deleted volumes finished after a crash",
        del[0], del[1], del[2]
    );
    assert!(del.iter().all(|&c| c > 0), "{del:?}");
    let f = FLAG.each_ref().map(|a| a.load(Relaxed));
    eprintln!(
        "needs_check: set by {} commits, cleared by {}, set on {} failed pools, kept by {} commits",
        f[0], f[1], f[2], f[3]
    );
    assert!(f.iter().all(|&c| c > 0), "{f:?}");
    let cs = COPY_STEPS.load(Relaxed);
    eprintln!("copy_range_step: {cs} successful steps");
    assert!(cs > 0);
    assert!(total.to_new > 0 && total.to_old > 0);
    assert!(n.iter().all(|&c| c > 0), "{n:?}");
}
