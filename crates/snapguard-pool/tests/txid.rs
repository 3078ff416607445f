//! The user's transaction id (`set_transaction_id`): stored in the
//! superblock with the transaction, refused when the old id is wrong, 0 in
//! pools written before the field existed.

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

#[test]
fn new_pool_has_transaction_id_zero() {
    let mut s = slots(64);
    let pool = Pool::format(MemDevice::new(256), &mut s, params()).unwrap();
    assert_eq!(pool.stats().transaction_id, 0);
}

#[test]
fn set_commit_reopen() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params()).unwrap();
    pool.set_transaction_id(0, 7).unwrap();
    assert!(pool.is_dirty());
    assert_eq!(pool.stats().transaction_id, 7);
    let gen = pool.stats().generation;
    pool.commit().unwrap();
    assert_eq!(pool.stats().generation, gen + 1);
    clean(&mut pool);
    let dev = pool.into_device();
    let mut s2 = slots(64);
    let mut pool = Pool::open(dev, &mut s2).unwrap();
    assert_eq!(pool.stats().transaction_id, 7);
    // Unchanged by other transactions.
    pool.create_volume(1, 10).unwrap();
    pool.provision(1, 3).unwrap();
    pool.commit().unwrap();
    pool.set_transaction_id(7, u64::MAX).unwrap();
    pool.commit().unwrap();
    let dev = pool.into_device();
    let mut s3 = slots(64);
    let mut pool = Pool::open(dev, &mut s3).unwrap();
    assert_eq!(pool.stats().transaction_id, u64::MAX);
    clean(&mut pool);
}

#[test]
fn wrong_old_id_refused_without_change() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params()).unwrap();
    pool.set_transaction_id(0, 5).unwrap();
    pool.commit().unwrap();
    assert_eq!(pool.set_transaction_id(4, 6), Err(Error::Invalid));
    assert_eq!(pool.set_transaction_id(0, 6), Err(Error::Invalid));
    assert!(!pool.is_dirty());
    assert!(!pool.is_failed());
    assert_eq!(pool.stats().transaction_id, 5);
    // Same id: accepted, nothing to commit.
    pool.set_transaction_id(5, 5).unwrap();
    assert!(!pool.is_dirty());
}

#[test]
fn abort_and_crash_keep_the_committed_id() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params()).unwrap();
    pool.set_transaction_id(0, 1).unwrap();
    pool.commit().unwrap();
    pool.set_transaction_id(1, 2).unwrap();
    pool.abort();
    assert_eq!(pool.stats().transaction_id, 1);
    pool.set_transaction_id(1, 3).unwrap();
    // Crash before the commit: the open transaction's id is lost.
    let dev = pool.into_device();
    let mut s2 = slots(64);
    let pool = Pool::open(dev, &mut s2).unwrap();
    assert_eq!(pool.stats().transaction_id, 1);
}

#[test]
fn failed_commit_fails_the_pool_and_keeps_the_old_id() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params()).unwrap();
    pool.set_transaction_id(0, 1).unwrap();
    pool.commit().unwrap();
    pool.set_transaction_id(1, 2).unwrap();
    // Fail the first I/O of the commit (the superblock write: nothing
    // else is dirty).
    let ios = pool.device().ios;
    pool.device_mut().fail_at = Some(ios);
    assert_eq!(pool.commit(), Err(Error::Io));
    assert!(pool.is_failed());
    assert_eq!(pool.stats().transaction_id, 1);
    assert_eq!(pool.set_transaction_id(1, 4), Err(Error::Io));
    let dev = pool.into_device();
    let mut s2 = slots(64);
    let mut pool = Pool::open(dev, &mut s2).unwrap();
    assert_eq!(pool.stats().transaction_id, 1);
    clean(&mut pool);
}

#[test]
fn pool_written_before_the_field_reads_zero() {
    // A pool whose superblocks were written with the field's bytes
    // reserved (zero): the id reads 0 and the pool is clean.
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params()).unwrap();
    pool.create_volume(1, 10).unwrap();
    pool.commit().unwrap();
    let image = pool.into_device().image();
    for sb in 0..2 {
        let off = sb * BLOCK_SIZE + 176;
        assert!(
            image[off..off + 80].iter().all(|&b| b == 0),
            "superblock {sb} reserved bytes"
        );
    }
    let mut s2 = slots(64);
    let mut pool = Pool::open(MemDevice::from_image(&image), &mut s2).unwrap();
    assert_eq!(pool.stats().transaction_id, 0);
    clean(&mut pool);
}

#[test]
fn transaction_id_is_at_offset_176() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params()).unwrap();
    pool.set_transaction_id(0, 0x0102_0304_0506_0708).unwrap();
    pool.commit().unwrap();
    let gen = pool.stats().generation;
    let image = pool.into_device().image();
    let off = (gen % 2) as usize * BLOCK_SIZE + 176;
    assert_eq!(image[off..off + 8], 0x0102_0304_0506_0708u64.to_le_bytes());
    assert!(image[off + 8..off + 80].iter().all(|&b| b == 0));
}
