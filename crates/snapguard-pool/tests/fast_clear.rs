//! `Pool::clear_fast_map`: after it, the lock-free fast map answers no
//! earlier entry (the kernel calls it when it activates a volume, so that
//! a volume given another's identity by corrupt metadata never gets that
//! volume's extents from the map), and entries found later hit again.

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::*;

#[test]
fn clear_fast_map_forgets_every_entry() {
    let fast: &'static [FastSlot] = Box::leak((0..1024).map(|_| FastSlot::new()).collect());
    let mut arena = slots(64);
    let mut p = FormatParams::new(1000);
    p.extent_size = 4096;
    p.max_volumes = 16;
    let mut pool = Pool::format(MemDevice::new(128), &mut arena, p).unwrap();
    pool.set_fast_map(FastMap::new(fast).unwrap());
    pool.create_volume(1, 100).unwrap();
    let mut want = Vec::new();
    for v in 0..40 {
        want.push((v, pool.provision(1, v).unwrap()));
    }
    pool.commit().unwrap();
    let uid = pool.volume(1).unwrap().uid;
    let reader = FastMap::new(fast).unwrap();
    let hits = |r: &FastMap| {
        want.iter()
            .filter(|&&(v, p)| r.lookup(uid, v) == Some(p))
            .count()
    };
    assert!(hits(&reader) > 0, "provisioning recorded unshared mappings");
    pool.clear_fast_map();
    assert!(want.iter().all(|&(v, _)| reader.lookup(uid, v).is_none()));
    for &(v, p) in &want {
        assert_eq!(
            pool.lookup(1, v).unwrap(),
            Mapping::Mapped {
                pext: p,
                shared: false
            }
        );
    }
    assert_eq!(
        hits(&reader),
        want.len(),
        "lookups after the clear hit again"
    );
}
