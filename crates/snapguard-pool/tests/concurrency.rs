//! Concurrency stress: reader threads answer `lookup_cached` (the dm map
//! path) under the read side of a lock, concurrently with each other,
//! while a writer runs every kind of operation and commit under the write
//! side; every answer is compared with a model of plain maps kept under
//! the same lock. Checks that the `&self` read path is safe to share
//! (readers only set atomic recency flags) and always consistent.

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

#[derive(Default, Clone)]
struct Model {
    vols: BTreeMap<u32, (u64, BTreeMap<u64, u64>)>,
    /// Volumes being deleted in steps: hidden (lookups `NotFound`, no
    /// fast-map hit) but their remaining mappings still share.
    deleting: BTreeMap<u32, (u64, BTreeMap<u64, u64>)>,
    /// Mappings per physical extent (recomputed after each change).
    counts: BTreeMap<u64, usize>,
}

impl Model {
    fn expect(&self, id: u32, vext: u64) -> Result<Mapping, Error> {
        let (size, map) = self.vols.get(&id).ok_or(Error::NotFound)?;
        if vext >= *size {
            return Err(Error::Invalid);
        }
        Ok(match map.get(&vext) {
            None => Mapping::Unmapped,
            Some(p) => Mapping::Mapped {
                pext: *p,
                shared: self.counts.get(p).copied().unwrap_or(0) > 1,
            },
        })
    }
}

struct Shared {
    pool: Pool<'static, MemDevice>,
    model: Model,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const IDS: u32 = 4;
const SIZE: u64 = 3000;

fn writer_step(s: &mut Shared, rng: &mut Rng) {
    let id = rng.below(u64::from(IDS)) as u32;
    let id2 = rng.below(u64::from(IDS)) as u32;
    let v = rng.below(SIZE);
    let m = &mut s.model;
    match rng.below(9) {
        0 => {
            if s.pool.create_volume(id, SIZE).is_ok() {
                m.vols.insert(id, (SIZE, BTreeMap::new()));
            }
        }
        1 => {
            if rng.below(4) == 0 {
                if s.pool.delete_volume(id).is_ok() {
                    m.vols.remove(&id);
                    m.deleting.remove(&id);
                }
            } else if rng.below(2) == 0 {
                if let Ok(done) = s.pool.delete_volume_step(id, 1) {
                    if let Some(v) = m.vols.remove(&id) {
                        m.deleting.insert(id, v);
                    }
                    let (size, map) = m.deleting.get_mut(&id).unwrap();
                    map.retain(|k, _| *k >= done);
                    if done == *size {
                        m.deleting.remove(&id);
                    }
                }
            }
        }
        2 | 3 => {
            for k in v..(v + rng.below(50)).min(SIZE) {
                match s.pool.provision(id, k) {
                    Ok(p) => {
                        m.vols.get_mut(&id).unwrap().1.insert(k, p);
                    }
                    Err(_) => break,
                }
            }
        }
        4 => {
            if s.pool.snapshot(id, id2).is_ok() {
                let src = m.vols[&id].clone();
                m.vols.insert(id2, src);
            }
        }
        5 => {
            if let Ok(p) = s.pool.break_sharing(id, v) {
                m.vols.get_mut(&id).unwrap().1.insert(v, p.new);
            }
        }
        6 => {
            let len = rng.below(300).min(SIZE - v);
            if s.pool.discard(id, v, len).is_ok() {
                m.vols
                    .get_mut(&id)
                    .unwrap()
                    .1
                    .retain(|k, _| *k < v || *k >= v + len);
            }
        }
        7 => {
            let b = rng.below(SIZE);
            let len = rng.below(200).min(SIZE - v).min(SIZE - b);
            if s.pool.copy_range(id, v, id2, b, len).is_ok() {
                let vals: Vec<Option<u64>> = (0..len)
                    .map(|i| m.vols[&id].1.get(&(v + i)).copied())
                    .collect();
                let d = &mut m.vols.get_mut(&id2).unwrap().1;
                for (i, x) in vals.into_iter().enumerate() {
                    match x {
                        Some(p) => d.insert(b + i as u64, p),
                        None => d.remove(&(b + i as u64)),
                    };
                }
            }
        }
        _ => s.pool.commit().unwrap(),
    }
    m.counts.clear();
    for (_, map) in m.vols.values().chain(m.deleting.values()) {
        for p in map.values() {
            *m.counts.entry(*p).or_insert(0) += 1;
        }
    }
}

#[test]
fn readers_lookup_cached_while_writer_changes() {
    let arena: &'static mut [CacheSlot] = Box::leak(slots(40).into_boxed_slice());
    let mut p = FormatParams::new(20_000);
    p.max_volumes = 16;
    p.extent_size = 4096;
    let pool = Pool::format(MemDevice::new(4096), arena, p).unwrap();
    let shared = Arc::new(RwLock::new(Shared {
        pool,
        model: Model::default(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let (hits, blocked, misses) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let readers: Vec<_> = (0..3u64)
        .map(|t| {
            let (shared, stop) = (shared.clone(), stop.clone());
            let (hits, blocked, misses) = (hits.clone(), blocked.clone(), misses.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9 + t);
                while !stop.load(Relaxed) {
                    let g = shared.read().unwrap();
                    for _ in 0..64 {
                        let id = rng.below(u64::from(IDS)) as u32;
                        let v = rng.below(SIZE + 10);
                        let want = g.model.expect(id, v);
                        match g.pool.lookup_cached(id, v) {
                            Err(Error::WouldBlock) => {
                                blocked.fetch_add(1, Relaxed);
                            }
                            got => {
                                assert_eq!(got, want, "volume {id} extent {v}");
                                if matches!(got, Ok(Mapping::Mapped { .. })) {
                                    hits.fetch_add(1, Relaxed);
                                } else {
                                    misses.fetch_add(1, Relaxed);
                                }
                            }
                        }
                    }
                    let _ = g.pool.stats();
                    drop(g);
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    let mut rng = Rng(42);
    // At least 3000 writer steps, and on until the readers have compared
    // enough answers (on a loaded machine they get little CPU), bounded.
    let mut i = 0u32;
    while i < 3000 || (hits.load(Relaxed) <= 1000 && i < 200_000) {
        i += 1;
        let mut g = shared.write().unwrap();
        writer_step(&mut g, &mut rng);
        if i % 500 == 0 {
            let mut scratch = vec![0u32; g.pool.check_scratch_len() as usize];
            let r = g.pool.check(&mut scratch).unwrap();
            assert!(r.is_clean(), "{r:?}");
        }
        drop(g);
        std::thread::yield_now();
    }
    stop.store(true, Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let (h, b, m) = (
        hits.load(Relaxed),
        blocked.load(Relaxed),
        misses.load(Relaxed),
    );
    eprintln!("concurrency: {h} mapped answers compared, {m} unmapped/absent, {b} would-block");
    assert!(h > 1000, "{h}");
}

/// The lock-free fast map: readers look mappings up without any lock
/// while the writer (owning the pool) runs every operation; every hit must
/// be the model's unshared mapping whenever no writer operation overlapped
/// the read (sequence-checked), and hits must be frequent.
#[test]
fn fast_map_readers_without_lock() {
    use std::sync::atomic::fence;
    use std::sync::atomic::Ordering::{Acquire, Release};
    let fast: &'static [FastSlot] = Box::leak((0..4096).map(|_| FastSlot::new()).collect());
    let arena: &'static mut [CacheSlot] = Box::leak(slots(256).into_boxed_slice());
    let mut p = FormatParams::new(20_000);
    p.max_volumes = 16;
    p.extent_size = 4096;
    let mut pool = Pool::format(MemDevice::new(4096), arena, p).unwrap();
    pool.set_fast_map(FastMap::new(fast).unwrap());
    // (version, model, uid per volume): published by the writer when even.
    type Pub = (u64, Arc<Model>, BTreeMap<u32, u64>);
    let version = Arc::new(AtomicU64::new(0));
    let published: Arc<RwLock<Pub>> = Arc::new(RwLock::new((
        0,
        Arc::new(Model::default()),
        BTreeMap::new(),
    )));
    let stop = Arc::new(AtomicBool::new(false));
    let (hits, checked, skipped) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let readers: Vec<_> = (0..2u64)
        .map(|t| {
            let (version, published, stop) = (version.clone(), published.clone(), stop.clone());
            let (hits, checked, skipped) = (hits.clone(), checked.clone(), skipped.clone());
            std::thread::spawn(move || {
                let map = FastMap::new(fast).unwrap();
                let mut rng = Rng(0x51_7CC1 + t);
                while !stop.load(Relaxed) {
                    let v1 = version.load(Acquire);
                    if v1 & 1 != 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    let (pv, model, uids) = published.read().unwrap().clone();
                    if pv != v1 {
                        continue;
                    }
                    for _ in 0..256 {
                        let id = rng.below(u64::from(IDS)) as u32;
                        let Some(&uid) = uids.get(&id) else { continue };
                        let vext = rng.below(SIZE);
                        let r = map.lookup(uid, vext);
                        fence(Acquire);
                        if version.load(Relaxed) != v1 {
                            skipped.fetch_add(1, Relaxed);
                            break;
                        }
                        checked.fetch_add(1, Relaxed);
                        if let Some(pext) = r {
                            assert_eq!(
                                model.expect(id, vext),
                                Ok(Mapping::Mapped {
                                    pext,
                                    shared: false
                                }),
                                "fast map hit for volume {id} (uid {uid}) extent {vext}"
                            );
                            hits.fetch_add(1, Relaxed);
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_micros(20));
                }
            })
        })
        .collect();
    let mut shared = Shared {
        pool,
        model: Model::default(),
    };
    let mut rng = Rng(7);
    // At least 2500 writer steps, and on until the readers have checked
    // enough fast-map hits (on a loaded machine they get little CPU), with
    // a bound on the steps.
    let mut steps = 0u32;
    while steps < 2500 || (hits.load(Relaxed) <= 1000 && steps < 200_000) {
        steps += 1;
        version.fetch_add(1, Release);
        writer_step(&mut shared, &mut rng);
        // Lookups fill the fast map.
        for _ in 0..8 {
            let id = rng.below(u64::from(IDS)) as u32;
            let _ = shared.pool.lookup(id, rng.below(SIZE));
        }
        // Every listed volume, including those being deleted (which must
        // never give a fast-map hit: the model has them as absent).
        let mut uids = BTreeMap::new();
        let mut from = 0;
        while let Some(v) = shared.pool.next_volume(from).unwrap() {
            uids.insert(v.id, v.uid);
            from = v.id + 1;
        }
        let v = version.load(Relaxed) + 1;
        *published.write().unwrap() = (v, Arc::new(shared.model.clone()), uids);
        version.store(v, Release);
        std::thread::yield_now();
    }
    stop.store(true, Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let (h, c, s) = (
        hits.load(Relaxed),
        checked.load(Relaxed),
        skipped.load(Relaxed),
    );
    eprintln!("fast map: {steps} writer steps, {c} lock-free lookups checked, {h} hits, {s} reads overlapped a writer op (not checked)");
    assert!(h > 1000, "{h} hits");
}
