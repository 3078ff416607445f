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
static FAST_HITS: AtomicU64 = AtomicU64::new(0);
static DELETE_STEPS: AtomicU64 = AtomicU64::new(0);
static DELETES_DONE: AtomicU64 = AtomicU64::new(0);
/// Grows that added a growth extension.
static GROW_EXT: AtomicU64 = AtomicU64::new(0);

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
    /// Two-phase provisioning (a plan in the pending table too).
    PrepareProvision {
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
    Resize {
        id: u32,
        size: u64,
    },
    DiscardStep {
        id: u32,
        vext: u64,
        len: u64,
        max: u64,
    },
    CopyStep {
        src: u32,
        a: u64,
        dst: u32,
        b: u64,
        len: u64,
        max: u64,
    },
    Grow {
        data: u64,
        meta: u64,
    },
    DeleteStep {
        id: u32,
        max: u64,
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
    /// Volumes being deleted in steps: hidden, ids taken, what they still
    /// map counts.
    deleting: BTreeMap<u32, MVol>,
}

impl Model {
    fn counts(&self) -> BTreeMap<u64, u32> {
        let mut c = BTreeMap::new();
        for v in self.vols.values().chain(self.deleting.values()) {
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
                if self.vols.contains_key(&dst) || self.deleting.contains_key(&dst) {
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
        2 => (id(), vext()).prop_map(|(id, vext)| Op::PrepareProvision { id, vext }),
        2 => any::<usize>().prop_map(|k| Op::Complete { k }),
        1 => any::<usize>().prop_map(|k| Op::Cancel { k }),
        2 => (id(), vext(), len()).prop_map(|(id, vext, len)| Op::Discard { id, vext, len }),
        1 => proptest::collection::vec(group_op(), 0..5).prop_map(|ops| Op::Group { ops }),
        1 => id().prop_map(|id| Op::BgStep { id }),
        1 => (id(), size()).prop_map(|(id, size)| Op::Resize { id, size }),
        2 => (id(), vext(), len(), 0u64..4).prop_map(|(id, vext, len, max)| Op::DiscardStep { id, vext, len, max }),
        1 => (id(), vext(), id(), vext(), len(), 0u64..300).prop_map(|(src, a, dst, b, len, max)| Op::CopyStep { src, a, dst, b, len, max }),
        1 => (0u64..200, 0u64..40).prop_map(|(data, meta)| Op::Grow { data, meta }),
        2 => (id(), 0u64..3).prop_map(|(id, max)| Op::DeleteStep { id, max }),
        2 => Just(Op::Commit),
        1 => Just(Op::Reopen),
        1 => Just(Op::Abort),
    ]
}

/// Accepts a pool result against the model's expectation; returns the
/// value when the model change must be applied. An injected I/O error
/// (`faulted`) is noted in `io_hit` and applies nothing.
fn accept<T: std::fmt::Debug>(
    res: Result<T, Error>,
    expect: Result<(), Error>,
    what: &str,
    faulted: bool,
    io_hit: &mut bool,
) -> Option<T> {
    match (res, expect) {
        (Err(Error::Io), _) if faulted => {
            *io_hit = true;
            None
        }
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
    /// Prepared breaks and whether they are stale (the mapping may have
    /// changed since: completing only frees the extent).
    pending: Vec<(BreakPlan, bool)>,
    checks: u64,
    data: u64,
    /// An injected I/O error was returned by the current step.
    io_hit: bool,
    /// Generation of the last commit.
    gen: u64,
    /// Data extents and metadata blocks of the last commit, and the
    /// metadata device's size.
    com_data: u64,
    meta: u64,
    com_meta: u64,
    meta_dev: u64,
    /// The lock-free fast map the pool keeps (checked against the model).
    fast: FastMap<'static>,
}

impl<'s> Run<'s> {
    fn pool(&mut self) -> &mut Pool<'s, MemDevice> {
        self.pool.as_mut().unwrap()
    }

    fn faulted(&mut self) -> bool {
        self.pool().device().fired
    }

    fn acc<T: std::fmt::Debug>(
        &mut self,
        res: Result<T, Error>,
        expect: Result<(), Error>,
        what: &str,
    ) -> Option<T> {
        let f = self.faulted();
        accept(res, expect, what, f, &mut self.io_hit)
    }

    /// Takes an injected I/O error out of `res`.
    fn io<T>(&mut self, res: Result<T, Error>) -> Option<T> {
        match res {
            Err(Error::Io) if self.faulted() => {
                self.io_hit = true;
                None
            }
            r => Some(r.unwrap()),
        }
    }

    fn stale(&mut self, id: u32, start: u64, end: u64) {
        for (p, st) in self.pending.iter_mut() {
            if p.volume == id && p.vext >= start && p.vext < end {
                *st = true;
            }
        }
    }

    fn check(&mut self) {
        let pool = self.pool.as_mut().unwrap();
        let mut scratch = vec![0u32; pool.check_scratch_len() as usize];
        let r = pool.check(&mut scratch);
        let Some(r) = self.io(r) else {
            assert!(!self.pool().is_failed(), "a failed check failed the pool");
            return;
        };
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
        self.pending.iter().map(|(p, _)| p.new).collect()
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
                        && (self
                            .pending
                            .iter()
                            .any(|(q, _)| q.volume == id && q.vext == vext)
                            || self.pending.len() >= MAX_PENDING_BREAKS
                            || self.pending.iter().filter(|(q, _)| q.volume == id).count()
                                >= MAX_PENDING_PER_VOLUME)
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
        let plan = self.acc(res, expect, "break")?;
        let old = self.model.vols[&id].map[&vext];
        assert_eq!(plan.old, old);
        if !self.model.shared(old) {
            assert_eq!(plan.new, old);
            return None;
        }
        self.assert_fresh(plan.new);
        if two_phase {
            self.pending.push((plan, false));
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
                } else if self.model.vols.contains_key(&id) || self.model.deleting.contains_key(&id)
                {
                    Err(Error::Exists)
                } else {
                    Ok(())
                };
                let r = self.pool().create_volume(id, size);
                if self.acc(r, expect, "create").is_some() {
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
                } else if self.model.vols.contains_key(&id) || self.model.deleting.contains_key(&id)
                {
                    Ok(())
                } else {
                    Err(Error::NotFound)
                };
                let r = self.pool().delete_volume(id);
                if self.acc(r, expect, "delete").is_some() {
                    self.model.vols.remove(&id);
                    self.model.deleting.remove(&id);
                    self.stale(id, 0, u64::MAX);
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
                    let r = self.pool().provision(id, k);
                    if let Some(p) = self.acc(r, expect, "provision") {
                        self.assert_fresh(p);
                        self.model.vols.get_mut(&id).unwrap().map.insert(k, p);
                    } else if !stop || self.io_hit {
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
            Op::PrepareProvision { id, vext } => {
                let expect = if id >= MAXV {
                    Err(Error::Invalid)
                } else {
                    self.vol_check(id, vext).and_then(|v| {
                        if v.map.contains_key(&vext) {
                            Err(Error::Exists)
                        } else if self
                            .pending
                            .iter()
                            .any(|(q, _)| q.volume == id && q.vext == vext)
                            || self.pending.len() >= MAX_PENDING_BREAKS
                            || self.pending.iter().filter(|(q, _)| q.volume == id).count()
                                >= MAX_PENDING_PER_VOLUME
                        {
                            Err(Error::Busy)
                        } else {
                            Ok(())
                        }
                    })
                };
                let r = self.pool().prepare_provision(id, vext);
                if let Some(plan) = self.acc(r, expect, "prepare_provision") {
                    assert_eq!(plan.old, NO_OLD);
                    self.assert_fresh(plan.new);
                    self.pending.push((plan, false));
                }
            }
            Op::Complete { k }
                if self
                    .pending
                    .get(k % self.pending.len().max(1))
                    .is_some_and(|(p, _)| p.old == NO_OLD) =>
            {
                let i = k % self.pending.len();
                let (plan, stale) = self.pending[i];
                // Not stale, but mapped meanwhile (a plain provision: the
                // kernel's prison rules that out): refused too.
                let mapped = self
                    .model
                    .vols
                    .get(&plan.volume)
                    .is_some_and(|v| v.map.contains_key(&plan.vext));
                let res = self.pool().complete_provision(&plan);
                let Some(res) = self.io(res.map(|()| Ok(())).or_else(|e| {
                    if e == Error::Io {
                        Err(e)
                    } else {
                        Ok(Err(e))
                    }
                })) else {
                    return;
                };
                self.pending.remove(i);
                if !stale && !mapped {
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
            Op::Complete { k } => {
                if self.pending.is_empty() {
                    return;
                }
                let i = k % self.pending.len();
                let (plan, stale) = self.pending[i];
                let still = self
                    .model
                    .vols
                    .get(&plan.volume)
                    .and_then(|v| v.map.get(&plan.vext))
                    == Some(&plan.old);
                assert!(stale || still, "live break {plan:?} but mapping changed");
                let res = self.pool().complete_break(&plan);
                let Some(res) = self.io(res.map(|()| Ok(())).or_else(|e| {
                    if e == Error::Io {
                        Err(e)
                    } else {
                        Ok(Err(e))
                    }
                })) else {
                    return;
                };
                self.pending.remove(i);
                if !stale {
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
                let i = k % self.pending.len();
                let plan = self.pending[i].0;
                let r = if plan.old == NO_OLD {
                    self.pool().cancel_provision(&plan)
                } else {
                    self.pool().cancel_break(&plan)
                };
                if self.io(r).is_some() {
                    self.pending.remove(i);
                }
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
                let r = self.pool().discard(id, vext, len);
                if self.acc(r, expect, "discard").is_some() {
                    self.stale(id, vext, vext + len);
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
                        let r = self.pool().bg_next(id);
                        if r != Err(Error::Io) || !self.faulted() {
                            assert_eq!(r, Err(Error::NotFound));
                        } else {
                            self.io_hit = true;
                        }
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
                let r = self.pool().bg_progress(id);
                let Some(prog) = self.io(r) else { return };
                assert_eq!(
                    (prog.cursor, prog.done, prog.remaining),
                    (v.bg_cursor, v.bg_done, shared.len() as u64)
                );
                let r = self.pool().bg_next(id);
                let Some(next) = self.io(r) else { return };
                assert_eq!(next.map(|it| it.vext), shared.first().copied());
                if let Some(item) = next {
                    let (k, p) = (item.vext, item.pext);
                    assert_eq!(p, v.map[&k]);
                    if self
                        .pending
                        .iter()
                        .any(|(q, _)| q.volume == id && q.vext == k)
                    {
                        return;
                    }
                    if self.do_break(id, k, false).is_none() {
                        return;
                    }
                    let r = self.pool().bg_advance(&item);
                    if self.acc(r, Ok(()), "bg_advance").is_some() {
                        let mv = self.model.vols.get_mut(&id).unwrap();
                        mv.bg_cursor = mv.bg_cursor.max(k + 1);
                        mv.bg_done += 1;
                    }
                }
            }
            Op::Resize { id, size } => {
                let expect = if size == 0 || size > MAX_VOLUME_EXTENTS || id >= MAXV {
                    Err(Error::Invalid)
                } else if !self.model.vols.contains_key(&id) {
                    Err(Error::NotFound)
                } else {
                    Ok(())
                };
                let r = self.pool().resize_volume(id, size);
                if self.acc(r, expect, "resize").is_some() {
                    let v = self.model.vols.get_mut(&id).unwrap();
                    if size < v.size {
                        v.map.retain(|k, _| *k < size);
                        v.bg_cursor = v.bg_cursor.min(size);
                        self.stale(id, size, u64::MAX);
                    }
                    self.model.vols.get_mut(&id).unwrap().size = size;
                }
            }
            Op::DiscardStep { id, vext, len, max } => {
                let expect = if max == 0 || id >= MAXV {
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
                let r = self.pool().discard_step(id, vext, len, max);
                if let Some(done) = self.acc(r, expect, "discard_step") {
                    assert!(done <= len && (len == 0 || done > 0), "{done} of {len}");
                    if done > 0 {
                        self.stale(id, vext, vext + len);
                    }
                    let v = self.model.vols.get_mut(&id).unwrap();
                    v.map.retain(|k, _| *k < vext || *k >= vext + done);
                }
            }
            Op::CopyStep {
                src,
                a,
                dst,
                b,
                len,
                max,
            } => {
                let overlap = src == dst && len > 0 && a < b + len && b < a + len;
                let n = len.min(max);
                let mut m = self.model.clone();
                let expect = if max == 0 || overlap {
                    Err(Error::Invalid)
                } else {
                    m.group_op(&GroupOp::Copy {
                        src,
                        src_vext: a,
                        dst,
                        dst_vext: b,
                        len: n,
                    })
                };
                let r = self.pool().copy_range_step(src, a, dst, b, len, max);
                if let Some(done) = self.acc(r, expect, "copy_range_step") {
                    assert_eq!(done, n);
                    self.model = m;
                    self.stale(dst, b, b + n);
                }
            }
            Op::Grow { data, meta } => {
                let (nd, nm) = (self.data + data, self.meta + meta);
                // Beyond the device: refused. Beyond what the space maps
                // hold: a growth extension, refused once there are
                // MAX_GROWTH_EXTENSIONS (or no room for one: NoMetadataSpace).
                let st = self.pool().stats();
                let expect = if nm > self.meta_dev
                    || ((nd > st.data_capacity || nm > st.meta_capacity)
                        && st.extensions == MAX_GROWTH_EXTENSIONS)
                {
                    Err(Error::Invalid)
                } else {
                    Ok(())
                };
                let ext = st.extensions;
                let r = self.pool().grow(nd, nm);
                if self.acc(r, expect, "grow").is_some() {
                    self.data = nd;
                    self.meta = nm;
                    let st = self.pool().stats();
                    assert!(st.data_capacity >= nd && st.meta_capacity >= nm, "{st:?}");
                    if st.extensions > ext {
                        GROW_EXT.fetch_add(1, Relaxed);
                    }
                }
            }
            Op::DeleteStep { id, max } => {
                let expect = if max == 0 || id >= MAXV {
                    Err(Error::Invalid)
                } else if self.model.vols.contains_key(&id) || self.model.deleting.contains_key(&id)
                {
                    Ok(())
                } else {
                    Err(Error::NotFound)
                };
                let r = self.pool().delete_volume_step(id, max);
                if let Some(done) = self.acc(r, expect, "delete_volume_step") {
                    if let Some(v) = self.model.vols.remove(&id) {
                        self.model.deleting.insert(id, v);
                        self.stale(id, 0, u64::MAX);
                    }
                    let v = self.model.deleting.get_mut(&id).unwrap();
                    assert!(done <= v.size, "{done} of {}", v.size);
                    v.map.retain(|k, _| *k >= done);
                    DELETE_STEPS.fetch_add(1, Relaxed);
                    if done == v.size {
                        assert!(v.map.is_empty());
                        self.model.deleting.remove(&id);
                        DELETES_DONE.fetch_add(1, Relaxed);
                    }
                }
            }
            Op::Commit => {
                let r = self.pool().commit();
                if self.io(r).is_some() {
                    self.com_data = self.data;
                    self.com_meta = self.meta;
                    self.committed = self.model.clone();
                    self.gen = self.pool().stats().generation;
                    self.check();
                }
            }
            Op::Reopen => {
                self.reopen();
                self.check();
            }
            Op::Abort => {
                self.pool().abort();
                // Abort returns nothing: an I/O error restoring pending
                // breaks shows as the failed state.
                if self.faulted() && self.pool().is_failed() {
                    self.io_hit = true;
                }
                self.model = self.committed.clone();
                self.data = self.com_data;
                self.meta = self.com_meta;
                for (_, st) in self.pending.iter_mut() {
                    *st = true;
                }
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
        let r = self.pool().apply_group(&ops);
        if self.acc(r, expect, "group").is_some() {
            self.model = m;
            for op in &ops {
                if let GroupOp::Copy {
                    dst, dst_vext, len, ..
                } = *op
                {
                    self.stale(dst, dst_vext, dst_vext + len);
                }
            }
        }
    }

    /// Reopens the pool (the device healthy again); the state is the last
    /// commit, or the next one if a failed commit reached the disk.
    fn reopen(&mut self) {
        let (mut dev, s) = self.pool.take().unwrap().into_parts();
        if dev.fired {
            dev.fail_at = None;
            dev.fired = false;
        }
        self.pool = Some(Pool::open(dev, s).unwrap());
        let fast = self.fast;
        self.pool().set_fast_map(fast);
        let gen = self.pool().stats().generation;
        if gen == self.gen + 1 {
            // A commit that failed after its superblock reached the disk.
            self.committed = self.model.clone();
            self.com_data = self.data;
            self.com_meta = self.meta;
        } else {
            assert_eq!(gen, self.gen);
        }
        self.gen = gen;
        self.model = self.committed.clone();
        self.data = self.com_data;
        self.meta = self.com_meta;
        self.pending.clear();
    }

    /// After a step that met the injected I/O error: it was reported, and
    /// either nothing changed (the pool still runs), or the pool failed:
    /// it refuses changes, answers the last commit, and reopens to it.
    /// Returns `None` without a fault, else whether the pool failed.
    fn after_fault(&mut self) -> Option<bool> {
        if !self.faulted() {
            return None;
        }
        assert!(self.io_hit, "injected I/O error swallowed");
        self.io_hit = false;
        let failed = self.pool().is_failed();
        if failed {
            assert_eq!(self.pool().create_volume(MAXV - 1, 1), Err(Error::Io));
            assert_eq!(self.pool().commit(), Err(Error::Io));
            assert!(self.pool().stats().failed);
            let model = self.model.clone();
            let (d, m) = (self.data, self.meta);
            self.model = self.committed.clone();
            self.data = self.com_data;
            self.meta = self.com_meta;
            for (_, st) in self.pending.iter_mut() {
                *st = true;
            }
            self.compare();
            self.model = model;
            self.data = d;
            self.meta = m;
            self.reopen();
            self.check();
        } else {
            let dev = self.pool().device_mut();
            dev.fail_at = None;
            dev.fired = false;
        }
        self.compare();
        Some(failed)
    }

    /// Compares the whole pool with the model.
    fn compare(&mut self) {
        let model = self.model.clone();
        let news = self.pending_news();
        let pool = self.pool.as_mut().unwrap();
        let mut ids = vec![];
        let mut uids = BTreeMap::new();
        let mut del_uids = BTreeMap::new();
        let mut from = 0u32;
        while let Some(v) = pool.next_volume(from).unwrap() {
            ids.push(v.id);
            let mv = match model.vols.get(&v.id) {
                Some(mv) => {
                    uids.insert(v.id, v.uid);
                    assert!(!v.deleting, "vol {} deleting", v.id);
                    mv
                }
                None => {
                    // Hidden from every operation.
                    assert!(v.deleting, "vol {} not deleting", v.id);
                    del_uids.insert(v.id, v.uid);
                    assert_eq!(pool.lookup(v.id, 0), Err(Error::NotFound));
                    assert_eq!(pool.volume(v.id), Err(Error::NotFound));
                    assert_eq!(pool.lookup_cached(v.id, 0), Err(Error::NotFound));
                    &model.deleting[&v.id]
                }
            };
            assert_eq!(
                (v.size, v.bg_cursor, v.bg_done),
                (mv.size, mv.bg_cursor, mv.bg_done)
            );
            from = v.id + 1;
        }
        let mut want_ids: Vec<u32> = model
            .vols
            .keys()
            .chain(model.deleting.keys())
            .copied()
            .collect();
        want_ids.sort();
        assert_eq!(ids, want_ids);
        let counts = model.counts();
        for (id, mv) in model.vols.iter().chain(model.deleting.iter()) {
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
            if model.deleting.contains_key(id) {
                continue;
            }
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
        // The fast map: fill it with a few lookups, then every hit must be
        // the model's unshared mapping, for mapped and unmapped keys.
        for (id, mv) in &model.vols {
            for k in mv.map.keys().take(4) {
                pool.lookup(*id, *k).unwrap();
            }
        }
        for (id, mv) in &model.vols {
            let uid = uids[id];
            for k in mv.map.keys().flat_map(|k| [*k, k + 1]).chain(0..50) {
                if let Some(p) = self.fast.lookup(uid, k) {
                    assert_eq!(mv.map.get(&k), Some(&p), "fast map: vol {id} vext {k}");
                    assert_eq!(counts[&p], 1, "fast map: vol {id} vext {k} shared");
                    FAST_HITS.fetch_add(1, Relaxed);
                }
            }
        }
        // A volume being deleted has no fast-map entry left.
        for (id, mv) in &model.deleting {
            let uid = del_uids[id];
            for k in mv.map.keys().copied().chain(0..50) {
                assert_eq!(
                    self.fast.lookup(uid, k),
                    None,
                    "fast map: deleting vol {id} vext {k}"
                );
            }
        }
        let committed = self.committed.counts();
        let mut used = 0;
        for p in 0..self.data {
            let rc = pool.data_refcount(p).unwrap();
            let want = counts.contains_key(&p) || news.contains(&p);
            assert_eq!(rc > 0, want, "pext {p} rc {rc}");
            // Allocatable only if free now and in the last commit.
            used += (want || committed.contains_key(&p)) as u64;
        }
        let st = pool.stats();
        assert_eq!(st.data_free, self.data - used);
        assert_eq!((st.data_extents, st.meta_blocks), (self.data, self.meta));
        assert_eq!(st.volumes, (model.vols.len() + model.deleting.len()) as u64);
        assert_eq!(st.pending_breaks, self.pending.len());
    }
}

/// Runs `ops` (then a commit and a reopen) against the model, comparing
/// after every step. With `fail_at`, the device fails I/O number
/// `fail_at` once. Returns the numbers of the I/Os done by the steps
/// (reopens excluded).
fn run_opts(ops: &[Op], cache: usize, meta: u64, data: u64, fail_at: Option<u64>) -> Vec<u64> {
    let mut s = slots(cache);
    // Formatted smaller than the capacities, on a metadata device twice
    // the metadata capacity: room to grow, within and beyond them.
    let (data_cap, meta_cap) = (data + 300, meta);
    let (data, meta) = (data - data / 4, meta - meta / 8);
    let mut p = FormatParams::new(data);
    p.max_volumes = MAXV;
    p.extent_size = 4096;
    p.meta_blocks = meta;
    p.data_capacity = data_cap;
    p.meta_capacity = meta_cap;
    let mut pool = Pool::format(MemDevice::new(meta_cap * 2), &mut s, p).unwrap();
    let fast = FastMap::new(Box::leak(
        (0..509)
            .map(|_| FastSlot::new())
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    ))
    .unwrap();
    pool.set_fast_map(fast);
    pool.device_mut().fail_at = fail_at;
    let gen = pool.stats().generation;
    let mut r = Run {
        pool: Some(pool),
        model: Model::default(),
        committed: Model::default(),
        pending: vec![],
        checks: 0,
        data,
        io_hit: false,
        gen,
        com_data: data,
        meta,
        com_meta: meta,
        meta_dev: meta_cap * 2,
        fast,
    };
    let mut ios = vec![];
    for op in ops.iter().chain([Op::Commit, Op::Reopen].iter()) {
        let a = r.pool().device().ios;
        r.step(op);
        let b = r.pool().device().ios;
        if !matches!(op, Op::Reopen) {
            ios.extend(a..b);
        }
        match r.after_fault() {
            Some(true) => {
                FAULT_FAILED.fetch_add(1, Relaxed);
            }
            Some(false) => {
                FAULT_OP_ONLY.fetch_add(1, Relaxed);
            }
            // Compared even before the fault: the reads keep the I/O
            // sequence the same as in the clean run.
            None => r.compare(),
        }
    }
    ios
}

fn run(ops: &[Op], cache: usize, meta: u64, data: u64) {
    run_opts(ops, cache, meta, data, None);
    eprintln!(
        "model: ok {} expected-errors {} space-errors {} checks {} mapped-compared {} shared {} fast-map hits {} delete steps {} (deletions finished by a step {}) growth extensions {}",
        OK.load(Relaxed),
        EXPECTED_ERR.load(Relaxed),
        SPACE_ERR.load(Relaxed),
        CHECKS.load(Relaxed),
        MAPPED.load(Relaxed),
        SHARED.load(Relaxed),
        FAST_HITS.load(Relaxed),
        DELETE_STEPS.load(Relaxed),
        DELETES_DONE.load(Relaxed),
        GROW_EXT.load(Relaxed)
    );
}

static FAULT_FAILED: AtomicU64 = AtomicU64::new(0);
static FAULT_OP_ONLY: AtomicU64 = AtomicU64::new(0);

/// I/O error injection: for fixed random workloads, one run per metadata
/// read, write and flush the workload's operations do, failing exactly
/// that one. Every error must be reported; the pool must either be
/// unchanged (the operation failed alone) or failed (refusing changes,
/// answering the last commit) and reopen to the last commit (or the next
/// one, if the failed commit reached the disk); pending breaks' extents
/// are never handed out again meanwhile.
#[test]
fn model_io_errors() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let cases: usize = std::env::var("IOERR_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut runs = 0u64;
    for case in 0..cases {
        // A populated pool with pending breaks across a commit, then
        // random operations.
        // Several volumes with scattered leaves: more blocks than a minimal
        // cache holds, so that operations read as well as write.
        let mut ops = vec![];
        for id in [0u32, 2, 3, 4, 5] {
            ops.push(Op::Create { id, size: 300_000 });
            for vext in [0u64, 700, 1400, 298_600] {
                ops.push(Op::Provision { id, vext, n: 12 });
            }
        }
        ops.extend([
            Op::Commit,
            Op::Snapshot { src: 0, dst: 1 },
            Op::Prepare { id: 1, vext: 5 },
            Op::Prepare { id: 0, vext: 7 },
            Op::Provision {
                id: 0,
                vext: 700,
                n: 30,
            },
            Op::Commit,
            Op::Break { id: 1, vext: 9 },
            Op::Copy {
                src: 0,
                a: 0,
                dst: 1,
                b: 1000,
                len: 20,
            },
            // A deletion in steps across a commit.
            Op::DeleteStep { id: 2, max: 1 },
            Op::DeleteStep { id: 2, max: 2 },
            Op::Commit,
            Op::DeleteStep { id: 2, max: 1 },
        ]);
        ops.extend(
            proptest::collection::vec(op(), 12..20)
                .new_tree(&mut runner)
                .unwrap()
                .current(),
        );
        let (cache, meta, data) = if case % 2 == 0 {
            (MIN_CACHE_SLOTS, 400, 700)
        } else {
            (MIN_CACHE_SLOTS + 8, 100, 400)
        };
        let ios = run_opts(&ops, cache, meta, data, None);
        for k in &ios {
            run_opts(&ops, cache, meta, data, Some(*k));
            runs += 1;
        }
    }
    let (failed, only) = (FAULT_FAILED.load(Relaxed), FAULT_OP_ONLY.load(Relaxed));
    eprintln!(
        "io errors: {runs} runs, one per workload I/O; {failed} failed the pool, {only} failed only their operation"
    );
    assert_eq!(failed + only, runs);
    assert!(failed > 0 && only > 0);
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

/// Found by `model_low_metadata`: a growth extension in the open
/// transaction, a provision prepared and the transaction aborted; the
/// next change failed with `Io`.
#[test]
fn model_grow_then_abort() {
    use Op::*;
    let ops = [
        Create {
            id: 4,
            size: 300000,
        },
        Commit,
        Provision {
            id: 4,
            vext: 0,
            n: 188,
        },
        Grow { data: 1, meta: 0 },
        Create { id: 5, size: 834 },
        PrepareProvision { id: 4, vext: 188 },
        Abort,
        Create { id: 0, size: 1 },
    ];
    run(&ops, 40, 40, 250);
}
