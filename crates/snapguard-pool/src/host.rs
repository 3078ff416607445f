//! Host-side helpers (not part of the kernel build): metadata devices in
//! memory or in a file, and cache arenas.

use crate::{CacheSlot, CheckReport, Error, MetaDevice, Pool, BLOCK_SIZE};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::vec::Vec;

/// A full check of `pool` ([`Pool::check`]) with a scratch buffer of the
/// size it asks for.
pub fn check<D: MetaDevice>(pool: &mut Pool<'_, D>) -> Result<CheckReport, Error> {
    let mut scratch = std::vec![0u32; pool.check_scratch_len() as usize];
    pool.check(&mut scratch)
}

/// A cache arena of `n` empty slots.
pub fn slots(n: usize) -> Vec<CacheSlot> {
    (0..n).map(|_| CacheSlot::new()).collect()
}

/// Metadata device in memory, with fault injection: I/O number
/// [`MemDevice::fail_at`] (reads, writes and flushes are numbered together
/// from 0 in [`MemDevice::ios`]) fails with [`Error::Io`], once.
#[derive(Clone, Debug)]
pub struct MemDevice {
    /// The blocks.
    pub blocks: Vec<[u8; BLOCK_SIZE]>,
    /// Writes done.
    pub writes: u64,
    /// Flushes done.
    pub flushes: u64,
    /// I/Os attempted (reads, writes, flushes).
    pub ios: u64,
    /// Number of the I/O to fail.
    pub fail_at: Option<u64>,
    /// The injected fault happened.
    pub fired: bool,
}

impl MemDevice {
    /// A zeroed device of `n` blocks.
    pub fn new(n: u64) -> Self {
        Self::from_blocks(std::vec![[0u8; BLOCK_SIZE]; n as usize])
    }

    /// A device holding `blocks`.
    pub fn from_blocks(blocks: Vec<[u8; BLOCK_SIZE]>) -> Self {
        MemDevice {
            blocks,
            writes: 0,
            flushes: 0,
            ios: 0,
            fail_at: None,
            fired: false,
        }
    }

    /// Counts an I/O; fails the one chosen by [`MemDevice::fail_at`].
    fn io(&mut self) -> Result<(), Error> {
        let n = self.ios;
        self.ios += 1;
        if self.fail_at == Some(n) {
            self.fired = true;
            return Err(Error::Io);
        }
        Ok(())
    }

    /// A device holding `image` (a multiple of the block size; a partial
    /// last block is zero padded).
    pub fn from_image(image: &[u8]) -> Self {
        let n = image.len().div_ceil(BLOCK_SIZE);
        let mut d = MemDevice::new(n as u64);
        for (b, chunk) in d.blocks.iter_mut().zip(image.chunks(BLOCK_SIZE)) {
            b[..chunk.len()].copy_from_slice(chunk);
        }
        d
    }

    /// The device as one byte image.
    pub fn image(&self) -> Vec<u8> {
        self.blocks.iter().flat_map(|b| b.iter().copied()).collect()
    }
}

impl MetaDevice for MemDevice {
    fn read_block(&mut self, nr: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Error> {
        self.io()?;
        let b = self.blocks.get(nr as usize).ok_or(Error::Io)?;
        buf.copy_from_slice(b);
        Ok(())
    }
    fn write_block(&mut self, nr: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Error> {
        self.io()?;
        let b = self.blocks.get_mut(nr as usize).ok_or(Error::Io)?;
        b.copy_from_slice(buf);
        self.writes += 1;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.io()?;
        self.flushes += 1;
        Ok(())
    }
    fn nr_blocks(&self) -> u64 {
        self.blocks.len() as u64
    }
}

/// Sparse metadata device in memory: blocks never written read as zeros
/// and take no memory (for huge geometries in tests and benchmarks).
#[derive(Clone, Debug, Default)]
pub struct SparseDevice {
    /// The written blocks.
    pub blocks: std::collections::HashMap<u64, std::boxed::Box<[u8; BLOCK_SIZE]>>,
    /// Size in blocks.
    pub nr: u64,
    /// Writes done.
    pub writes: u64,
}

impl SparseDevice {
    /// A zeroed device of `n` blocks.
    pub fn new(n: u64) -> Self {
        SparseDevice {
            nr: n,
            ..Self::default()
        }
    }
}

impl MetaDevice for SparseDevice {
    fn read_block(&mut self, nr: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Error> {
        if nr >= self.nr {
            return Err(Error::Io);
        }
        match self.blocks.get(&nr) {
            Some(b) => buf.copy_from_slice(&b[..]),
            None => buf.fill(0),
        }
        Ok(())
    }
    fn write_block(&mut self, nr: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Error> {
        if nr >= self.nr {
            return Err(Error::Io);
        }
        self.blocks.insert(nr, std::boxed::Box::new(*buf));
        self.writes += 1;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
    fn nr_blocks(&self) -> u64 {
        self.nr
    }
}

/// Metadata device in a file or block device (`fdatasync` on flush).
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    blocks: u64,
}

impl FileDevice {
    /// Uses `file`, whose size is `bytes` (rounded down to whole blocks).
    pub fn new(file: File, bytes: u64) -> Self {
        FileDevice {
            file,
            blocks: bytes / BLOCK_SIZE as u64,
        }
    }
}

impl MetaDevice for FileDevice {
    fn read_block(&mut self, nr: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Error> {
        if nr >= self.blocks {
            return Err(Error::Io);
        }
        self.file
            .read_exact_at(buf, nr * BLOCK_SIZE as u64)
            .map_err(|_| Error::Io)
    }
    fn write_block(&mut self, nr: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Error> {
        if nr >= self.blocks {
            return Err(Error::Io);
        }
        self.file
            .write_all_at(buf, nr * BLOCK_SIZE as u64)
            .map_err(|_| Error::Io)
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.file.sync_data().map_err(|_| Error::Io)
    }
    fn nr_blocks(&self) -> u64 {
        self.blocks
    }
}

/// Encodes a device as a [`fuzz_one`] input: flags, size, the image
/// without its trailing zero blocks.
pub fn fuzz_encode(flags: u8, dev: &MemDevice) -> Vec<u8> {
    let mut n = dev.blocks.len().min(FUZZ_MAX_BLOCKS);
    while n > 0 && dev.blocks[n - 1].iter().all(|&b| b == 0) {
        n -= 1;
    }
    let size = u8::try_from(dev.blocks.len()).unwrap_or(u8::MAX);
    let mut out = std::vec![flags, size];
    for b in &dev.blocks[..n] {
        out.extend_from_slice(b);
    }
    out
}

/// The fuzz seed inputs, built by the pool core itself (so that they
/// follow the format): an empty pool, a populated one (volumes, a
/// snapshot, a broken share, a range copy), the populated pool grown
/// beyond its data capacity (one growth extension) and an uncommitted
/// transaction's blocks on disk (as after a crash). The corpus test
/// replays them, `snapguard pool craft` decodes them into images for the
/// kernel, and `tools/fuzz.sh` writes them into the fuzzer's working
/// corpus (`tests/corpus.rs`, `SNAPGUARD_SEED_DIR`); they are not kept in
/// git.
pub fn fuzz_seeds() -> Result<Vec<(&'static str, Vec<u8>)>, Error> {
    let mut s = slots(32);
    let mut p = crate::FormatParams::new(1000);
    p.max_volumes = 200;
    p.extent_size = 4096;
    let mut pool = Pool::format(MemDevice::new(48), &mut s, p)?;
    let empty = fuzz_encode(0, pool.device());
    pool.create_volume(1, 1500)?;
    for v in 0..700 {
        pool.provision(1, v)?;
    }
    pool.create_volume(150, 20)?;
    pool.commit()?;
    pool.snapshot(1, 2)?;
    pool.break_sharing(2, 3)?;
    pool.copy_range(1, 10, 150, 0, 20)?;
    pool.commit()?;
    let populated = fuzz_encode(2, pool.device());
    let mut s2 = slots(32);
    let mut pool2 = Pool::open(
        MemDevice::from_blocks(pool.device().blocks.clone()),
        &mut s2,
    )?;
    pool2.grow(5000, 48)?;
    pool2.commit()?;
    let grown = fuzz_encode(2, pool2.device());
    pool.discard(1, 0, 300)?;
    pool.provision(1, 1000)?;
    let (dev, _) = pool.into_parts();
    let crashed = fuzz_encode(3, &dev);
    Ok(std::vec![
        ("seed-empty", empty),
        ("seed-populated", populated),
        ("seed-uncommitted", crashed),
        ("seed-grown", grown),
    ])
}

/// Largest device the fuzz harness builds (blocks).
pub const FUZZ_MAX_BLOCKS: usize = 256;

/// Fuzz harness shared by `fuzz/pool` and the corpus regression test.
///
/// Input: byte 0 = flags (bit 0: recompute every block's checksum so that
/// mutations get past it; bit 1: also run mutating operations and commit),
/// byte 1 = device size in blocks (the image is zero padded up to it), then
/// the image. Opens, checks, walks every volume and mapping and, with bit 1,
/// changes and commits the pool and checks again. Must never panic nor
/// loop; returns the first check report, if the pool opened.
pub fn fuzz_one(data: &[u8]) -> Option<crate::CheckReport> {
    use crate::{Pool, MIN_CACHE_SLOTS};
    let (&flags, rest) = data.split_first()?;
    let (&size, img) = rest.split_first()?;
    let img = &img[..img.len().min(FUZZ_MAX_BLOCKS * BLOCK_SIZE)];
    let mut dev = MemDevice::from_image(img);
    let want = (size as usize).min(FUZZ_MAX_BLOCKS);
    if dev.blocks.len() < want {
        dev.blocks.resize(want, [0; BLOCK_SIZE]);
    }
    if flags & 1 != 0 {
        for b in dev.blocks.iter_mut() {
            let c = crate::crc32c(&b[4..]);
            b[..4].copy_from_slice(&c.to_le_bytes());
        }
    }
    let mut arena = slots(MIN_CACHE_SLOTS + (flags as usize >> 4));
    let mut pool = Pool::open(dev, &mut arena).ok()?;
    let st = pool.stats();
    let mut scratch = std::vec![0u32; (st.meta_blocks + 1 + st.data_extents.min(4096)) as usize];
    let report = pool.check(&mut scratch).ok();
    let mut ids = Vec::new();
    let mut from = 0u32;
    while let Ok(Some(v)) = pool.next_volume(from) {
        ids.push(v.id);
        let mut pos = 0u64;
        for _ in 0..64 {
            match pool.next_mapping(v.id, pos) {
                Ok(Some((k, _))) => {
                    let _ = pool.lookup(v.id, k);
                    let _ = pool.lookup_cached(v.id, k);
                    pos = k.saturating_add(1);
                }
                _ => break,
            }
        }
        let _ = pool.bg_progress(v.id);
        if ids.len() >= 64 {
            break;
        }
        match v.id.checked_add(1) {
            Some(n) => from = n,
            None => break,
        }
    }
    if flags & 2 != 0 {
        let id = ids.first().copied().unwrap_or(0);
        let _ = pool.create_volume(id, 1000);
        let _ = pool.provision(id, 5);
        let _ = pool.snapshot(id, id ^ 1);
        let _ = pool.break_sharing(id, 5);
        let _ = pool.copy_range(id, 0, id ^ 1, 100, 50);
        let _ = pool.discard(id, 0, 3);
        if let Ok(Some(item)) = pool.bg_next(id) {
            let _ = pool.bg_advance(&item);
        }
        let _ = pool.bg_reset(id);
        let _ = pool.delete_volume_step(id ^ 1, 1);
        if let Some(&other) = ids.get(1) {
            let _ = pool.delete_volume_step(other, 1);
        }
        let _ = pool.delete_volume(id ^ 1);
        if let Ok(plan) = pool.prepare_break(id ^ 1, 5) {
            let _ = pool.commit();
            let _ = pool.complete_break(&plan);
        }
        let _ = pool.resize_volume(id, 700);
        let _ = pool.resize_volume(id, 1 << 20);
        let st = pool.stats();
        let _ = pool.grow(st.data_capacity, st.meta_capacity.min(st.meta_blocks + 4));
        let _ = pool.commit();
        let _ = pool.check(&mut scratch);
        let (dev, arena) = pool.into_parts();
        if let Ok(mut pool) = Pool::open(dev, arena) {
            let _ = pool.check(&mut scratch);
        }
    }
    report
}
