//! Basic behaviour of the pool core.

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;

fn params(data: u64) -> FormatParams {
    let mut p = FormatParams::new(data);
    p.max_volumes = 1000;
    p
}

fn clean(pool: &mut Pool<'_, MemDevice>) -> CheckReport {
    let mut scratch = vec![0u32; pool.check_scratch_len() as usize];
    let r = pool.check(&mut scratch).expect("check");
    assert!(r.is_clean(), "{r:?}");
    r
}

#[test]
fn crc32c_known_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    // Slicing-by-8 agrees with the bitwise definition at every length.
    let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    for n in 0..data.len() {
        let mut c = !0u32;
        for &b in &data[..n] {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
        }
        assert_eq!(crc32c(&data[..n]), !c, "length {n}");
    }
}

#[test]
fn errno_values() {
    assert_eq!(Error::NoSpace.to_errno(), 28);
    assert_eq!(Error::NoMetadataSpace.to_errno(), 28);
    assert_eq!(Error::Corrupt.to_errno(), 117);
    assert_eq!(Error::WouldBlock.to_errno(), 11);
}

#[test]
fn provision_snapshot_break_commit_reopen() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(512), &mut s, params(5000)).unwrap();
    clean(&mut pool);
    pool.create_volume(1, 2000).unwrap();
    assert_eq!(pool.create_volume(1, 10), Err(Error::Exists));
    let mut pexts = vec![];
    for v in 0..1500 {
        pexts.push(pool.provision(1, v).unwrap());
    }
    assert_eq!(pool.provision(1, 3), Err(Error::Exists));
    // Allocation is sequential from the hint.
    assert!(pexts.windows(2).all(|w| w[1] == w[0] + 1));
    pool.commit().unwrap();
    clean(&mut pool);
    pool.snapshot(1, 2).unwrap();
    assert_eq!(
        pool.lookup(2, 7).unwrap(),
        Mapping::Mapped {
            pext: pexts[7],
            shared: true
        }
    );
    assert_eq!(
        pool.lookup_cached(1, 7).unwrap(),
        Mapping::Mapped {
            pext: pexts[7],
            shared: true
        }
    );
    let plan = pool.break_sharing(2, 7).unwrap();
    assert_eq!(plan.old, pexts[7]);
    assert_ne!(plan.new, plan.old);
    assert_eq!(
        pool.lookup(2, 7).unwrap(),
        Mapping::Mapped {
            pext: plan.new,
            shared: false
        }
    );
    assert_eq!(
        pool.lookup(1, 7).unwrap(),
        Mapping::Mapped {
            pext: pexts[7],
            shared: false
        }
    );
    assert_eq!(
        pool.lookup(1, 8).unwrap(),
        Mapping::Mapped {
            pext: pexts[8],
            shared: true
        }
    );
    pool.commit().unwrap();
    clean(&mut pool);
    let (dev, s2) = pool.into_parts();
    let mut pool = Pool::open(dev, s2).unwrap();
    clean(&mut pool);
    assert_eq!(
        pool.lookup(2, 7).unwrap(),
        Mapping::Mapped {
            pext: plan.new,
            shared: false
        }
    );
    pool.delete_volume(1).unwrap();
    assert_eq!(
        pool.lookup(2, 8).unwrap(),
        Mapping::Mapped {
            pext: pexts[8],
            shared: false
        }
    );
    pool.commit().unwrap();
    clean(&mut pool);
    pool.discard(2, 0, 2000).unwrap();
    pool.commit().unwrap();
    let r = clean(&mut pool);
    assert_eq!(r.data_used, 0);
    let st = pool.stats();
    assert_eq!(st.data_free, 5000);
}

#[test]
fn uncommitted_changes_vanish_on_reopen() {
    let mut s = slots(32);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params(1000)).unwrap();
    pool.create_volume(5, 100).unwrap();
    pool.provision(5, 1).unwrap();
    pool.commit().unwrap();
    pool.provision(5, 2).unwrap();
    pool.create_volume(6, 100).unwrap();
    let (dev, s2) = pool.into_parts();
    let mut pool = Pool::open(dev, s2).unwrap();
    assert!(matches!(pool.lookup(5, 1).unwrap(), Mapping::Mapped { .. }));
    assert_eq!(pool.lookup(5, 2).unwrap(), Mapping::Unmapped);
    assert_eq!(pool.volume(6), Err(Error::NotFound));
    clean(&mut pool);
}

#[test]
fn out_of_data_space_has_no_effect() {
    let mut s = slots(32);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params(10)).unwrap();
    pool.create_volume(0, 100).unwrap();
    for v in 0..10 {
        pool.provision(0, v).unwrap();
    }
    assert_eq!(pool.provision(0, 50), Err(Error::NoSpace));
    assert_eq!(pool.lookup(0, 50).unwrap(), Mapping::Unmapped);
    pool.commit().unwrap();
    clean(&mut pool);
    // Freed in this transaction: reusable only after the commit.
    pool.discard(0, 0, 1).unwrap();
    assert_eq!(pool.provision(0, 50), Err(Error::NoSpace));
    pool.commit().unwrap();
    pool.provision(0, 50).unwrap();
    pool.commit().unwrap();
    clean(&mut pool);
}

#[test]
fn out_of_metadata_space_has_no_effect() {
    let mut s = slots(32);
    let mut pool = Pool::format(MemDevice::new(260), &mut s, params(100_000)).unwrap();
    let mut created = 0;
    let mut err = None;
    for id in 0..1000 {
        match pool.create_volume(id, 1 << 30) {
            Ok(()) => created += 1,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
        match pool.provision(id, (id as u64) << 20) {
            Ok(_) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(Error::NoMetadataSpace));
    assert!(created > 0);
    pool.commit().unwrap();
    clean(&mut pool);
}

#[test]
fn lookup_cached_would_block_after_eviction() {
    let mut s = slots(MIN_CACHE_SLOTS);
    let mut pool = Pool::format(MemDevice::new(4096), &mut s, params(100_000)).unwrap();
    pool.create_volume(0, 100_000).unwrap();
    for v in (0..100_000).step_by(700) {
        pool.provision(0, v).unwrap();
    }
    pool.commit().unwrap();
    assert_eq!(pool.lookup_cached(0, 0), Err(Error::WouldBlock));
    assert!(matches!(pool.lookup(0, 0).unwrap(), Mapping::Mapped { .. }));
    assert!(matches!(
        pool.lookup_cached(0, 0).unwrap(),
        Mapping::Mapped { .. }
    ));
    clean(&mut pool);
}

#[test]
fn discard_huge_sparse_ranges_with_little_metadata() {
    let mut s = slots(32);
    let mut pool = Pool::format(MemDevice::new(64), &mut s, params(1000)).unwrap();
    pool.create_volume(0, 1 << 47).unwrap();
    for k in [0u64, 5, 1 << 20, 1 << 40, (1 << 47) - 1] {
        pool.provision(0, k).unwrap();
    }
    pool.commit().unwrap();
    pool.snapshot(0, 1).unwrap();
    // A middle range of a huge volume, then the whole volume.
    pool.discard(1, 3, (1 << 47) - 10).unwrap();
    assert!(matches!(pool.lookup(1, 0).unwrap(), Mapping::Mapped { .. }));
    assert_eq!(pool.lookup(1, 1 << 40).unwrap(), Mapping::Unmapped);
    assert!(matches!(
        pool.lookup(1, (1 << 47) - 1).unwrap(),
        Mapping::Mapped { .. }
    ));
    assert!(matches!(
        pool.lookup(0, 1 << 40).unwrap(),
        Mapping::Mapped { .. }
    ));
    pool.commit().unwrap();
    clean(&mut pool);
    pool.discard(0, 0, 1 << 47).unwrap();
    pool.commit().unwrap();
    clean(&mut pool);
    assert_eq!(pool.next_mapping(0, 0).unwrap(), None);
    assert_eq!(
        pool.next_mapping(1, 1).unwrap().map(|m| m.0),
        Some((1 << 47) - 1)
    );
}
