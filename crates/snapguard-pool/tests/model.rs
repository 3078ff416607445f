//! Model-based property test: long random sequences of every operation,
//! compared after each step with a reference model made of plain maps
//! (every mapping, every shared flag, every data extent's in-use state and
//! the free counters), with the checker run after every commit and reopen.
//! Set `PROPTEST_CASES` for longer runs.

use proptest::prelude::*;
use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Outcome counters over all runs: ok, expected errors, space errors,
/// checker runs, mapped extents seen in comparisons.
static OK: AtomicU64 = AtomicU64::new(0);
static EXPECTED_ERR: AtomicU64 = AtomicU64::new(0);
static SPACE_ERR: AtomicU64 = AtomicU64::new(0);
static CHECKS: AtomicU64 = AtomicU64::new(0);
static MAPPED: AtomicU64 = AtomicU64::new(0);
static SHARED: AtomicU64 = AtomicU64::new(0);

const MAXV: u32 = 300;
const IDS: [u32; 8] = [0, 1, 2, 3, 4, 5, 130, 299];

#[derive(Clone, Debug)]
enum Op {
    Create {
        id: u32,
        size: u64,
    },
    Delete {
        id: u32,
    },
    Snapshot {
        src: u32,
        dst: u32,
    },
    Copy {
        src: u32,
        a: u64,
        dst: u32,
        b: u64,
        len: u64,
    },
    Provision {
        id: u32,
        vext: u64,
        n: u64,
    },
    Break {
        id: u32,
        vext: u64,
    },
    Prepare {
        id: u32,
        vext: u64,
    },
    Complete {
        k: usize,
    },
    Cancel {
        k: usize,
    },
    Discard {
        id: u32,
        vext: u64,
        len: u64,
    },
    Group {
        ops: Vec<GroupOp>,
    },
    BgStep {
        id: u32,
    },
    Commit,
    Reopen,
    Abort,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct MVol {
    size: u64,
    map: BTreeMap<u64, u64>,
    bg_cursor: u64,
    bg_done: u64,
}

#[derive(Clone, Debug, Default)]
struct Model {
    vols: BTreeMap<u32, MVol>,
}

impl Model {
    fn counts(&self) -> BTreeMap<u64, u32> {
        let mut c = BTreeMap::new();
        for v in self.vols.values() {
            for p in v.map.values() {
                *c.entry(*p).or_insert(0) += 1;
            }
        }
        c
    }

    fn shared(&self, pext: u64) -> bool {
        self.counts().get(&pext).copied().unwrap_or(0) > 1
    }

    /// Validates and applies a group op (the model's own order of checks
    /// mirrors the pool's).
    fn group_op(&mut self, op: &GroupOp) -> Result<(), Error> {
        match *op {
            GroupOp::Snapshot { src, dst } => {
                if src >= MAXV || dst >= MAXV {
                    return Err(Error::Invalid);
                }
                let s = self.vols.get(&src).ok_or(Error::NotFound)?.clone();
                if self.vols.contains_key(&dst) {
                    return Err(Error::Exists);
                }
                self.vols.insert(
                    dst,
                    MVol {
                        size: s.size,
                        map: s.map,
                        bg_cursor: 0,
                        bg_done: 0,
                    },
                );
                Ok(())
            }
            GroupOp::Copy {
                src,
                src_vext,
                dst,
                dst_vext,
                len,
            } => {
                if src >= MAXV || dst >= MAXV {
                    return Err(Error::Invalid);
                }
                let s = self.vols.get(&src).ok_or(Error::NotFound)?;
                let d = self.vols.get(&dst).ok_or(Error::NotFound)?;
                let se = src_vext.checked_add(len).ok_or(Error::Invalid)?;
                let de = dst_vext.checked_add(len).ok_or(Error::Invalid)?;
                if se > s.size || de > d.size {
                    return Err(Error::Invalid);
                }
                let vals: Vec<Option<u64>> = (0..len)
                    .map(|i| s.map.get(&(src_vext + i)).copied())
                    .collect();
                let d = self.vols.get_mut(&dst).unwrap();
                for (i, v) in vals.into_iter().enumerate() {
                    let k = dst_vext + i as u64;
                    match v {
                        Some(p) => {
                            d.map.insert(k, p);
                        }
                        None => {
                            d.map.remove(&k);
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

fn id() -> impl Strategy<Value = u32> {
    prop_oneof![4 => (0usize..6).prop_map(|i| IDS[i]), 1 => (6usize..8).prop_map(|i| IDS[i]), 1 => Just(MAXV)]
}
fn vext() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 0u64..1600, 1 => 298_500u64..300_100]
}
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 1u64..1500, 1 => Just(300_000u64), 1 => Just(678u64), 1 => Just(679u64), 1 => Just(0u64)]
}
fn len() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..40, 2 => 0u64..800, 1 => Just(300_000u64)]
}
fn group_op() -> impl Strategy<Value = GroupOp> {
    prop_oneof![
        (id(), id()).prop_map(|(src, dst)| GroupOp::Snapshot { src, dst }),
        (id(), vext(), id(), vext(), len()).prop_map(|(src, src_vext, dst, dst_vext, len)| {
            GroupOp::Copy {
                src,
                src_vext,
                dst,
                dst_vext,
                len,
            }
        }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (id(), size()).prop_map(|(id, size)| Op::Create { id, size }),
        1 => id().prop_map(|id| Op::Delete { id }),
        3 => (id(), id()).prop_map(|(src, dst)| Op::Snapshot { src, dst }),
        2 => (id(), vext(), id(), vext(), len()).prop_map(|(src, a, dst, b, len)| Op::Copy { src, a, dst, b, len }),
        6 => (id(), vext(), prop_oneof![3 => 1u64..60, 1 => 1u64..400]).prop_map(|(id, vext, n)| Op::Provision { id, vext, n }),
        3 => (id(), vext()).prop_map(|(id, vext)| Op::Break { id, vext }),
        2 => (id(), vext()).prop_map(|(id, vext)| Op::Prepare { id, vext }),
        2 => any::<usize>().prop_map(|k| Op::Complete { k }),
        1 => any::<usize>().prop_map(|k| Op::Cancel { k }),
        2 => (id(), vext(), len()).prop_map(|(id, vext, len)| Op::Discard { id, vext, len }),
        1 => proptest::collection::vec(group_op(), 0..5).prop_map(|ops| Op::Group { ops }),
        1 => id().prop_map(|id| Op::BgStep { id }),
        2 => Just(Op::Commit),
        1 => Just(Op::Reopen),
        1 => Just(Op::Abort),
    ]
}

/// Accepts a pool result against the model's expectation; returns the
/// value when the model change must be applied.
fn accept<T: std::fmt::Debug>(
    res: Result<T, Error>,
    expect: Result<(), Error>,
    what: &str,
) -> Option<T> {
    match (res, expect) {
        (Ok(v), Ok(())) => {
            OK.fetch_add(1, Relaxed);
            Some(v)
        }
        (Err(Error::NoSpace | Error::NoMetadataSpace), Ok(())) => {
            SPACE_ERR.fetch_add(1, Relaxed);
            None
        }
        (Err(e), Err(x)) if e == x => {
            EXPECTED_ERR.fetch_add(1, Relaxed);
            None
        }
        (r, x) => panic!("{what}: pool {r:?}, model {x:?}"),
    }
}

struct Run<'s> {
    pool: Option<Pool<'s, MemDevice>>,
    model: Model,
    committed: Model,
    pending: Vec<BreakPlan>,
    checks: u64,
    data: u64,
}

impl<'s> Run<'s> {
    fn pool(&mut self) -> &mut Pool<'s, MemDevice> {
        self.pool.as_mut().unwrap()
    }

    fn check(&mut self) {
        let pool = self.pool.as_mut().unwrap();
        let mut scratch = vec![0u32; pool.check_scratch_len() as usize];
        let r = pool.check(&mut scratch).unwrap();
        assert!(r.is_clean(), "checker: {r:?}");
        self.checks += 1;
        CHECKS.fetch_add(1, Relaxed);
    }

    fn vol_check(&self, id: u32, vext: u64) -> Result<&MVol, Error> {
        let v = self.model.vols.get(&id).ok_or(Error::NotFound)?;
        if vext >= v.size {
            return Err(Error::Invalid);
        }
        Ok(v)
    }

    fn pending_news(&self) -> BTreeSet<u64> {
        self.pending.iter().map(|p| p.new).collect()
    }

    fn assert_fresh(&self, pext: u64) {
        assert!(pext < self.data);
        assert!(
            !self.model.counts().contains_key(&pext),
            "pext {pext} in use"
        );
        assert!(!self.pending_news().contains(&pext), "pext {pext} pending");
    }

    /// One sharing break through the model; returns the plan if applied.
    fn do_break(&mut self, id: u32, vext: u64, two_phase: bool) -> Option<BreakPlan> {
        let expect = self
            .vol_check(id, vext)
            .and_then(|v| match v.map.get(&vext) {
                None => Err(Error::NotFound),
                Some(p) => {
                    if self.model.shared(*p)
                        && self
                            .pending
                            .iter()
                            .any(|q| q.volume == id && q.vext == vext)
                    {
                        Err(Error::Busy)
                    } else {
                        Ok(())
                    }
                }
            });
        let res = if two_phase {
            self.pool().prepare_break(id, vext)
        } else {
            self.pool().break_sharing(id, vext)
        };
        let plan = accept(res, expect, "break")?;
        let old = self.model.vols[&id].map[&vext];
        assert_eq!(plan.old, old);
        if !self.model.shared(old) {
            assert_eq!(plan.new, old);
            return None;
        }
        self.assert_fresh(plan.new);
        if two_phase {
            self.pending.push(plan);
        } else {
            self.model
                .vols
                .get_mut(&id)
                .unwrap()
                .map
                .insert(vext, plan.new);
        }
        Some(plan)
    }

    fn step(&mut self, op: &Op) {
        match op.clone() {
            Op::Create { id, size } => {
                let expect = if size == 0 || size > MAX_VOLUME_EXTENTS || id >= MAXV {
                    Err(Error::Invalid)
                } else if self.model.vols.contains_key(&id) {
                    Err(Error::Exists)
                } else {
                    Ok(())
                };
                if accept(self.pool().create_volume(id, size), expect, "create").is_some() {
                    self.model.vols.insert(
                        id,
                        MVol {
                            size,
                            ..MVol::default()
                        },
                    );
                }
            }
            Op::Delete { id } => {
                let expect = if id >= MAXV {
                    Err(Error::Invalid)
                } else if self.model.vols.contains_key(&id) {
                    Ok(())
                } else {
                    Err(Error::NotFound)
                };
                if accept(self.pool().delete_volume(id), expect, "delete").is_some() {
                    self.model.vols.remove(&id);
                }
            }
            Op::Snapshot { src, dst } => self.group(vec![GroupOp::Snapshot { src, dst }]),
            Op::Copy {
                src,
                a,
                dst,
                b,
                len,
            } => self.group(vec![GroupOp::Copy {
                src,
                src_vext: a,
                dst,
                dst_vext: b,
                len,
            }]),
            Op::Group { ops } => self.group(ops),
            Op::Provision { id, vext, n } => {
                for i in 0..n {
                    let k = vext + i;
                    let expect = if id >= MAXV {
                        Err(Error::Invalid)
                    } else {
                        self.vol_check(id, k).and_then(|v| {
                            if v.map.contains_key(&k) {
                                Err(Error::Exists)
                            } else {
                                Ok(())
                            }
                        })
                    };
                    let stop = expect.is_err();
                    if let Some(p) = accept(self.pool().provision(id, k), expect, "provision") {
                        self.assert_fresh(p);
                        self.model.vols.get_mut(&id).unwrap().map.insert(k, p);
                    } else if !stop {
                        break;
                    }
                    if stop && k >= self.model.vols.get(&id).map(|v| v.size).unwrap_or(0) {
                        break;
                    }
                }
            }
            Op::Break { id, vext } => {
                if id < MAXV {
                    self.do_break(id, vext, false);
                }
            }
            Op::Prepare { id, vext } => {
                if id < MAXV {
                    self.do_break(id, vext, true);
                }
            }
            Op::Complete { k } => {
                if self.pending.is_empty() {
                    return;
                }
                let plan = self.pending.remove(k % self.pending.len());
                let still = self
                    .model
                    .vols
                    .get(&plan.volume)
                    .and_then(|v| v.map.get(&plan.vext))
                    == Some(&plan.old);
                let res = self.pool().complete_break(&plan);
                if still {
                    assert_eq!(res, Ok(()));
                    self.model
                        .vols
                        .get_mut(&plan.volume)
                        .unwrap()
                        .map
                        .insert(plan.vext, plan.new);
                } else {
                    assert_eq!(res, Err(Error::Busy));
                }
            }
            Op::Cancel { k } => {
                if self.pending.is_empty() {
                    return;
                }
                let plan = self.pending.remove(k % self.pending.len());
                assert_eq!(self.pool().cancel_break(&plan), Ok(()));
            }
            Op::Discard { id, vext, len } => {
                let expect = if id >= MAXV {
                    Err(Error::Invalid)
                } else {
                    match self.model.vols.get(&id) {
                        None => Err(Error::NotFound),
                        Some(v) => match vext.checked_add(len) {
                            Some(e) if e <= v.size => Ok(()),
                            _ => Err(Error::Invalid),
                        },
                    }
                };
                if accept(self.pool().discard(id, vext, len), expect, "discard").is_some() {
                    let v = self.model.vols.get_mut(&id).unwrap();
                    let keys: Vec<u64> = v.map.range(vext..vext + len).map(|(k, _)| *k).collect();
                    for k in keys {
                        v.map.remove(&k);
                    }
                }
            }
            Op::BgStep { id } => {
                let Some(v) = self.model.vols.get(&id).cloned() else {
                    if id < MAXV {
                        assert_eq!(self.pool().bg_next(id), Err(Error::NotFound));
                    }
                    return;
                };
                let counts = self.model.counts();
                let shared: Vec<u64> = v
                    .map
                    .range(v.bg_cursor..)
                    .filter(|(_, p)| counts[p] > 1)
                    .map(|(k, _)| *k)
                    .collect();
                let prog = self.pool().bg_progress(id).unwrap();
                assert_eq!(
                    (prog.cursor, prog.done, prog.remaining),
                    (v.bg_cursor, v.bg_done, shared.len() as u64)
                );
                let next = self.pool().bg_next(id).unwrap();
                assert_eq!(next.map(|(k, _)| k), shared.first().copied());
                if let Some((k, p)) = next {
                    assert_eq!(p, v.map[&k]);
                    if self.pending.iter().any(|q| q.volume == id && q.vext == k) {
                        return;
                    }
                    if self.do_break(id, k, false).is_some()
                        && accept(self.pool().bg_advance(id, k), Ok(()), "bg_advance").is_some()
                    {
                        let mv = self.model.vols.get_mut(&id).unwrap();
                        mv.bg_cursor = mv.bg_cursor.max(k + 1);
                        mv.bg_done += 1;
                    }
                }
            }
            Op::Commit => {
                self.pool().commit().unwrap();
                self.committed = self.model.clone();
                self.check();
            }
            Op::Reopen => {
                let (dev, s) = self.pool.take().unwrap().into_parts();
                self.pool = Some(Pool::open(dev, s).unwrap());
                self.model = self.committed.clone();
                self.pending.clear();
                self.check();
            }
            Op::Abort => {
                self.pool().abort();
                self.model = self.committed.clone();
                self.pending.clear();
            }
        }
    }

    fn group(&mut self, ops: Vec<GroupOp>) {
        let mut m = self.model.clone();
        let mut expect = Ok(());
        for op in &ops {
            if let Err(e) = m.group_op(op) {
                expect = Err(e);
                break;
            }
        }
        if ops.len() > MAX_GROUP_OPS {
            expect = Err(Error::Invalid);
        }
        if accept(self.pool().apply_group(&ops), expect, "group").is_some() {
            self.model = m;
        }
    }

    /// Compares the whole pool with the model.
    fn compare(&mut self) {
        let model = self.model.clone();
        let news = self.pending_news();
        let pool = self.pool.as_mut().unwrap();
        let mut ids = vec![];
        let mut from = 0u32;
        while let Some(v) = pool.next_volume(from).unwrap() {
            ids.push(v.id);
            let mv = &model.vols[&v.id];
            assert_eq!(
                (v.size, v.bg_cursor, v.bg_done),
                (mv.size, mv.bg_cursor, mv.bg_done)
            );
            from = v.id + 1;
        }
        assert_eq!(ids, model.vols.keys().copied().collect::<Vec<_>>());
        let counts = model.counts();
        for (id, mv) in &model.vols {
            let mut got = BTreeMap::new();
            let mut pos = 0;
            while let Some((k, m)) = pool.next_mapping(*id, pos).unwrap() {
                let Mapping::Mapped { pext, shared } = m else {
                    panic!("unmapped")
                };
                assert_eq!(shared, counts[&pext] > 1, "vol {id} vext {k}");
                MAPPED.fetch_add(1, Relaxed);
                SHARED.fetch_add(shared as u64, Relaxed);
                got.insert(k, pext);
                pos = k + 1;
            }
            assert_eq!(&got, &mv.map, "vol {id}");
            for (k, p) in mv.map.iter().take(3) {
                match pool.lookup_cached(*id, *k) {
                    Err(Error::WouldBlock) => {}
                    r => assert_eq!(
                        r,
                        Ok(Mapping::Mapped {
                            pext: *p,
                            shared: counts[p] > 1
                        })
                    ),
                }
            }
        }
        let mut used = 0;
        for p in 0..self.data {
            let rc = pool.data_refcount(p).unwrap();
            let want = counts.contains_key(&p) || news.contains(&p);
            assert_eq!(rc > 0, want, "pext {p} rc {rc}");
            used += want as u64;
        }
        let st = pool.stats();
        assert_eq!(st.data_free, self.data - used);
        assert_eq!(st.volumes, model.vols.len() as u64);
        assert_eq!(st.pending_breaks, self.pending.len());
    }
}

fn run(ops: &[Op], cache: usize, meta: u64, data: u64) {
    let mut s = slots(cache);
    let mut p = FormatParams::new(data);
    p.max_volumes = MAXV;
    p.extent_size = 4096;
    let pool = Pool::format(MemDevice::new(meta), &mut s, p).unwrap();
    let mut r = Run {
        pool: Some(pool),
        model: Model::default(),
        committed: Model::default(),
        pending: vec![],
        checks: 0,
        data,
    };
    for op in ops {
        r.step(op);
        r.compare();
    }
    r.step(&Op::Commit);
    r.step(&Op::Reopen);
    r.compare();
    eprintln!(
        "model: ok {} expected-errors {} space-errors {} checks {} mapped-compared {} shared {}",
        OK.load(Relaxed),
        EXPECTED_ERR.load(Relaxed),
        SPACE_ERR.load(Relaxed),
        CHECKS.load(Relaxed),
        MAPPED.load(Relaxed),
        SHARED.load(Relaxed)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48), max_shrink_iters: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn model_big_cache(ops in proptest::collection::vec(op(), 1..250)) {
        run(&ops, 512, 400, 700);
    }

    #[test]
    fn model_tiny_cache(ops in proptest::collection::vec(op(), 1..250)) {
        run(&ops, MIN_CACHE_SLOTS, 400, 700);
    }

    #[test]
    fn model_low_metadata(ops in proptest::collection::vec(op(), 1..250)) {
        run(&ops, 40, 40, 250);
    }
}
