//! Basic behaviour of the pool core.

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;

fn params(data: u64) -> FormatParams {
    let mut p = FormatParams::new(data);
    p.max_volumes = 1000;
    p
}

fn clean(pool: &mut Pool<'_, MemDevice>) -> CheckReport {
    let r = snapguard_pool::host::check(pool).expect("check");
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

fn pext(m: Mapping) -> u64 {
    match m {
        Mapping::Mapped { pext, .. } => pext,
        Mapping::Unmapped => panic!("unmapped"),
    }
}

/// Issue 10 item 1: a mapping that changed and changed back (discard, then
/// a copy mapping the same extent again) must not accept the stale copy.
#[test]
fn break_detects_discard_then_copy_back() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params(1000)).unwrap();
    pool.create_volume(1, 100).unwrap();
    for v in 0..10 {
        pool.provision(1, v).unwrap();
    }
    pool.commit().unwrap();
    pool.snapshot(1, 2).unwrap();
    let p7 = pext(pool.lookup(2, 7).unwrap());
    let plan = pool.prepare_break(2, 7).unwrap();
    assert_ne!(plan.new, plan.old);
    // Meanwhile (the copy old -> new is in flight): volume 2 drops the
    // extent, volume 1 writes it in place (no longer shared), and a copy
    // maps it into volume 2 again: same value, fresh data.
    pool.discard(2, 7, 1).unwrap();
    assert_eq!(
        pool.lookup(1, 7).unwrap(),
        Mapping::Mapped {
            pext: p7,
            shared: false
        }
    );
    pool.copy_range(1, 7, 2, 7, 1).unwrap();
    assert_eq!(pool.complete_break(&plan), Err(Error::Busy));
    assert_eq!(pext(pool.lookup(2, 7).unwrap()), p7);
    assert_eq!(pool.data_refcount(plan.new).unwrap(), 0);
    pool.commit().unwrap();
    clean(&mut pool);
}

/// Issue 10 item 1: the old extent freed and provisioned again to the same
/// place while a break is pending.
#[test]
fn break_detects_free_and_reprovision() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params(2)).unwrap();
    pool.create_volume(1, 100).unwrap();
    let p0 = pool.provision(1, 0).unwrap();
    pool.commit().unwrap();
    pool.snapshot(1, 2).unwrap();
    let plan = pool.prepare_break(2, 0).unwrap();
    assert_eq!(plan.old, p0);
    pool.discard(1, 0, 1).unwrap();
    pool.discard(2, 0, 1).unwrap();
    pool.commit().unwrap();
    // Only p0 is free: the new mapping reuses it, with new data.
    assert_eq!(pool.provision(2, 0).unwrap(), p0);
    assert_eq!(pool.complete_break(&plan), Err(Error::Busy));
    assert_eq!(pext(pool.lookup(2, 0).unwrap()), p0);
    pool.commit().unwrap();
    clean(&mut pool);
}

/// Issue 10 item 2: a background-copy step of a deleted volume must not
/// move the cursor of a new volume created under the same id.
#[test]
fn bg_advance_refuses_recreated_volume() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params(1000)).unwrap();
    pool.create_volume(1, 100).unwrap();
    for v in 0..60 {
        pool.provision(1, v).unwrap();
    }
    pool.snapshot(1, 2).unwrap();
    for v in 0..50 {
        pool.break_sharing(2, v).unwrap();
    }
    let item = pool.bg_next(2).unwrap().unwrap();
    assert_eq!(item.vext, 50);
    let old_uid = pool.volume(2).unwrap().uid;
    pool.delete_volume(2).unwrap();
    pool.snapshot(1, 2).unwrap();
    assert_ne!(pool.volume(2).unwrap().uid, old_uid);
    assert_eq!(pool.bg_advance(&item), Err(Error::NotFound));
    let v = pool.volume(2).unwrap();
    assert_eq!((v.bg_cursor, v.bg_done), (0, 0));
    assert_eq!(pool.bg_next(2).unwrap().unwrap().vext, 0);
    pool.commit().unwrap();
    clean(&mut pool);
}

/// Issue 10 item 4: pending breaks alone do not make a commit write.
#[test]
fn commit_without_change_costs_nothing() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params(1000)).unwrap();
    pool.create_volume(1, 100).unwrap();
    for v in 0..10 {
        pool.provision(1, v).unwrap();
    }
    pool.snapshot(1, 2).unwrap();
    pool.commit().unwrap();
    let _a = pool.prepare_break(2, 3).unwrap();
    pool.provision(1, 50).unwrap();
    pool.commit().unwrap();
    let (w, f) = (pool.device().writes, pool.device().flushes);
    pool.commit().unwrap();
    assert_eq!((pool.device().writes, pool.device().flushes), (w, f));
    // A prepare alone is no change either: its extent commits as free.
    let b = pool.prepare_break(2, 4).unwrap();
    assert!(!pool.is_dirty());
    pool.commit().unwrap();
    assert_eq!((pool.device().writes, pool.device().flushes), (w, f));
    pool.complete_break(&b).unwrap();
    pool.commit().unwrap();
    assert!(pool.device().writes > w);
    clean(&mut pool);
}

/// Issue 10 item 5: with metadata full, deleting, discarding and resetting
/// a background copy still work (they may use the reserve), and free space
/// is reported without uncommitted frees nor break reservations.
#[test]
fn full_metadata_can_still_free_space() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(300), &mut s, params(100_000)).unwrap();
    let mut ids = vec![];
    let mut provisioning = true;
    for id in 0..1000u32 {
        if pool.create_volume(id, 1 << 30).is_err() {
            break;
        }
        ids.push(id);
        for k in 0..8u64 {
            if provisioning && pool.provision(id, k << 20).is_err() {
                provisioning = false;
            }
        }
    }
    assert!(ids.len() > 3 && ids.len() < 999);
    pool.commit().unwrap();
    assert_eq!(
        pool.create_volume(999, 1 << 30),
        Err(Error::NoMetadataSpace)
    );
    assert_eq!(pool.provision(ids[0], 9 << 20), Err(Error::NoMetadataSpace));
    pool.discard(ids[0], 0, 1 << 30).unwrap();
    pool.delete_volume(ids[1]).unwrap();
    pool.bg_reset(ids[2]).unwrap();
    pool.commit().unwrap();
    clean(&mut pool);
    pool.provision(ids[0], 9 << 20).unwrap();
    pool.create_volume(999, 10).unwrap();
    pool.commit().unwrap();
    clean(&mut pool);
}

#[test]
fn free_space_excludes_uncommitted_frees_and_reservations() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params(1000)).unwrap();
    pool.create_volume(1, 100).unwrap();
    for v in 0..10 {
        pool.provision(1, v).unwrap();
    }
    pool.commit().unwrap();
    let st = pool.stats();
    assert_eq!(st.data_free, 990);
    pool.discard(1, 0, 5).unwrap();
    // Not allocatable before the commit.
    assert_eq!(pool.stats().data_free, 990);
    pool.commit().unwrap();
    assert_eq!(pool.stats().data_free, 995);
    pool.snapshot(1, 2).unwrap();
    pool.commit().unwrap();
    let st = pool.stats();
    let plan = pool.prepare_break(2, 7).unwrap();
    let st2 = pool.stats();
    assert_eq!(st2.data_free, st.data_free - 1);
    // The metadata reserved to complete the break is not free.
    assert!(st2.meta_free < st.meta_free, "{st:?} {st2:?}");
    pool.cancel_break(&plan).unwrap();
    assert_eq!(pool.stats().meta_free, st.meta_free);
}

/// An unreadable superblock fails the open instead of silently falling
/// back to the older one.
#[test]
fn open_fails_on_superblock_read_error() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params(1000)).unwrap();
    pool.create_volume(1, 100).unwrap();
    pool.commit().unwrap();
    let (mut dev, s) = pool.into_parts();
    // Open reads block 0 then block 1; fail the newer one's read.
    let newer = dev.blocks[1][16..24] > dev.blocks[0][16..24];
    dev.fail_at = Some(dev.ios + u64::from(newer));
    assert_eq!(Pool::open(dev, s).err(), Some(Error::Io));
}

/// A metadata I/O error half way through an operation fails the pool:
/// it keeps serving the last commit and refuses changes until reopened;
/// an error before anything changed fails only the operation.
#[test]
fn io_error_mid_operation_fails_pool() {
    let (mut failed, mut op_only) = (0, 0);
    for k in 0..60 {
        let mut s = slots(MIN_CACHE_SLOTS);
        let mut pool = Pool::format(MemDevice::new(512), &mut s, params(5000)).unwrap();
        pool.create_volume(1, 100_000).unwrap();
        for v in (0..100_000).step_by(1000) {
            pool.provision(1, v).unwrap();
        }
        pool.commit().unwrap();
        pool.provision(1, 1).unwrap();
        let dev = pool.device_mut();
        dev.fail_at = Some(dev.ios + k);
        let mut err = None;
        for v in (500..100_000).step_by(1000) {
            if let Err(e) = pool.provision(1, v) {
                err = Some((e, v));
                break;
            }
        }
        let Some((e, v)) = err else { continue };
        assert_eq!(e, Error::Io);
        assert!(pool.device().fired);
        if pool.is_failed() {
            failed += 1;
            assert_eq!(pool.provision(1, 2), Err(Error::Io));
            assert_eq!(pool.commit(), Err(Error::Io));
            // The last commit is served: the uncommitted provision is gone.
            assert_eq!(pool.lookup(1, 1).unwrap(), Mapping::Unmapped);
            assert!(matches!(
                pool.lookup(1, 1000).unwrap(),
                Mapping::Mapped { .. }
            ));
            let (dev, s) = pool.into_parts();
            let mut pool = Pool::open(dev, s).unwrap();
            assert_eq!(pool.lookup(1, 1).unwrap(), Mapping::Unmapped);
            clean(&mut pool);
        } else {
            op_only += 1;
            // Nothing else was lost.
            assert_eq!(pool.lookup(1, v).unwrap(), Mapping::Unmapped);
            assert!(matches!(pool.lookup(1, 1).unwrap(), Mapping::Mapped { .. }));
            pool.provision(1, v).unwrap();
            pool.commit().unwrap();
            clean(&mut pool);
        }
    }
    assert!(failed > 0 && op_only > 0, "{failed} {op_only}");
}

/// Issue 10: discard frees interior nodes that become empty; a copy from
/// an unmapped source frees the leaves it empties.
#[test]
fn unmapping_leaves_no_empty_nodes() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(512), &mut s, params(1000)).unwrap();
    // Three levels: leaves of 678, level-1 nodes of 678 * 509 extents.
    pool.create_volume(1, 2_000_000).unwrap();
    pool.provision(1, 0).unwrap();
    pool.provision(1, 400_000).unwrap();
    pool.commit().unwrap();
    // Counts include the directory's two nodes.
    assert_eq!(clean(&mut pool).nodes, 2 + 5);
    pool.discard(1, 0, 1).unwrap();
    pool.commit().unwrap();
    // Root, one level-1 node, one leaf.
    assert_eq!(clean(&mut pool).nodes, 2 + 3);
    // A copy of unmapped extents over the last mapping empties the table.
    pool.create_volume(2, 2_000_000).unwrap();
    pool.copy_range(2, 399_990, 1, 399_990, 20).unwrap();
    pool.commit().unwrap();
    assert_eq!(clean(&mut pool).nodes, 2);
    // Discarding a whole subtree inside a range empties its parent too.
    for v in [0u64, 700, 1400, 345_200] {
        pool.provision(1, v).unwrap();
    }
    pool.snapshot(1, 3).unwrap();
    pool.discard(1, 0, 345_102).unwrap();
    pool.commit().unwrap();
    let r = clean(&mut pool);
    // Volume 3 keeps the shared table (root, 2 level-1, 4 leaves); volume
    // 1 has its own root, shares the second level-1 node.
    assert_eq!(r.nodes, 2 + 8, "{r:?}");
}

/// Issue 10: `lookup_cached` hits count as recent use, so the map path's
/// hot blocks stay cached while other lookups stream through the cache.
#[test]
fn lookup_cached_hits_keep_blocks_cached() {
    let mut s = slots(MIN_CACHE_SLOTS);
    let mut pool = Pool::format(MemDevice::new(1024), &mut s, params(1000)).unwrap();
    pool.create_volume(0, 300 * 678).unwrap();
    for i in 0..300u64 {
        pool.provision(0, i * 678).unwrap();
    }
    pool.commit().unwrap();
    pool.lookup(0, 0).unwrap();
    for i in 1..300u64 {
        assert!(
            pool.lookup_cached(0, 0).is_ok(),
            "hot extent evicted after {i} other lookups"
        );
        pool.lookup(0, i * 678).unwrap();
    }
}

/// Issue 10: the pending-break table is shared fairly: one volume may hold
/// at most half of it, so a busy volume cannot block the others.
#[test]
fn pending_breaks_are_limited_per_volume() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(4096), &mut s, params(2000)).unwrap();
    pool.create_volume(1, 1000).unwrap();
    for v in 0..600 {
        pool.provision(1, v).unwrap();
    }
    pool.snapshot(1, 2).unwrap();
    pool.commit().unwrap();
    let mut plans = vec![];
    for v in 0..MAX_PENDING_PER_VOLUME as u64 {
        plans.push(pool.prepare_break(2, v).unwrap());
    }
    const { assert!(MAX_PENDING_PER_VOLUME >= 128) };
    assert_eq!(
        pool.prepare_break(2, MAX_PENDING_PER_VOLUME as u64),
        Err(Error::Busy)
    );
    // Another volume still gets breaks.
    let other = pool.prepare_break(1, 599).unwrap();
    assert_ne!(other.new, other.old);
    for p in &plans {
        pool.complete_break(p).unwrap();
    }
    pool.complete_break(&other).unwrap();
    pool.commit().unwrap();
    clean(&mut pool);
}

/// The documented crash-safe way to move a range within one volume in
/// bounded steps (overlapping `copy_range_step` is refused): snapshot to a
/// temporary volume, copy from it in steps, delete it in steps. A crash
/// between steps (a reopen of an earlier commit) is recovered by running
/// the copy again from the start.
#[test]
fn overlapping_move_in_steps_via_snapshot() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(2000), &mut s, params(20_000)).unwrap();
    let size = 5000u64;
    pool.create_volume(0, size).unwrap();
    for v in (0..3000).filter(|v| v % 7 != 3) {
        pool.provision(0, v).unwrap();
    }
    pool.commit().unwrap();
    let before: Vec<Mapping> = (0..size).map(|v| pool.lookup(0, v).unwrap()).collect();
    let (a, b, len) = (100u64, 1500u64, 2500u64);
    // Overlapping steps: refused, nothing changed.
    assert_eq!(
        pool.copy_range_step(0, a, 0, b, len, 100),
        Err(Error::Invalid)
    );
    assert_eq!(
        pool.copy_range_step(0, b, 0, a, len, 100),
        Err(Error::Invalid)
    );
    assert!(!pool.is_dirty());
    // The recipe.
    pool.snapshot(0, 9).unwrap();
    pool.commit().unwrap();
    let mut done = 0;
    let mut crashed = false;
    while done < len {
        done += pool
            .copy_range_step(9, a + done, 0, b + done, len - done, 300)
            .unwrap();
        pool.commit().unwrap();
        if done >= 900 && !crashed {
            // Crash after some committed steps and one uncommitted:
            // reopen, then run the copy again from the start.
            crashed = true;
            pool.copy_range_step(9, a + done, 0, b + done, len - done, 300)
                .unwrap();
            let (dev, s2) = pool.into_parts();
            pool = Pool::open(dev, s2).unwrap();
            clean(&mut pool);
            done = 0;
        }
    }
    assert!(crashed);
    let mut steps = 0;
    loop {
        steps += 1;
        let done = pool.delete_volume_step(9, 1).unwrap();
        pool.commit().unwrap();
        if done == size {
            break;
        }
        let v = pool.next_volume(9).unwrap().unwrap();
        assert!(v.id == 9 && v.deleting);
        assert_eq!(pool.volume(9), Err(Error::NotFound));
    }
    assert_eq!(pool.next_volume(9).unwrap(), None);
    assert!(steps > 2, "{steps}");
    clean(&mut pool);
    // memmove semantics: dst[b+i] = old src[a+i].
    for v in 0..size {
        let want = if (b..b + len).contains(&v) {
            before[(v - b + a) as usize]
        } else {
            before[v as usize]
        };
        let got = pool.lookup(0, v).unwrap();
        let p = |m: Mapping| match m {
            Mapping::Mapped { pext, .. } => Some(pext),
            Mapping::Unmapped => None,
        };
        assert_eq!(p(got), p(want), "vext {v}");
    }
}

/// A deletion in steps works with the metadata full (it may use the
/// reserve), across commits.
#[test]
fn delete_in_steps_with_full_metadata() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(300), &mut s, params(100_000)).unwrap();
    let mut ids = vec![];
    let mut provisioning = true;
    for id in 0..1000u32 {
        if pool.create_volume(id, 1 << 30).is_err() {
            break;
        }
        ids.push(id);
        for k in 0..8u64 {
            if provisioning && pool.provision(id, k << 20).is_err() {
                provisioning = false;
            }
        }
    }
    pool.commit().unwrap();
    assert_eq!(
        pool.create_volume(999, 1 << 30),
        Err(Error::NoMetadataSpace)
    );
    let id = ids[0];
    let mut steps = 0;
    loop {
        steps += 1;
        let done = pool.delete_volume_step(id, 1).unwrap();
        pool.commit().unwrap();
        if done == 1 << 30 {
            break;
        }
    }
    assert_eq!(steps, 8);
    clean(&mut pool);
    pool.create_volume(999, 10).unwrap();
    pool.commit().unwrap();
    clean(&mut pool);
}

/// A sharing break prepared on a volume that then starts being deleted in
/// steps is stale: completing it frees its new extent and changes nothing
/// in the (hidden, half-deleted) volume.
#[test]
fn delete_in_steps_makes_pending_breaks_stale() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(2000), &mut s, params(20_000)).unwrap();
    pool.create_volume(0, 3000).unwrap();
    for v in 0..3000 {
        pool.provision(0, v).unwrap();
    }
    pool.snapshot(0, 1).unwrap();
    // Volume 1 gets its own nodes (one break per leaf), so deletion steps
    // go leaf by leaf; the other extents stay shared with volume 0.
    for v in (0..3000).step_by(678) {
        pool.break_sharing(1, v).unwrap();
    }
    pool.commit().unwrap();
    let plan = pool.prepare_break(1, 2500).unwrap();
    assert_ne!(plan.new, plan.old);
    let done = pool.delete_volume_step(1, 1).unwrap();
    assert!(done > 0 && done < 2500, "{done}");
    assert!(pool.next_volume(1).unwrap().unwrap().deleting);
    assert_eq!(pool.volume(1), Err(Error::NotFound));
    assert_eq!(pool.lookup(1, 2500), Err(Error::NotFound));
    assert_eq!(pool.prepare_break(1, 2400), Err(Error::NotFound));
    assert_eq!(pool.complete_break(&plan), Err(Error::Busy));
    assert_eq!(
        pool.next_mapping(1, 2500).unwrap(),
        Some((
            2500,
            Mapping::Mapped {
                pext: plan.old,
                shared: true
            }
        ))
    );
    assert_eq!(pool.data_refcount(plan.new).unwrap(), 0);
    assert_eq!(pool.snapshot(0, 1), Err(Error::Exists));
    assert_eq!(pool.snapshot(1, 2), Err(Error::NotFound));
    pool.commit().unwrap();
    clean(&mut pool);
    while pool.delete_volume_step(1, 1).unwrap() < 3000 {}
    pool.snapshot(0, 1).unwrap();
    pool.commit().unwrap();
    clean(&mut pool);
}

/// Two-phase provisioning: the extent is allocated but not visible until
/// completed; a commit meanwhile writes it as free (a crash forgets it);
/// stale plans and cancels free it.
#[test]
fn provision_two_phase() {
    let mut s = slots(64);
    let mut pool = Pool::format(MemDevice::new(256), &mut s, params(100)).unwrap();
    pool.create_volume(1, 50).unwrap();
    let mapped = pool.provision(1, 0).unwrap();
    pool.commit().unwrap();
    assert_eq!(pool.prepare_provision(1, 0), Err(Error::Exists));
    let free0 = pool.stats().data_free;
    let plan = pool.prepare_provision(1, 3).unwrap();
    assert_eq!(plan.old, NO_OLD);
    assert_ne!(plan.new, mapped);
    assert_eq!(pool.prepare_provision(1, 3), Err(Error::Busy));
    assert_eq!(pool.lookup(1, 3).unwrap(), Mapping::Unmapped);
    assert_eq!(pool.stats().data_free, free0 - 1);
    // Not reusable: the next allocation is another extent.
    let other = pool.provision(1, 4).unwrap();
    assert_ne!(other, plan.new);
    // A commit while it is pending: on disk the extent is free and
    // unmapped (reopen = crash after that commit).
    pool.commit().unwrap();
    clean(&mut pool);
    let (dev, s2) = pool.into_parts();
    let image = dev.clone();
    let mut pool = Pool::open(dev, s2).unwrap();
    {
        let mut s3 = slots(64);
        let mut crashed = Pool::open(image, &mut s3).unwrap();
        assert_eq!(crashed.lookup(1, 3).unwrap(), Mapping::Unmapped);
        assert_eq!(crashed.data_refcount(plan.new).unwrap(), 0);
        let mut scratch = vec![0u32; crashed.check_scratch_len() as usize];
        assert!(crashed.check(&mut scratch).unwrap().is_clean());
    }
    // Reopening forgot the plan (the kernel drains before it reopens).
    assert_eq!(pool.complete_provision(&plan), Err(Error::NotFound));
    let plan = pool.prepare_provision(1, 3).unwrap();
    pool.complete_provision(&plan).unwrap();
    assert_eq!(
        pool.lookup(1, 3).unwrap(),
        Mapping::Mapped {
            pext: plan.new,
            shared: false
        }
    );
    pool.commit().unwrap();
    clean(&mut pool);
    // Cancel frees the extent.
    let free1 = pool.stats().data_free;
    let plan = pool.prepare_provision(1, 5).unwrap();
    pool.cancel_provision(&plan).unwrap();
    assert_eq!(pool.stats().data_free, free1);
    assert_eq!(pool.data_refcount(plan.new).unwrap(), 0);
    // A discard of the range makes it stale: completion frees it.
    let plan = pool.prepare_provision(1, 6).unwrap();
    pool.discard(1, 6, 1).unwrap();
    assert_eq!(pool.complete_provision(&plan), Err(Error::Busy));
    assert_eq!(pool.lookup(1, 6).unwrap(), Mapping::Unmapped);
    assert_eq!(pool.data_refcount(plan.new).unwrap(), 0);
    // A break plan is not a provision plan.
    assert_eq!(
        pool.cancel_provision(&BreakPlan { old: 0, ..plan }),
        Err(Error::Invalid)
    );
    // A snapshot meanwhile keeps the origin's new extent unshared and the
    // snapshot unmapped there.
    let plan = pool.prepare_provision(1, 7).unwrap();
    pool.snapshot(1, 2).unwrap();
    pool.complete_provision(&plan).unwrap();
    assert_eq!(pool.lookup(2, 7).unwrap(), Mapping::Unmapped);
    assert_eq!(
        pool.lookup(1, 7).unwrap(),
        Mapping::Mapped {
            pext: plan.new,
            shared: false
        }
    );
    pool.commit().unwrap();
    clean(&mut pool);
}

#[test]
fn format_on_a_too_small_device_is_out_of_metadata_space() {
    // 1000 data extents need 1 index, 1 metadata and 1 data space map
    // block pair after the superblocks (8 blocks) plus 16 dynamic blocks.
    let mut s = slots(32);
    for blocks in [2u64, 8, 23] {
        let r = Pool::format(MemDevice::new(blocks), &mut s, params(1000));
        assert_eq!(r.err(), Some(Error::NoMetadataSpace), "{blocks} blocks");
    }
    let mut pool = Pool::format(MemDevice::new(24), &mut s, params(1000)).unwrap();
    clean(&mut pool);
}
