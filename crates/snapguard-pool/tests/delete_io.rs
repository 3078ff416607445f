//! Metadata I/O of a stepwise volume deletion (`delete_volume_step`)
//! compared with the single call (`delete_volume`), counted by a metadata
//! device that records the tag and level of every block read and written.
//!
//! The single call drops a shared subtree with one reference decrement and
//! reads only the nodes it frees (those only the deleted volume used). The
//! steps must do the same: never read below a shared node, and not shadow
//! (copy, write) a table node that the same step then frees. Each case is
//! measured on a cold cache (the pool reopened after its commit).

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

/// Block tags (Documentation/pool-format.rst).
const TAG_VLEAF: u16 = 0x564C;
const TAG_VINT: u16 = 0x5649;
/// Extents per table leaf, children per internal node.
const LEAF: u64 = 678;
const INT: u64 = 509;
/// Extents covered by one level-1 node.
const L1: u64 = LEAF * INT;

/// (block, tag, level) of each read and each write.
#[derive(Default)]
struct Log {
    reads: Vec<(u64, u16, u8)>,
    writes: Vec<(u64, u16, u8)>,
}

/// A metadata device that logs its I/O.
struct CountDev {
    inner: MemDevice,
    log: Rc<RefCell<Log>>,
}

fn tag_level(b: &[u8; BLOCK_SIZE]) -> (u16, u8) {
    (u16::from_le_bytes([b[4], b[5]]), b[6])
}

impl MetaDevice for CountDev {
    fn read_block(&mut self, nr: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Error> {
        self.inner.read_block(nr, buf)?;
        let (t, l) = tag_level(buf);
        self.log.borrow_mut().reads.push((nr, t, l));
        Ok(())
    }
    fn write_block(&mut self, nr: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Error> {
        let (t, l) = tag_level(buf);
        self.log.borrow_mut().writes.push((nr, t, l));
        self.inner.write_block(nr, buf)
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush()
    }
    fn nr_blocks(&self) -> u64 {
        self.inner.nr_blocks()
    }
}

fn is_table(t: u16) -> bool {
    t == TAG_VLEAF || t == TAG_VINT
}

/// What one deletion did.
#[derive(Debug, Default)]
struct Io {
    /// Distinct table nodes read, by block number.
    table_read: BTreeSet<u64>,
    /// Table node reads (with repeats), leaf reads.
    table_reads: usize,
    leaf_reads: usize,
    /// Table nodes written by the commit (shadow copies).
    table_writes: usize,
    /// All block reads and writes.
    reads: usize,
    writes: usize,
    /// Steps taken (1 for the single call).
    steps: u64,
}

/// Volume 1: `3 * L1` extents (a 3-level table: root, 3 level-1 nodes),
/// one extent mapped in each of its first `leaves` leaves.
fn base(leaves: u64) -> Pool<'static, MemDevice> {
    let s: &'static mut [CacheSlot] = Box::leak(slots(4096).into_boxed_slice());
    let mut p = FormatParams::new(leaves + 64);
    p.max_volumes = 16;
    let mut pool = Pool::format(MemDevice::new(leaves + 2048), s, p).unwrap();
    pool.create_volume(1, 3 * L1).unwrap();
    for k in 0..leaves {
        pool.provision(1, k * LEAF).unwrap();
    }
    pool.commit().unwrap();
    pool
}

fn image(pool: Pool<'static, MemDevice>) -> Vec<[u8; BLOCK_SIZE]> {
    pool.into_parts().0.blocks
}

fn clean<D: MetaDevice>(pool: &mut Pool<'_, D>) {
    let r = snapguard_pool::host::check(pool).unwrap();
    assert!(r.is_clean(), "{r:?}");
}

/// Deletes `id` from a cold open of `img`, with the single call
/// (`step: None`) or in steps of `step` leaves, committing every
/// `commit_every` steps (0: once at the end); checks the result.
fn delete(img: &[[u8; BLOCK_SIZE]], id: u32, step: Option<u64>, commit_every: u64) -> Io {
    let mut s = slots(4096);
    let log = Rc::new(RefCell::new(Log::default()));
    let dev = CountDev {
        inner: MemDevice::from_blocks(img.to_vec()),
        log: log.clone(),
    };
    let mut pool = Pool::open(dev, &mut s).unwrap();
    let before = pool.stats();
    // A record read (the directory only).
    let size = pool.volume(id).unwrap().size;
    let mut io = Io::default();
    // Forget the open's own I/O.
    *log.borrow_mut() = Log::default();
    match step {
        None => {
            pool.delete_volume(id).unwrap();
            io.steps = 1;
        }
        Some(n) => loop {
            io.steps += 1;
            assert!(io.steps < 100_000);
            let done = pool.delete_volume_step(id, n).unwrap();
            if done >= size {
                break;
            }
            if commit_every != 0 && io.steps % commit_every == 0 {
                pool.commit().unwrap();
            }
        },
    }
    pool.commit().unwrap();
    {
        let d = log.borrow();
        for &(nr, t, l) in &d.reads {
            if is_table(t) {
                io.table_read.insert(nr);
                io.table_reads += 1;
                if t == TAG_VLEAF && l == 0 {
                    io.leaf_reads += 1;
                }
            }
        }
        io.table_writes = d.writes.iter().filter(|w| is_table(w.1)).count();
        io.reads = d.reads.len();
        io.writes = d.writes.len();
    }
    assert!(pool
        .next_volume(id)
        .unwrap()
        .filter(|v| v.id == id)
        .is_none());
    assert_eq!(pool.stats().volumes, before.volumes - 1);
    clean(&mut pool);
    io
}

/// Deletes `id` both ways (the steps with a commit at the end, and with a
/// commit after every step) and checks the steps against the single call:
/// they read no table node the single call does not (which reads only the
/// nodes it frees: never below a shared node) and write no more table
/// nodes. Returns (single, steps, steps committing each time).
fn compare(img: &[[u8; BLOCK_SIZE]], id: u32, step: u64, case: &str) -> (Io, Io, Io) {
    let one = delete(img, id, None, 0);
    let st = delete(img, id, Some(step), 0);
    let stc = delete(img, id, Some(step), 1);
    eprintln!(
        "{case}: single call: {} table nodes read ({} leaves), {} table writes, {} reads, {} writes; \
         {} steps of {step}: {} table nodes read ({} reads, {} leaves), {} table writes, {} reads, {} writes; \
         committing after each step: {} table writes, {} writes",
        one.table_read.len(),
        one.leaf_reads,
        one.table_writes,
        one.reads,
        one.writes,
        st.steps,
        st.table_read.len(),
        st.table_reads,
        st.leaf_reads,
        st.table_writes,
        st.reads,
        st.writes,
        stc.table_writes,
        stc.writes,
    );
    let extra: Vec<_> = st.table_read.difference(&one.table_read).collect();
    assert!(
        extra.is_empty(),
        "{case}: the steps read table nodes the single call does not: {extra:?}"
    );
    let extra: Vec<_> = stc.table_read.difference(&one.table_read).collect();
    assert!(
        extra.is_empty(),
        "{case}: the committing steps read more: {extra:?}"
    );
    (one, st, stc)
}

/// (a) A fresh snapshot: its root is shared. Deleting it (either volume)
/// is one decrement: no table node is read or written.
#[test]
fn delete_fresh_snapshot_reads_no_table_node() {
    let mut pool = base(40);
    pool.snapshot(1, 2).unwrap();
    pool.commit().unwrap();
    let img = image(pool);
    for id in [2, 1] {
        let (one, st, stc) = compare(&img, id, 16, &format!("fresh snapshot, delete {id}"));
        assert_eq!(one.table_read.len(), 0);
        assert_eq!(st.table_read.len(), 0);
        assert_eq!(st.steps, 1);
        assert_eq!(st.table_writes, 0);
        assert_eq!(stc.table_writes, 0);
    }
}

/// (b) Snapshot and origin diverged: the origin wrote one extent in the
/// first level-1 subtree and one in the third, so each volume has its own
/// root, its own copy of two level-1 nodes and of two leaves, and shares
/// the second level-1 subtree and every other leaf. Deleting either
/// reads its root, its two level-1 nodes and its two leaves, nothing
/// shared; when that fits in one step, nothing is shadowed either.
#[test]
fn delete_diverged_reads_no_shared_subtree() {
    let leaves = 3 * INT;
    let mut pool = base(leaves);
    pool.snapshot(1, 2).unwrap();
    pool.commit().unwrap();
    pool.break_sharing(1, 0).unwrap();
    pool.break_sharing(1, 2 * L1).unwrap();
    pool.commit().unwrap();
    let img = image(pool);
    for id in [2, 1] {
        let (one, st, stc) = compare(&img, id, 16, &format!("diverged, delete {id}"));
        assert_eq!(one.table_read.len(), 5, "root, 2 level-1 nodes, 2 leaves");
        assert_eq!(one.leaf_reads, 2);
        assert_eq!(st.table_read.len(), 5);
        assert_eq!(st.steps, 1, "5 unshared nodes fit in one step of 16");
        assert_eq!(st.table_writes, 0, "nothing shadowed");
        assert_eq!(stc.table_writes, 0);
        // Smaller steps than the unshared nodes: still nothing shared
        // read (compare checks it), and it finishes.
        compare(&img, id, 1, &format!("diverged, delete {id}, steps of 1"));
    }
}

/// (c) An unshared volume of many leaves: the steps read the nodes the
/// single call reads (all of them), each once, and shadow at most the
/// path they stop in per transaction.
#[test]
fn delete_unshared_reads_each_node_once() {
    let leaves = 2 * INT + 100;
    let pool = base(leaves);
    let img = image(pool);
    let (one, st, stc) = compare(&img, 1, 16, "unshared");
    // Root, 3 level-1 nodes, every leaf.
    assert_eq!(one.table_read.len() as u64, 1 + 3 + leaves);
    assert_eq!(st.table_read.len(), one.table_read.len());
    assert_eq!(
        st.table_reads,
        st.table_read.len(),
        "a node read twice (cache of 4096 slots)"
    );
    // Every step frees up to 16 nodes, and the last may free the rest of
    // the table whole.
    assert!(
        st.steps <= (1 + 3 + leaves).div_ceil(16) + 1,
        "{} steps",
        st.steps
    );
    // One transaction shadows each internal node at most once (the
    // write-back still writes those freed by the end: 4 writes); committing
    // after every step writes the path it stopped in (root and a level-1
    // node) each time at most.
    assert!(st.table_writes <= 1 + 3, "{} table writes", st.table_writes);
    assert!(stc.table_writes as u64 <= 2 * stc.steps);
}
