//! `snapguard pool craft OUTDIR` (hidden): corrupted pool metadata images
//! for the kernel's crafted-input test (`selftests/target_crafted.sh`, see
//! Documentation/testing.rst, "Crafted input").
//!
//! A real pool is formatted and populated in memory with the pool core
//! (volumes, a snapshot with a broken sharing, a copy, a three-level
//! table, a second transaction, so both superblocks are valid and both
//! space map copies exist), then damaged one way per image: flipped bits
//! in every block type, superblock fields (version, magic, geometry,
//! counters), loops and cross links in trees, reference counts off by one,
//! out-of-range pointers and values, wrong tags, levels, generations and
//! locations (checksums recomputed where the damage must get past them),
//! truncated devices, zeroed superblocks. The fuzz regression corpus
//! (`--corpus DIR`) and the fuzz seeds the pool core builds
//! (`snapguard_pool::host::fuzz_seeds`) are decoded into images too, and
//! `--mutants N` adds seeded random changes of live blocks with checksums
//! recomputed.
//!
//! Each image's expected outcome in the kernel is what the shared pool
//! core does on the host with a device of the same size (the kernel runs
//! the same code): `refuse` (the constructor fails and writes nothing),
//! `open`, or `format` (both superblocks zero). For the deliberate images
//! the generator also states the outcome it meant and stops if the core
//! disagrees, and whether the host checker must report a problem.
//!
//! `OUTDIR/manifest.tsv`: name, expect, extent sectors, data extents,
//! volumes (`id:size:reads`, reads `*` for the whole volume or the extents
//! to read), check (`clean`, `problems=N` or `-`), description.
//! `OUTDIR/live.img` and `OUTDIR/live-map.tsv` (vext, pext, leaf block) are
//! the pool of the live-corruption test: one volume whose 400 mapped
//! extents sit in 400 different leaves, more than a 1 MiB cache holds.

use snapguard_pool::host::{slots, MemDevice};
use snapguard_pool::{crc32c, FormatParams, Mapping, Pool, BLOCK_SIZE};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::Path;

const BS: usize = BLOCK_SIZE;
type Block = [u8; BS];
/// Volumes: (id, size, mapped extents).
type Vols = Vec<(u32, u64, Vec<u64>)>;
/// An all-zero block (compared with `==`: a memcmp, fast in debug builds).
const ZERO: Block = [0; BS];

/// Base pool geometry: 4 KiB extents, 400 000 data extents (device-mapper
/// refuses a volume table longer than its pool device, so the pool is as
/// large as the three-level volume), 1024 metadata blocks, 200 volume ids
/// (a two-level directory).
const EXTENT: u64 = 4096;
const DATA: u64 = 400_000;
const META: u64 = 1024;
const MAX_VOLS: u32 = 200;

const INT_ENTRIES: u64 = 509;
const VLEAF_ENTRIES: u64 = 678;
const DLEAF_ENTRIES: u64 = 84;
const HDR: usize = 24;
/// Superblock offsets (Documentation/pool-format.rst): the growth
/// extension table and the index selector bitmap.
const EXT_OFF: usize = 256;
const SEL_OFF: usize = 512;

const TAG_VINT: u16 = 0x5649;

/// What the kernel must do with an image.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Refuse,
    Open,
    Format,
}

impl Expect {
    fn name(self) -> &'static str {
        match self {
            Expect::Refuse => "refuse",
            Expect::Open => "open",
            Expect::Format => "format",
        }
    }
}

/// One image to write.
struct Image {
    name: String,
    blocks: Vec<Block>,
    /// Device length in bytes (below `blocks.len() * 4096`: truncated).
    len: u64,
    /// The outcome meant (`None`: whatever the core does, for corpus
    /// inputs and random mutants).
    meant: Option<Expect>,
    /// The host checker must report a problem.
    detect: bool,
    desc: String,
}

fn rd64(b: &Block, off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
fn wr64(b: &mut Block, off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn rd48(b: &Block, off: usize) -> u64 {
    let mut a = [0u8; 8];
    a[..6].copy_from_slice(&b[off..off + 6]);
    u64::from_le_bytes(a)
}
fn wr48(b: &mut Block, off: usize, v: u64) {
    b[off..off + 6].copy_from_slice(&v.to_le_bytes()[..6]);
}
fn wr32(b: &mut Block, off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn rd32(b: &Block, off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn seal(b: &mut Block) {
    let c = crc32c(&b[4..]);
    wr32(b, 0, c);
}

/// The live blocks of a pool image, found by walking it from its newest
/// superblock (an independent reading of Documentation/pool-format.rst).
#[derive(Default, Debug)]
struct Layout {
    newest: u64,
    msm_blocks: u64,
    max_volumes: u64,
    /// Live copy of index block 0.
    idx: u64,
    /// Live copies of metadata and data space map blocks (if written).
    msm: Vec<Option<u64>>,
    dsm: Vec<Option<u64>>,
    dir_root: u64,
}

fn depth_for(leaf: u64, n: u64) -> u32 {
    let (mut d, mut c) = (1, leaf);
    while c < n {
        c *= INT_ENTRIES;
        d += 1;
    }
    d
}

fn cover(leaf: u64, level: u32) -> u64 {
    leaf * INT_ENTRIES.pow(level)
}

impl Layout {
    fn read(img: &[Block]) -> Layout {
        let newest = if rd64(&img[1], 16) > rd64(&img[0], 16) {
            1
        } else {
            0
        };
        let sb = &img[newest as usize];
        let msm_blocks = rd64(sb, 72);
        let dsm_blocks = rd64(sb, 80);
        let idx_blocks = rd64(sb, 152);
        let sel = u64::from(sb[SEL_OFF] & 1);
        let idx = 2 + sel;
        let ib = &img[idx as usize];
        let ent = |e: u64| (ib[HDR + (e / 4) as usize] >> ((e % 4) * 2)) & 3;
        let base = 2 + 2 * idx_blocks;
        let msm = (0..msm_blocks)
            .map(|j| {
                let v = ent(j);
                (v & 2 != 0).then_some(base + 2 * j + u64::from(v & 1))
            })
            .collect();
        let dbase = base + 2 * msm_blocks;
        let dsm = (0..dsm_blocks)
            .map(|j| {
                let v = ent(msm_blocks + j);
                (v & 2 != 0).then_some(dbase + 2 * j + u64::from(v & 1))
            })
            .collect();
        Layout {
            newest,
            msm_blocks,
            max_volumes: u64::from(rd32(sb, 64)),
            idx,
            msm,
            dsm,
            dir_root: rd64(sb, 96),
        }
    }

    /// Directory path (root first) to the leaf holding volume `id`, and
    /// the record's offset in that leaf.
    fn dir_path(&self, img: &[Block], id: u32) -> (Vec<u64>, usize) {
        let depth = depth_for(DLEAF_ENTRIES, self.max_volumes);
        let key = u64::from(id);
        let mut path = vec![self.dir_root];
        for level in (1..depth).rev() {
            let idx = (key / cover(DLEAF_ENTRIES, level - 1)) % INT_ENTRIES;
            let b = &img[*path.last().unwrap() as usize];
            path.push(rd64(b, HDR + 8 * idx as usize));
        }
        (path, HDR + 48 * (key % DLEAF_ENTRIES) as usize)
    }

    /// Volume `id`'s record: (size, root).
    fn record(&self, img: &[Block], id: u32) -> (u64, u64) {
        let (path, off) = self.dir_path(img, id);
        let b = &img[*path.last().unwrap() as usize];
        (rd64(b, off), rd64(b, off + 8))
    }

    /// Table path (root first) of volume `id` to the leaf of `vext`.
    fn vol_path(&self, img: &[Block], id: u32, vext: u64) -> Vec<u64> {
        let (size, root) = self.record(img, id);
        let depth = depth_for(VLEAF_ENTRIES, size);
        let mut path = vec![root];
        for level in (1..depth).rev() {
            let idx = (vext / cover(VLEAF_ENTRIES, level - 1)) % INT_ENTRIES;
            let b = &img[*path.last().unwrap() as usize];
            let child = rd64(b, HDR + 8 * idx as usize);
            assert_ne!(child, 0, "volume {id} extent {vext} has no leaf");
            path.push(child);
        }
        path
    }

    /// Live copy of the metadata (`meta`) or data space map block holding
    /// entry `n`, and the entry's offset.
    fn sm_entry(&self, meta: bool, n: u64) -> (u64, usize) {
        let j = (n / 1018) as usize;
        let loc = if meta { self.msm[j] } else { self.dsm[j] };
        (
            loc.expect("space map block written"),
            HDR + 4 * (n % 1018) as usize,
        )
    }
}

/// The base pool: (image, volumes as `(id, size, mapped vexts)`).
fn base_pool() -> (Vec<Block>, Vols) {
    let mut arena = slots(256);
    let mut p = FormatParams::new(DATA);
    p.extent_size = EXTENT;
    p.max_volumes = MAX_VOLS;
    let mut pool = Pool::format(MemDevice::new(META), &mut arena, p).expect("format");
    pool.create_volume(1, 1500).unwrap();
    for v in 0..900 {
        pool.provision(1, v).unwrap();
    }
    pool.create_volume(90, 400_000).unwrap();
    for v in [0, 1, 345_101, 345_102, 399_999] {
        pool.provision(90, v).unwrap();
    }
    pool.create_volume(170, 100).unwrap();
    pool.create_volume(199, 50).unwrap();
    pool.commit().unwrap();
    pool.snapshot(1, 2).unwrap();
    pool.break_sharing(2, 5).unwrap();
    pool.copy_range(1, 10, 170, 0, 50).unwrap();
    pool.commit().unwrap();
    // A second transaction: both superblocks describe a pool.
    pool.provision(1, 1450).unwrap();
    pool.provision(2, 1400).unwrap();
    pool.commit().unwrap();
    let mut vols = Vec::new();
    let mut from = 0;
    while let Some(v) = pool.next_volume(from).unwrap() {
        let mut mapped = Vec::new();
        let mut pos = 0;
        while let Some((k, _)) = pool.next_mapping(v.id, pos).unwrap() {
            mapped.push(k);
            pos = k + 1;
        }
        vols.push((v.id, v.size, mapped));
        from = v.id + 1;
    }
    let mut s = vec![0u32; pool.check_scratch_len() as usize];
    assert!(pool.check(&mut s).unwrap().is_clean());
    (pool.into_device().blocks, vols)
}

/// The deliberate corruptions of the base pool.
fn crafted(base: &[Block], sink: &mut dyn FnMut(Image)) {
    let l = Layout::read(base);
    let new = l.newest as usize;
    let old = 1 - new;
    let mut add = |name: &str,
                   meant: Expect,
                   detect: bool,
                   desc: &str,
                   f: &dyn Fn(&mut Vec<Block>) -> u64| {
        let mut img = base.to_vec();
        let len = f(&mut img);
        sink(Image {
            name: name.into(),
            blocks: img,
            len,
            meant: Some(meant),
            detect,
            desc: desc.into(),
        });
    };
    let full = META * BS as u64;
    // Superblocks.
    add(
        "sb-newest-bitflip",
        Expect::Open,
        false,
        "bit flipped in the newest superblock: the older one is used",
        &|i| {
            i[new][300] ^= 0x10;
            full
        },
    );
    add(
        "sb-older-bitflip",
        Expect::Open,
        false,
        "bit flipped in the older superblock",
        &|i| {
            i[old][100] ^= 0x01;
            full
        },
    );
    add(
        "sb-both-bitflip",
        Expect::Refuse,
        false,
        "a bit flipped in each superblock",
        &|i| {
            i[0][40] ^= 0x04;
            i[1][2000] ^= 0x80;
            full
        },
    );
    add(
        "sb-second-zeroed",
        Expect::Open,
        false,
        "superblock block 1 zeroed",
        &|i| {
            i[1] = [0; BS];
            full
        },
    );
    add(
        "sb-first-zeroed",
        Expect::Open,
        false,
        "superblock block 0 zeroed",
        &|i| {
            i[0] = [0; BS];
            full
        },
    );
    add(
        "sb-newest-zeroed-older-bitflip",
        Expect::Refuse,
        false,
        "newest superblock zeroed, a bit flipped in the other",
        &|i| {
            i[new] = [0; BS];
            i[old][64] ^= 0x02;
            full
        },
    );
    let both = |i: &mut Vec<Block>, f: &dyn Fn(&mut Block)| {
        for b in i.iter_mut().take(2) {
            f(b);
            seal(b);
        }
    };
    add(
        "sb-version-2",
        Expect::Refuse,
        false,
        "format version 2 (the previous one) in both superblocks (checksums recomputed)",
        &|i| {
            both(i, &|b| wr32(b, 32, 2));
            full
        },
    );
    add(
        "sb-version-4",
        Expect::Refuse,
        false,
        "format version 4 in both superblocks (checksums recomputed)",
        &|i| {
            both(i, &|b| wr32(b, 32, 4));
            full
        },
    );
    add(
        "sb-extension-bogus",
        Expect::Refuse,
        false,
        "a growth extension the capacities do not call for in both superblocks (first dynamic block, one metadata space map block; checksums recomputed)",
        &|i| {
            both(i, &|b| {
                wr64(b, EXT_OFF, rd64(b, 88));
                wr32(b, EXT_OFF + 8, 1);
            });
            full
        },
    );
    add(
        "sb-selector-stray",
        Expect::Refuse,
        false,
        "a selector bit set past the index blocks in both superblocks (checksums recomputed)",
        &|i| {
            both(i, &|b| b[BS - 1] |= 0x80);
            full
        },
    );
    add(
        "sb-version-1",
        Expect::Refuse,
        false,
        "format version 1 in both superblocks (checksums recomputed)",
        &|i| {
            both(i, &|b| wr32(b, 32, 1));
            full
        },
    );
    add(
        "sb-magic",
        Expect::Refuse,
        false,
        "magic changed in both superblocks (checksums recomputed)",
        &|i| {
            both(i, &|b| b[24] ^= 0x20);
            full
        },
    );
    add(
        "sb-swapped",
        Expect::Refuse,
        false,
        "the two superblocks swapped (each names the other location)",
        &|i| {
            i.swap(0, 1);
            full
        },
    );
    add(
        "sb-meta-beyond-device",
        Expect::Refuse,
        false,
        "metadata size one block above the device (both, resealed)",
        &|i| {
            both(i, &|b| wr64(b, 56, META + 1));
            full
        },
    );
    add(
        "sb-extent-shift-11",
        Expect::Refuse,
        false,
        "extent shift 11 (2 KiB) in both superblocks",
        &|i| {
            both(i, &|b| wr32(b, 44, 11));
            full
        },
    );
    add(
        "sb-zero-data-extents",
        Expect::Refuse,
        false,
        "0 data extents in both superblocks",
        &|i| {
            both(i, &|b| wr64(b, 48, 0));
            full
        },
    );
    add(
        "sb-data-above-capacity",
        Expect::Refuse,
        false,
        "data extents above the capacity in both superblocks",
        &|i| {
            both(i, &|b| wr64(b, 48, DATA + 1));
            full
        },
    );
    add(
        "sb-sm-count",
        Expect::Refuse,
        false,
        "redundant space map block count wrong in both superblocks",
        &|i| {
            both(i, &|b| wr64(b, 80, rd64(b, 80) + 1));
            full
        },
    );
    add(
        "sb-max-volumes-0",
        Expect::Refuse,
        false,
        "max_volumes 0 in both superblocks",
        &|i| {
            both(i, &|b| wr32(b, 64, 0));
            full
        },
    );
    add(
        "sb-dir-root-fixed",
        Expect::Refuse,
        false,
        "directory root in the fixed area in both superblocks",
        &|i| {
            both(i, &|b| wr64(b, 96, 3));
            full
        },
    );
    add(
        "sb-data-free-above",
        Expect::Refuse,
        false,
        "free data extents above the data size in both superblocks",
        &|i| {
            both(i, &|b| wr64(b, 104, DATA + 1));
            full
        },
    );
    add(
        "sb-volumes-above-max",
        Expect::Refuse,
        false,
        "volume count above max_volumes in both superblocks",
        &|i| {
            both(i, &|b| wr64(b, 136, u64::from(MAX_VOLS) + 1));
            full
        },
    );
    add(
        "sb-next-uid-0",
        Expect::Refuse,
        false,
        "next volume uid 0 in both superblocks",
        &|i| {
            both(i, &|b| wr64(b, 144, 0));
            full
        },
    );
    add(
        "sb-gen-parity",
        Expect::Refuse,
        false,
        "each superblock's generation of the other parity",
        &|i| {
            both(i, &|b| wr64(b, 16, rd64(b, 16) + 1));
            full
        },
    );
    // Counters in range but wrong: the pool opens.
    let newest_only = |i: &mut Vec<Block>, f: &dyn Fn(&mut Block)| {
        f(&mut i[new]);
        seal(&mut i[new]);
    };
    add(
        "sb-data-free-0",
        Expect::Open,
        true,
        "newest superblock says no data extent is free",
        &|i| {
            newest_only(i, &|b| wr64(b, 104, 0));
            full
        },
    );
    add(
        "sb-data-free-all",
        Expect::Open,
        true,
        "newest superblock says every data extent is free",
        &|i| {
            newest_only(i, &|b| wr64(b, 104, DATA));
            full
        },
    );
    add(
        "sb-meta-free-0",
        Expect::Open,
        true,
        "newest superblock says no metadata block is free",
        &|i| {
            newest_only(i, &|b| wr64(b, 112, 0));
            full
        },
    );
    add(
        "sb-hints-out-of-range",
        Expect::Open,
        false,
        "allocation hints beyond the devices",
        &|i| {
            newest_only(i, &|b| {
                wr64(b, 120, u64::MAX);
                wr64(b, 128, 1);
            });
            full
        },
    );
    add(
        "sb-volume-count",
        Expect::Open,
        true,
        "volume count off by one",
        &|i| {
            newest_only(i, &|b| wr64(b, 136, rd64(b, 136) + 1));
            full
        },
    );
    add(
        "sb-next-uid-reused",
        Expect::Open,
        false,
        "next uid 1: a new volume gets an existing volume's uid",
        &|i| {
            newest_only(i, &|b| wr64(b, 144, 1));
            full
        },
    );
    add(
        "sb-dir-root-beyond",
        Expect::Refuse,
        false,
        "directory root beyond the metadata size (both)",
        &|i| {
            both(i, &|b| wr64(b, 96, META + 7));
            full
        },
    );
    add(
        "sb-dir-root-is-leaf",
        Expect::Open,
        true,
        "directory root points at a volume table leaf",
        &|i| {
            let leaf = *l.vol_path(base, 1, 0).last().unwrap();
            newest_only(i, &|b| wr64(b, 96, leaf));
            full
        },
    );
    add(
        "sb-selector-stale",
        Expect::Open,
        true,
        "index selector bit names the other (stale) index copy",
        &|i| {
            newest_only(i, &|b| b[SEL_OFF] ^= 1);
            full
        },
    );
    // Truncated devices.
    add(
        "truncated-half",
        Expect::Refuse,
        false,
        "device truncated to half the metadata size",
        &|_| full / 2,
    );
    add(
        "truncated-one-block",
        Expect::Refuse,
        false,
        "device one block short",
        &|_| full - BS as u64,
    );
    add(
        "truncated-512",
        Expect::Refuse,
        false,
        "device 512 bytes short (a partial last block)",
        &|_| full - 512,
    );
    add(
        "truncated-2-blocks",
        Expect::Refuse,
        false,
        "device of the two superblocks only",
        &|_| 2 * BS as u64,
    );
    // Space map index and space maps.
    let idx = l.idx as usize;
    add(
        "sidx-bitflip",
        Expect::Open,
        true,
        "bit flipped in the live space map index block",
        &|i| {
            i[idx][HDR] ^= 0x02;
            full
        },
    );
    add(
        "sidx-selector-flipped",
        Expect::Open,
        true,
        "index entry of the last data space map block names its other copy (resealed)",
        &|i| {
            // That copy is stale or was never written (zero).
            let e = l.msm_blocks + l.dsm.len() as u64 - 1;
            i[idx][HDR + (e / 4) as usize] ^= 1 << ((e % 4) * 2);
            i[idx][HDR + (e / 4) as usize] |= 2 << ((e % 4) * 2);
            seal(&mut i[idx]);
            full
        },
    );
    let root1 = l.vol_path(base, 1, 0)[0];
    let (msm_b, msm_off) = l.sm_entry(true, root1);
    add(
        "msm-bitflip",
        Expect::Open,
        true,
        "bit flipped in the live metadata space map block",
        &|i| {
            i[msm_b as usize][msm_off] ^= 0x40;
            full
        },
    );
    let leaf1 = *l.vol_path(base, 1, 0).last().unwrap();
    // An extent only volume 90 maps (its leaf of 345101).
    let lf90_ = *l.vol_path(base, 90, 345_101).last().unwrap();
    let solo = rd48(
        &base[lf90_ as usize],
        HDR + 6 * (345_101 % VLEAF_ENTRIES) as usize,
    ) - 1;
    let (dsm_b, dsm_off) = l.sm_entry(false, solo);
    add(
        "dsm-bitflip",
        Expect::Open,
        true,
        "bit flipped in the live data space map block",
        &|i| {
            i[dsm_b as usize][dsm_off + 1] ^= 0x08;
            full
        },
    );
    // Reference counts off by one (checksums recomputed).
    let adj = |i: &mut Vec<Block>, blk: u64, off: usize, d: i64| {
        let b = &mut i[blk as usize];
        let v = rd32(b, off) as i64 + d;
        wr32(b, off, v as u32);
        seal(b);
    };
    add(
        "refcount-meta-root-plus1",
        Expect::Open,
        true,
        "volume 1's root counted once more",
        &|i| {
            adj(i, msm_b, msm_off, 1);
            full
        },
    );
    add(
        "refcount-meta-root-minus1",
        Expect::Open,
        true,
        "volume 1's root counted once less",
        &|i| {
            adj(i, msm_b, msm_off, -1);
            full
        },
    );
    let shared_leaf = l.vol_path(base, 1, 700)[1];
    let (sl_b, sl_off) = l.sm_entry(true, shared_leaf);
    add(
        "refcount-meta-shared-leaf-minus1",
        Expect::Open,
        true,
        "a leaf shared by volumes 1 and 2 counted once (writes may change it in place)",
        &|i| {
            adj(i, sl_b, sl_off, -1);
            full
        },
    );
    add(
        "refcount-data-minus1",
        Expect::Open,
        true,
        "a mapped data extent counted 0 (free while mapped)",
        &|i| {
            adj(i, dsm_b, dsm_off, -1);
            full
        },
    );
    add(
        "refcount-data-plus1",
        Expect::Open,
        true,
        "a mapped data extent counted once more",
        &|i| {
            adj(i, dsm_b, dsm_off, 1);
            full
        },
    );
    let leaf170 = l.vol_path(base, 170, 0)[0];
    let p170 = rd48(&base[leaf170 as usize], HDR) - 1;
    let (d170_b, d170_off) = l.sm_entry(false, p170);
    add(
        "refcount-data-shared-minus1",
        Expect::Open,
        true,
        "an extent mapped by volumes 1, 2 and 170 counted once less",
        &|i| {
            adj(i, d170_b, d170_off, -1);
            full
        },
    );
    // Directory.
    let (dpath, rec_off) = l.dir_path(base, 1);
    let dint = dpath[0] as usize;
    let dleaf = dpath[1] as usize;
    add(
        "dint-bitflip",
        Expect::Open,
        true,
        "bit flipped in the directory root (internal node)",
        &|i| {
            i[dint][HDR + 1] ^= 0x01;
            full
        },
    );
    add(
        "dleaf-bitflip",
        Expect::Open,
        true,
        "bit flipped in the directory leaf of volumes 0..83",
        &|i| {
            i[dleaf][rec_off + 3] ^= 0x20;
            full
        },
    );
    add(
        "dir-loop",
        Expect::Open,
        true,
        "directory root's child points at the root itself (resealed)",
        &|i| {
            wr64(&mut i[dint], HDR, dint as u64);
            seal(&mut i[dint]);
            full
        },
    );
    add(
        "record-root-beyond",
        Expect::Open,
        true,
        "volume 1's root beyond the metadata device",
        &|i| {
            wr64(&mut i[dleaf], rec_off + 8, META + 100);
            seal(&mut i[dleaf]);
            full
        },
    );
    add(
        "record-root-fixed",
        Expect::Open,
        true,
        "volume 1's root in the space map area",
        &|i| {
            wr64(&mut i[dleaf], rec_off + 8, 5);
            seal(&mut i[dleaf]);
            full
        },
    );
    add(
        "record-root-is-dleaf",
        Expect::Open,
        true,
        "volume 1's root points at its own directory leaf",
        &|i| {
            wr64(&mut i[dleaf], rec_off + 8, dleaf as u64);
            seal(&mut i[dleaf]);
            full
        },
    );
    add(
        "record-size-huge",
        Expect::Open,
        true,
        "volume 1's size 2^60 extents",
        &|i| {
            wr64(&mut i[dleaf], rec_off, 1 << 60);
            seal(&mut i[dleaf]);
            full
        },
    );
    add(
        "record-size-deeper",
        Expect::Open,
        true,
        "volume 1's size needs a deeper table than it has",
        &|i| {
            wr64(&mut i[dleaf], rec_off, 400_000);
            seal(&mut i[dleaf]);
            full
        },
    );
    add(
        "record-bg-cursor",
        Expect::Open,
        true,
        "volume 1's background-copy cursor beyond its size",
        &|i| {
            wr64(&mut i[dleaf], rec_off + 16, u64::MAX);
            seal(&mut i[dleaf]);
            full
        },
    );
    add(
        "record-uid-dup",
        Expect::Open,
        false,
        "volume 2 has volume 1's uid",
        &|i| {
            let uid = rd64(&i[dleaf], rec_off + 32);
            wr64(&mut i[dleaf], rec_off + 48 + 32, uid);
            seal(&mut i[dleaf]);
            full
        },
    );
    // Volume tables.
    let p90 = l.vol_path(base, 90, 345_101);
    let (r90, m90, lf90) = (p90[0] as usize, p90[1] as usize, p90[2] as usize);
    let idx_top = (345_101 / cover(VLEAF_ENTRIES, 1)) as usize;
    let idx_mid = ((345_101 / VLEAF_ENTRIES) % INT_ENTRIES) as usize;
    add(
        "vint-root-bitflip",
        Expect::Open,
        true,
        "bit flipped in volume 1's root (internal node)",
        &|i| {
            i[root1 as usize][HDR + 7] ^= 0x04;
            full
        },
    );
    add(
        "vint-level2-bitflip",
        Expect::Open,
        true,
        "bit flipped in volume 90's level-2 root",
        &|i| {
            i[r90][1000] ^= 0x01;
            full
        },
    );
    add(
        "vint-level1-bitflip",
        Expect::Open,
        true,
        "bit flipped in a level-1 node of volume 90",
        &|i| {
            i[m90][HDR + 8 * idx_mid] ^= 0x01;
            full
        },
    );
    add(
        "vleaf-bitflip",
        Expect::Open,
        true,
        "bit flipped in volume 1's first leaf",
        &|i| {
            i[leaf1 as usize][HDR + 6 * 3] ^= 0x01;
            full
        },
    );
    add(
        "vleaf-header-bitflip",
        Expect::Open,
        true,
        "bit flipped in the tag of volume 90's leaf",
        &|i| {
            i[lf90][5] ^= 0x01;
            full
        },
    );
    add(
        "tree-loop-to-root",
        Expect::Open,
        true,
        "volume 90's level-1 node points back at the root (resealed)",
        &|i| {
            wr64(&mut i[m90], HDR + 8 * idx_mid, r90 as u64);
            seal(&mut i[m90]);
            full
        },
    );
    add(
        "tree-loop-self",
        Expect::Open,
        true,
        "volume 90's root points at itself (resealed)",
        &|i| {
            wr64(&mut i[r90], HDR + 8 * idx_top, r90 as u64);
            seal(&mut i[r90]);
            full
        },
    );
    add("tree-loop-relabelled", Expect::Open, true, "volume 90's leaf relabelled as a level-1 node whose entries all point back at the root (resealed)", &|i| {
        // Volume 90's leaf becomes a level-1 internal node whose entries
        // point back at the level-2 root; the level-1 node points at it
        // as the level-0 child it expects.
        let b = &mut i[lf90];
        b[4..6].copy_from_slice(&TAG_VINT.to_le_bytes());
        b[6] = 1;
        for e in 0..INT_ENTRIES as usize {
            wr64(b, HDR + 8 * e, r90 as u64);
        }
        seal(b);
        full
    });
    add(
        "tree-cross-link",
        Expect::Open,
        true,
        "volume 90's level-1 node points at volume 1's leaf (shared without a count)",
        &|i| {
            wr64(&mut i[m90], HDR + 8 * idx_mid, leaf1);
            seal(&mut i[m90]);
            full
        },
    );
    add(
        "vint-child-beyond",
        Expect::Open,
        true,
        "volume 1's root points beyond the device",
        &|i| {
            wr64(&mut i[root1 as usize], HDR, u64::MAX);
            seal(&mut i[root1 as usize]);
            full
        },
    );
    add(
        "vint-child-fixed",
        Expect::Open,
        true,
        "volume 1's root points into the superblock",
        &|i| {
            wr64(&mut i[root1 as usize], HDR, 1);
            seal(&mut i[root1 as usize]);
            full
        },
    );
    add(
        "vleaf-value-beyond",
        Expect::Open,
        true,
        "volume 1's leaf maps an extent beyond the data device",
        &|i| {
            wr48(&mut i[leaf1 as usize], HDR, DATA + 1);
            seal(&mut i[leaf1 as usize]);
            full
        },
    );
    add(
        "vleaf-value-max",
        Expect::Open,
        true,
        "volume 1's leaf maps extent 2^48-2",
        &|i| {
            wr48(&mut i[leaf1 as usize], HDR + 6, (1 << 48) - 1);
            seal(&mut i[leaf1 as usize]);
            full
        },
    );
    add(
        "vleaf-tail-nonzero",
        Expect::Open,
        true,
        "volume 170's leaf has a mapping past the volume's end",
        &|i| {
            wr48(&mut i[leaf170 as usize], HDR + 6 * 500, 7);
            seal(&mut i[leaf170 as usize]);
            full
        },
    );
    add(
        "vleaf-level",
        Expect::Open,
        true,
        "volume 1's leaf says level 1",
        &|i| {
            i[leaf1 as usize][6] = 1;
            seal(&mut i[leaf1 as usize]);
            full
        },
    );
    add(
        "vleaf-tag-vint",
        Expect::Open,
        true,
        "volume 1's leaf tagged as an internal node",
        &|i| {
            i[leaf1 as usize][4..6].copy_from_slice(&TAG_VINT.to_le_bytes());
            seal(&mut i[leaf1 as usize]);
            full
        },
    );
    add(
        "vleaf-future-gen",
        Expect::Open,
        true,
        "volume 1's leaf from a generation not committed yet",
        &|i| {
            let g = rd64(&i[new], 16) + 5;
            wr64(&mut i[leaf1 as usize], 16, g);
            seal(&mut i[leaf1 as usize]);
            full
        },
    );
    add(
        "vleaf-misdirected",
        Expect::Open,
        true,
        "volume 1's leaf holds another block's contents (location check)",
        &|i| {
            let other = i[lf90];
            i[leaf1 as usize] = other;
            full
        },
    );
    add(
        "vleaf-zeroed",
        Expect::Open,
        true,
        "volume 1's leaf zeroed (a lost write)",
        &|i| {
            i[leaf1 as usize] = [0; BS];
            full
        },
    );
    add(
        "vleaf-empty",
        Expect::Open,
        true,
        "volume 90's leaf with every entry cleared (resealed)",
        &|i| {
            let b = &mut i[lf90];
            b[HDR..].fill(0);
            seal(b);
            full
        },
    );
}

/// Decodes a fuzz corpus input (`snapguard_pool::host::fuzz_one`'s
/// format) into the device it describes.
fn decode_fuzz(name: &str, data: &[u8]) -> Option<Image> {
    let (&flags, rest) = data.split_first()?;
    let (&size, img) = rest.split_first()?;
    let mut dev = MemDevice::from_image(&img[..img.len().min(256 * BS)]);
    let want = usize::from(size).min(256);
    if dev.blocks.len() < want {
        dev.blocks.resize(want, [0; BS]);
    }
    if flags & 1 != 0 {
        for b in dev.blocks.iter_mut() {
            seal(b);
        }
    }
    let len = (dev.blocks.len() * BS) as u64;
    Some(Image {
        name: format!("corpus-{name}"),
        blocks: dev.blocks,
        len,
        meant: None,
        detect: false,
        desc: format!("fuzz corpus input {name} (flags {flags})"),
    })
}

/// Seeded random changes of the base pool's non-zero blocks, with
/// checksums recomputed (so that they reach the code past the checksum).
fn mutants(base: &[Block], n: usize, seed: u64, sink: &mut dyn FnMut(Image)) {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let used: Vec<usize> = (0..base.len()).filter(|&i| base[i] != ZERO).collect();
    for k in 0..n {
        {
            let mut img = base.to_vec();
            let blk = used[(rnd() as usize) % used.len()];
            let changes = 1 + rnd() % 4;
            let mut what = String::new();
            for _ in 0..changes {
                // Mostly the first entries (header and records), some anywhere.
                let off = if rnd() % 2 == 0 {
                    4 + (rnd() % 200) as usize
                } else {
                    4 + (rnd() % (BS as u64 - 4)) as usize
                };
                let v = rnd() as u8;
                img[blk][off] = v;
                let _ = write!(what, " {off}={v:#x}");
            }
            if rnd() % 8 != 0 {
                seal(&mut img[blk]);
            }
            sink(Image {
                name: format!("mutant-{seed}-{k}"),
                blocks: img,
                len: META * BS as u64,
                meant: None,
                detect: false,
                desc: format!("block {blk} bytes{what}"),
            });
        }
    }
}

/// What the pool core makes of an image on a device of its length.
fn outcome(img: &Image, check: bool) -> (Expect, Option<(u64, u64)>, String) {
    let nblocks = (img.len / BS as u64) as usize;
    let mut blocks: Vec<Block> = img.blocks.iter().take(nblocks).copied().collect();
    // The kernel reads what the device holds: blocks past the image's
    // end (a corpus input) are zero.
    blocks.resize(nblocks, [0; BS]);
    if nblocks >= 2 && blocks[..2].iter().all(|b| *b == ZERO) {
        // The kernel formats it with the table's geometry, if it fits.
        let mut arena = slots(256);
        let mut p = FormatParams::new(DATA);
        p.extent_size = EXTENT;
        return match Pool::format(MemDevice::new(nblocks as u64), &mut arena, p) {
            Ok(_) => (Expect::Format, None, "-".into()),
            Err(_) => (Expect::Refuse, None, "-".into()),
        };
    }
    let mut arena = slots(256);
    let Ok(mut pool) = Pool::open(MemDevice::from_blocks(blocks), &mut arena) else {
        return (Expect::Refuse, None, "-".into());
    };
    let st = pool.stats();
    if !check {
        return (
            Expect::Open,
            Some((st.extent_size, st.data_extents)),
            "-".into(),
        );
    }
    let mut s = vec![0u32; pool.check_scratch_len().min(1 << 24) as usize];
    let check = match pool.check(&mut s) {
        Ok(r) if r.is_clean() => "clean".to_string(),
        Ok(r) => format!("problems={}", r.errors),
        Err(e) => format!("error:{e:?}"),
    };
    (Expect::Open, Some((st.extent_size, st.data_extents)), check)
}

/// Volumes column of the manifest: `id:size:reads` separated by spaces;
/// reads: the first and last extent, the first mapped extent of each leaf
/// (so that every leaf is looked up) and the first few mapped ones.
fn volumes_col(vols: &[(u32, u64, Vec<u64>)]) -> String {
    let mut out = Vec::new();
    for (id, size, mapped) in vols {
        let mut r: Vec<u64> = vec![0, size.saturating_sub(1)];
        r.extend(mapped.iter().take(8));
        let mut last_leaf = None;
        for &v in mapped {
            if last_leaf != Some(v / VLEAF_ENTRIES) && r.len() < 40 {
                r.push(v);
                last_leaf = Some(v / VLEAF_ENTRIES);
            }
        }
        r.sort_unstable();
        r.dedup();
        let reads: Vec<String> = r.iter().map(|v| v.to_string()).collect();
        out.push(format!("{id}:{size}:{}", reads.join(",")));
    }
    out.join(" ")
}

/// Volumes and mapped extents of an image the core opens (for corpus
/// inputs and mutants; bounded).
fn volumes_of(img: &Image) -> Vols {
    let nblocks = (img.len / BS as u64) as usize;
    let mut blocks: Vec<Block> = img.blocks.iter().take(nblocks).copied().collect();
    blocks.resize(nblocks, [0; BS]);
    let mut arena = slots(256);
    let Ok(mut pool) = Pool::open(MemDevice::from_blocks(blocks), &mut arena) else {
        return Vec::new();
    };
    let mut vols = Vec::new();
    let mut from = 0;
    while let Ok(Some(v)) = pool.next_volume(from) {
        let mut mapped = Vec::new();
        let mut pos = 0;
        while mapped.len() < 14 {
            match pool.next_mapping(v.id, pos) {
                Ok(Some((k, Mapping::Mapped { .. }))) => {
                    mapped.push(k);
                    pos = k + 1;
                }
                _ => break,
            }
        }
        vols.push((v.id, v.size.min(1 << 40), mapped));
        if vols.len() >= 8 {
            break;
        }
        match v.id.checked_add(1) {
            Some(n) => from = n,
            None => break,
        }
    }
    vols
}

fn write_image(path: &Path, img: &Image) -> std::io::Result<()> {
    let f = std::fs::File::create(path)?;
    // Sparse: only the non-zero blocks are written.
    for (i, b) in img.blocks.iter().enumerate() {
        let off = (i * BS) as u64;
        if off >= img.len || *b == ZERO {
            continue;
        }
        let n = (img.len - off).min(BS as u64) as usize;
        f.write_all_at(&b[..n], off)?;
    }
    f.set_len(img.len)
}

/// Data extents of the live-corruption pool (its volume's size).
pub(crate) const LIVE_DATA: u64 = 400 * VLEAF_ENTRIES;

/// The live-corruption pool: volume 1 of 400 leaves with one mapped
/// extent each, volume 3 small. Returns the image and (vext, pext, leaf).
fn live_pool() -> (Vec<Block>, Vec<(u64, u64, u64)>) {
    let mut arena = slots(1024);
    let mut p = FormatParams::new(LIVE_DATA);
    p.extent_size = EXTENT;
    p.max_volumes = 64;
    let mut pool = Pool::format(MemDevice::new(2048), &mut arena, p).expect("format");
    pool.create_volume(1, 400 * VLEAF_ENTRIES).unwrap();
    for k in 0..400 {
        pool.provision(1, k * VLEAF_ENTRIES).unwrap();
    }
    pool.create_volume(3, 64).unwrap();
    pool.provision(3, 0).unwrap();
    pool.commit().unwrap();
    let mut map = Vec::new();
    for k in 0..400 {
        if let Mapping::Mapped { pext, .. } = pool.lookup(1, k * VLEAF_ENTRIES).unwrap() {
            map.push((k * VLEAF_ENTRIES, pext, 0));
        }
    }
    let img = pool.into_device().blocks;
    let l = Layout::read(&img);
    for m in map.iter_mut() {
        m.2 = *l.vol_path(&img, 1, m.0).last().unwrap();
    }
    (img, map)
}

/// Writes every image and the manifest; returns the number of images.
pub(crate) fn run(
    outdir: &Path,
    corpus: Option<&Path>,
    nmutants: usize,
    seed: u64,
    check: bool,
) -> Result<usize, String> {
    let err = |e: std::io::Error| format!("{}: {e}", outdir.display());
    std::fs::create_dir_all(outdir).map_err(err)?;
    let (base, vols) = base_pool();
    let mut manifest =
        String::from("# name\texpect\textent_sectors\tdata_extents\tvolumes\tcheck\tdescription\n");
    let mut problems = Vec::new();
    let mut written: Result<usize, std::io::Error> = Ok(0);
    // Each image is checked, written and dropped (a few MiB each).
    let mut sink = |img: Image| {
        let (got, geo, found) = outcome(&img, check);
        if let Some(meant) = img.meant {
            if meant != got {
                problems.push(format!(
                    "{}: meant {}, the pool core does {}",
                    img.name,
                    meant.name(),
                    got.name()
                ));
            }
        }
        if img.detect && found == "clean" {
            problems.push(format!("{}: the checker finds nothing", img.name));
        }
        let (es, de) = geo.unwrap_or((EXTENT, DATA));
        let vcol = if img.meant.is_some() {
            volumes_col(&vols)
        } else {
            volumes_col(&volumes_of(&img))
        };
        let _ = writeln!(
            manifest,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            img.name,
            got.name(),
            es / 512,
            de,
            if vcol.is_empty() { "-" } else { &vcol },
            found,
            img.desc
        );
        if let Ok(n) = written.as_mut() {
            match write_image(&outdir.join(format!("{}.img", img.name)), &img) {
                Ok(()) => *n += 1,
                Err(e) => written = Err(e),
            }
        }
    };
    sink(Image {
        name: "base".into(),
        blocks: base.clone(),
        len: META * BS as u64,
        meant: Some(Expect::Open),
        detect: false,
        desc: "the intact pool every other image is made from".into(),
    });
    crafted(&base, &mut sink);
    if let Some(dir) = corpus {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if let Some(img) = decode_fuzz(&name, &data) {
                sink(img);
            }
        }
        // The fuzz seeds are built by the pool core, not kept in the
        // corpus directory.
        let seeds = snapguard_pool::host::fuzz_seeds()
            .map_err(|e| format!("building the fuzz seeds: {e:?}"))?;
        for (name, data) in seeds {
            if let Some(img) = decode_fuzz(name, &data) {
                sink(img);
            }
        }
    }
    mutants(&base, nmutants, seed, &mut sink);
    let count = written.map_err(err)?;
    if !problems.is_empty() {
        return Err(format!(
            "generator and pool core disagree:\n{}",
            problems.join("\n")
        ));
    }
    std::fs::write(outdir.join("manifest.tsv"), manifest).map_err(err)?;
    let (live, map) = live_pool();
    let live_img = Image {
        name: "live".into(),
        len: (live.len() * BS) as u64,
        blocks: live,
        meant: None,
        detect: false,
        desc: String::new(),
    };
    write_image(&outdir.join("live.img"), &live_img).map_err(err)?;
    let mut f = std::fs::File::create(outdir.join("live-map.tsv")).map_err(err)?;
    for (v, p, leaf) in &map {
        writeln!(f, "{v}\t{p}\t{leaf}").map_err(err)?;
    }
    Ok(count)
}
