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
            if rng.below(4) == 0 && s.pool.delete_volume(id).is_ok() {
                m.vols.remove(&id);
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
    for (_, map) in m.vols.values() {
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
    for i in 0..3000 {
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
