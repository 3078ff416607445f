//! Format v2 scale: 2^32 data extents (256 TiB at 64 KiB) and a 1 TiB
//! metadata device, formatted on sparse devices in time proportional to
//! the space map index (not the pool size), exercised across the whole
//! data range, committed, reopened and checked.

use snapguard_pool::host::{slots, SparseDevice};
use snapguard_pool::*;

const DATA: u64 = 1 << 32;

fn exercise(pool: &mut Pool<'_, SparseDevice>) {
    pool.create_volume(1, DATA).unwrap();
    // Provision at both ends of the volume and of the data device.
    let mut pexts = vec![];
    for v in [0u64, 1, 2, DATA / 2, DATA - 1] {
        pexts.push(pool.provision(1, v).unwrap());
    }
    pool.commit().unwrap();
    pool.snapshot(1, 2).unwrap();
    let plan = pool.break_sharing(2, DATA - 1).unwrap();
    assert_ne!(plan.new, plan.old);
    pool.commit().unwrap();
    assert_eq!(
        pool.lookup(1, DATA / 2).unwrap(),
        Mapping::Mapped {
            pext: pexts[3],
            shared: true
        }
    );
    assert_eq!(
        pool.lookup(2, DATA - 1).unwrap(),
        Mapping::Mapped {
            pext: plan.new,
            shared: false
        }
    );
}

#[test]
fn two_pow_32_extents() {
    // 36 GiB of metadata (sparse): the data space map's fixed area is
    // 8 bytes per data extent (32 GiB), the rest is for trees.
    let meta = 9 << 20;
    let mut s = slots(1024);
    let mut p = FormatParams::new(DATA);
    p.extent_size = 64 << 10;
    let mut pool = Pool::format(SparseDevice::new(meta), &mut s, p).unwrap();
    let formatted = pool.device().writes;
    assert!(formatted < 1000, "format wrote {formatted} blocks");
    exercise(&mut pool);
    let st = pool.stats();
    assert_eq!(st.data_extents, DATA);
    let (dev, s) = pool.into_parts();
    let mut pool = Pool::open(dev, s).unwrap();
    let mut scratch = vec![0u32; (meta + (1 << 22)) as usize];
    let r = pool.check(&mut scratch).unwrap();
    assert!(r.is_clean(), "{r:?}");
    // Volume 1's five mappings, volume 2's own copy of the last leaf.
    assert_eq!(r.mapped, 6);
    eprintln!(
        "2^32 extents: format wrote {formatted} blocks; check {} passes",
        r.passes
    );
}

#[test]
fn one_tib_metadata() {
    let meta = 1u64 << 28; // 1 TiB of 4 KiB blocks
    let mut s = slots(1024);
    let mut p = FormatParams::new(DATA);
    p.extent_size = 64 << 10;
    let mut pool = Pool::format(SparseDevice::new(meta), &mut s, p).unwrap();
    assert!(pool.device().writes < 1000);
    exercise(&mut pool);
    let st = pool.stats();
    assert_eq!(st.meta_blocks, meta);
    let (dev, s) = pool.into_parts();
    let mut pool = Pool::open(dev, s).unwrap();
    assert!(matches!(pool.lookup(1, 0).unwrap(), Mapping::Mapped { .. }));
}

#[test]
fn largest_geometries() {
    // The index limit (28672 index blocks of 16288 entries) allows about
    // 4.7 * 10^8 space map blocks, i.e. about 4.1 * 10^11 data extents
    // with a 256 TiB metadata device; above it format says Invalid.
    let meta = 1u64 << 36;
    let max = max_data_extents(meta);
    assert!(max >= 1 << 38, "{max}");
    let mut p = FormatParams::new(max + 1);
    p.extent_size = 1 << 20;
    let mut s = slots(64);
    assert!(Pool::format(SparseDevice::new(meta), &mut s, p).is_err());
    // A 1 TiB metadata device holds the space maps of 2^32 extents.
    assert!(max_data_extents(1 << 28) >= DATA);
    let need = min_meta_blocks(DATA).unwrap();
    assert!(need <= 9 << 20, "{need}");
    assert_eq!(max_data_extents(need), max_data_extents(need).max(DATA));
    assert!(max_data_extents(need - 1) < DATA);
}
