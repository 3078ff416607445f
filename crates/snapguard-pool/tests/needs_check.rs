//! The `needs_check` superblock flag: set on a healthy pool (a commit) and
//! on a failed one (a superblock for the last commit, nothing else
//! changes), kept by later commits, cleared only by `clear_needs_check`,
//! read at open; unknown flag bits are refused. Torn and lost flag writes
//! are in the crash test (`tests/crash.rs`).

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;

fn params() -> FormatParams {
    let mut p = FormatParams::new(1000);
    p.max_volumes = 100;
    p
}

fn clean(pool: &mut Pool<'_, MemDevice>) {
    let r = snapguard_pool::host::check(pool).expect("check");
    assert!(r.is_clean(), "{r:?}");
}

fn reopen(dev: MemDevice) -> (MemDevice, bool, PoolStats) {
    let mut s = slots(64);
    let mut pool = Pool::open(dev, &mut s).unwrap();
    clean(&mut pool);
    let st = pool.stats();
    (pool.into_device(), st.needs_check, st)
}

/// A pool with volume 1 mapping extents 0..10, committed.
fn populated(s: &mut [CacheSlot]) -> Pool<'_, MemDevice> {
    let mut pool = Pool::format(MemDevice::new(256), s, params()).unwrap();
    pool.create_volume(1, 100).unwrap();
    for v in 0..10 {
        pool.provision(1, v).unwrap();
    }
    pool.commit().unwrap();
    pool
}

#[test]
fn set_keep_clear_on_a_healthy_pool() {
    let mut s = slots(64);
    let mut pool = populated(&mut s);
    assert!(!pool.needs_check());
    let gen = pool.stats().generation;
    // With an open transaction: it is committed with the flag.
    pool.provision(1, 20).unwrap();
    pool.set_needs_check().unwrap();
    assert!(pool.needs_check() && !pool.is_dirty());
    assert_eq!(pool.stats().generation, gen + 1);
    // Set again: nothing to write.
    let w = pool.device().writes;
    pool.set_needs_check().unwrap();
    assert_eq!(pool.device().writes, w);
    // Later commits keep it.
    pool.provision(1, 21).unwrap();
    pool.commit().unwrap();
    assert!(pool.needs_check());
    let (dev, flag, _) = reopen(pool.into_device());
    assert!(flag);
    let mut s2 = slots(64);
    let mut pool = Pool::open(dev, &mut s2).unwrap();
    assert!(pool.needs_check());
    assert!(matches!(pool.lookup(1, 21), Ok(Mapping::Mapped { .. })));
    // Cleared: a superblock write although nothing else changed.
    let gen = pool.stats().generation;
    pool.clear_needs_check().unwrap();
    assert!(!pool.needs_check());
    assert_eq!(pool.stats().generation, gen + 1);
    // Clear again: nothing to write.
    let w = pool.device().writes;
    pool.clear_needs_check().unwrap();
    assert_eq!(pool.device().writes, w);
    let (_, flag, st) = reopen(pool.into_device());
    assert!(!flag);
    assert_eq!(st.generation, gen + 1);
}

/// Fails the pool with a commit whose superblock write fails: every I/O
/// of the commit is tried in turn until the device's own counter shows
/// the superblock write failed.
fn failed_pool<'a>(s: &'a mut [CacheSlot], fail_io: u64) -> Pool<'a, MemDevice> {
    let mut pool = populated(s);
    pool.create_volume(2, 50).unwrap();
    pool.provision(2, 3).unwrap();
    pool.provision(1, 30).unwrap();
    let ios = pool.device().ios;
    pool.device_mut().fail_at = Some(ios + fail_io);
    assert_eq!(pool.commit(), Err(Error::Io));
    assert!(pool.is_failed());
    pool.device_mut().fail_at = None;
    pool
}

#[test]
fn set_on_a_failed_pool_writes_the_last_commit() {
    // Fail each I/O of the commit in turn (the writes of its blocks, the
    // flushes, the superblock write).
    let mut n = 0;
    for fail_io in 0..64 {
        let mut s = slots(64);
        let mut pool = populated(&mut s);
        let committed = pool.stats().generation;
        pool.create_volume(2, 50).unwrap();
        pool.provision(2, 3).unwrap();
        pool.provision(1, 30).unwrap();
        let ios = pool.device().ios;
        pool.device_mut().fail_at = Some(ios + fail_io);
        let r = pool.commit();
        if !pool.device().fired {
            assert_eq!(r, Ok(()));
            break;
        }
        n += 1;
        assert_eq!(r, Err(Error::Io));
        assert!(pool.is_failed());
        pool.device_mut().fail_at = None;
        let writes = pool.device().writes;
        let flushes = pool.device().flushes;
        pool.set_needs_check().unwrap();
        // One superblock write, one flush.
        assert_eq!(pool.device().writes, writes + 1);
        assert_eq!(pool.device().flushes, flushes + 1);
        assert!(pool.needs_check());
        // Nothing else changed: still failed, the last commit served.
        assert!(pool.is_failed());
        assert_eq!(pool.create_volume(3, 10), Err(Error::Io));
        assert_eq!(pool.clear_needs_check(), Err(Error::Io));
        assert_eq!(pool.volume(2), Err(Error::NotFound));
        assert_eq!(pool.lookup(1, 30), Ok(Mapping::Unmapped));
        assert_eq!(pool.stats().generation, committed + 1);
        // Reopened: the last commit, with the flag, one generation on.
        let (dev, flag, st) = reopen(pool.into_device());
        assert!(flag, "fail_io {fail_io}");
        assert_eq!(st.generation, committed + 1);
        assert_eq!(st.volumes, 1);
        let mut s2 = slots(64);
        let mut pool = Pool::open(dev, &mut s2).unwrap();
        assert_eq!(pool.volume(2), Err(Error::NotFound));
        assert!(matches!(pool.lookup(1, 9), Ok(Mapping::Mapped { .. })));
        // Works on, keeping the flag, until cleared.
        pool.create_volume(2, 50).unwrap();
        pool.commit().unwrap();
        clean(&mut pool);
        assert!(pool.needs_check());
        pool.clear_needs_check().unwrap();
        let (_, flag, _) = reopen(pool.into_device());
        assert!(!flag);
    }
    assert!(n >= 3, "{n} failing I/Os");
}

#[test]
fn failed_flag_write_changes_nothing_and_can_be_retried() {
    // k = 0: the flag's superblock write fails (nothing reaches the
    // device); k = 1: its flush fails (the MemDevice keeps the write).
    for k in 0..2 {
        let mut s = slots(64);
        let mut pool = failed_pool(&mut s, 0);
        let gen = pool.stats().generation;
        let ios = pool.device().ios;
        pool.device_mut().fail_at = Some(ios + k);
        assert_eq!(pool.set_needs_check(), Err(Error::Io));
        assert!(pool.device().fired);
        pool.device_mut().fail_at = None;
        // Unchanged in memory.
        assert!(!pool.needs_check());
        assert_eq!(pool.stats().generation, gen);
        let (dev, flag, st) = reopen(MemDevice::from_blocks(pool.device().blocks.clone()));
        drop(dev);
        assert_eq!(flag, k == 1);
        assert_eq!(st.generation, gen + k);
        // Retried: written.
        pool.set_needs_check().unwrap();
        assert!(pool.needs_check());
        let (_, flag, st) = reopen(pool.into_device());
        assert!(flag);
        assert_eq!(st.generation, gen + 1);
    }
}

#[test]
fn unknown_flag_bits_are_refused() {
    let mut s = slots(64);
    let pool = populated(&mut s);
    let gen = pool.stats().generation;
    let mut dev = pool.into_device();
    let nr = (gen % 2) as usize;
    for bit in 1..32 {
        let mut d = MemDevice::from_blocks(dev.blocks.clone());
        let b = &mut d.blocks[nr];
        b[36..40].copy_from_slice(&(1u32 << bit).to_le_bytes());
        let c = crc32c(&b[4..]);
        b[0..4].copy_from_slice(&c.to_le_bytes());
        // The older superblock is used instead.
        let mut s2 = slots(64);
        let p = Pool::open(d, &mut s2).unwrap();
        assert_eq!(p.stats().generation, gen - 1, "bit {bit}");
    }
    // Bit 0 with a resealed checksum is the flag.
    let b = &mut dev.blocks[nr];
    b[36..40].copy_from_slice(&1u32.to_le_bytes());
    let c = crc32c(&b[4..]);
    b[0..4].copy_from_slice(&c.to_le_bytes());
    let (_, flag, st) = reopen(dev);
    assert!(flag);
    assert_eq!(st.generation, gen);
}
