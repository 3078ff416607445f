// SPDX-License-Identifier: GPL-2.0

//! The `snapguard-pool` target.
//!
//! The constructor validates the table, opens both devices and then the
//! pool metadata: an all-zero metadata device (both superblock blocks
//! zero) is formatted with the table's extent size, a valid pool is
//! opened, anything else is refused without writing. Status reports the
//! pool's figures. Messages `create`, `delete` and `snapshot` change the
//! metadata and commit; `set_transaction_id` is not implemented yet.

use super::{not_implemented, refuse, DeviceClaim};
use crate::dmtarget::{
    parse_message, parse_pool_table, Message, NoSpacePolicy, PoolConfig, PoolMode, PoolStatus, POOL_TARGET,
};
use crate::kbind::dm::{self, Bio, BlockIo, Ctr, CtrError, Dev, Devices, Emit, IoBuf, MapResult, StatusType, Target};
use crate::kbind::text::Text;
use crate::pool::{self, CacheSlot, FormatParams, MetaDevice, Pool, BLOCK_SIZE};
use core::fmt::Write;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::Mutex;

/// Sectors per metadata block.
const BLOCK_SECTORS: u64 = (BLOCK_SIZE / 512) as u64;
/// Metadata cache when the table gives no `cache_mib:` (MiB).
const DEFAULT_CACHE_MIB: u32 = 4;

/// The metadata device as the pool core sees it: 4 KiB blocks, read and
/// written synchronously through a `kmalloc` bounce buffer (the pool's
/// cache arena is `vmalloc` memory, which block I/O cannot map).
struct MetaDev {
    io: BlockIo,
    buf: IoBuf,
    blocks: u64,
}

impl MetaDevice for MetaDev {
    fn read_block(&mut self, nr: u64, out: &mut [u8; BLOCK_SIZE]) -> Result<(), pool::Error> {
        let sector = self.sector(nr)?;
        self.io.read(sector, &mut self.buf).map_err(|_| pool::Error::Io)?;
        out.copy_from_slice(self.buf.as_slice().get(..BLOCK_SIZE).ok_or(pool::Error::Io)?);
        Ok(())
    }

    fn write_block(&mut self, nr: u64, data: &[u8; BLOCK_SIZE]) -> Result<(), pool::Error> {
        let sector = self.sector(nr)?;
        self.buf.as_mut_slice().get_mut(..BLOCK_SIZE).ok_or(pool::Error::Io)?.copy_from_slice(data);
        self.io.write(sector, &mut self.buf).map_err(|_| pool::Error::Io)
    }

    fn flush(&mut self) -> Result<(), pool::Error> {
        self.io.flush().map_err(|_| pool::Error::Io)
    }

    fn nr_blocks(&self) -> u64 {
        self.blocks
    }
}

impl MetaDev {
    fn sector(&self, nr: u64) -> Result<u64, pool::Error> {
        if nr >= self.blocks {
            return Err(pool::Error::Invalid);
        }
        nr.checked_mul(BLOCK_SECTORS).ok_or(pool::Error::Invalid)
    }

    /// Whether both superblock blocks are zero (a fresh metadata device).
    fn superblocks_zero(&mut self) -> Result<bool, pool::Error> {
        for nr in [0, 1] {
            let sector = self.sector(nr)?;
            self.io.read(sector, &mut self.buf).map_err(|_| pool::Error::Io)?;
            if self.buf.as_slice().iter().any(|&b| b != 0) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The open pool and the cache arena it borrows.
///
/// # Invariants
///
/// `pool` borrows the whole of `slots`' buffer (through a `'static` slice
/// made from its pointer); `slots` is never used otherwise, and it is
/// dropped after `pool` (declaration order).
struct Metadata {
    pool: Pool<'static, MetaDev>,
    _slots: VVec<CacheSlot>,
}

impl Metadata {
    /// Opens the pool on `dev`, or formats it if both superblocks are zero.
    fn open(mut dev: MetaDev, config: &PoolConfig, data_extents: u64) -> Result<Self, CtrError> {
        let mib = config.features.cache_mib.unwrap_or(DEFAULT_CACHE_MIB);
        let n = (usize::try_from(mib).unwrap_or(usize::MAX) << 20) / core::mem::size_of::<CacheSlot>();
        let n = n.max(pool::MIN_CACHE_SLOTS);
        let mut slots = VVec::<CacheSlot>::with_capacity(n, GFP_KERNEL | __GFP_ZERO)
            .map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate the metadata cache" })?;
        // SAFETY: the capacity is `n` zeroed slots, and the all-zero bit
        // pattern is a valid empty `CacheSlot` (documented by the pool core).
        unsafe { slots.inc_len(n) };
        // SAFETY: the buffer lives as long as `slots`, which outlives the
        // pool (type invariant) and is not touched otherwise.
        let arena: &'static mut [CacheSlot] = unsafe { core::slice::from_raw_parts_mut(slots.as_mut_ptr(), n) };

        if dev.blocks < 2 {
            pr_err!("{}: the metadata device has {} blocks of 4 KiB\n", POOL_TARGET, dev.blocks);
            return Err(CtrError::inval(c"Metadata device too small"));
        }
        let zero = dev.superblocks_zero().map_err(|_| CtrError { err: EIO, msg: c"Error reading metadata" })?;
        let pool = if zero {
            if config.features.read_only {
                return Err(CtrError::inval(c"Cannot format a read-only pool"));
            }
            let mut p = FormatParams::new(data_extents);
            p.extent_size = config.extent_bytes();
            let pool = Pool::format(dev, arena, p).map_err(|e| {
                pr_err!("{}: cannot format the metadata device: {:?}\n", POOL_TARGET, e);
                CtrError { err: Error::from_errno(-e.to_errno()), msg: c"Cannot format the metadata device" }
            })?;
            pr_info!(
                "{}: formatted a new pool: {} extents of {} sectors\n",
                POOL_TARGET,
                data_extents,
                config.extent_sectors
            );
            pool
        } else {
            Pool::open(dev, arena).map_err(|e| {
                pr_err!(
                    "{}: the metadata device is neither zeroed nor a valid pool ({:?}); nothing was written\n",
                    POOL_TARGET,
                    e
                );
                CtrError { err: Error::from_errno(-e.to_errno()), msg: c"Metadata device is neither zeroed nor a pool" }
            })?
        };
        let st = pool.stats();
        if st.extent_size != config.extent_bytes() {
            pr_err!(
                "{}: the pool's extent size is {} sectors, the table says {}\n",
                POOL_TARGET,
                st.extent_size >> 9,
                config.extent_sectors
            );
            return Err(CtrError::inval(c"Extent size differs from the pool's"));
        }
        if data_extents != st.data_extents {
            pr_err!(
                "{}: the table has {} data extents, the pool {} (resizing is not implemented yet)\n",
                POOL_TARGET,
                data_extents,
                st.data_extents
            );
            return Err(CtrError::inval(c"Pool length differs from the pool's data size"));
        }
        Ok(Metadata { pool, _slots: slots })
    }
}

/// A pool: metadata and data device, configuration and open metadata.
#[pin_data]
pub(crate) struct PoolTarget {
    metadata_dev: Dev,
    data: Dev,
    config: PoolConfig,
    /// The open pool; status and messages take the lock (they may sleep).
    #[pin]
    meta: Mutex<Metadata>,
    /// Released last, once the metadata is closed.
    claim: DeviceClaim,
}

impl PoolTarget {
    /// Runs a valid message: changes the metadata and commits.
    fn run(&self, m: &Message) -> Result<(), pool::Error> {
        let mut meta = self.meta.lock();
        let pool = &mut meta.pool;
        // Volumes are as large as the data device (no over-provisioning).
        let size = pool.stats().data_extents;
        match *m {
            Message::Create { id } => pool.create_volume(id, size)?,
            Message::Delete { id } => pool.delete_volume(id)?,
            Message::Snapshot { origin, new } => pool.snapshot(origin, new)?,
            Message::SetTransactionId { .. } => return Err(pool::Error::Invalid),
        }
        pool.commit()
    }
}

impl Target for PoolTarget {
    const NAME: &'static CStr = c"snapguard-pool";
    const VERSION: [u32; 3] = [0, 1, 0];
    const FEATURES: u32 = dm::features::SINGLETON | dm::features::ALWAYS_WRITEABLE | dm::features::IMMUTABLE;

    fn ctr(ctr: &mut Ctr<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
        let table = parse_pool_table(ctr.args()).map_err(|e| refuse(POOL_TARGET, ctr.args(), e))?;
        let config = table.config;
        let len = ctr.len();
        if len < config.extent_sectors {
            pr_err!(
                "{}: target length {} sectors is below one extent ({} sectors)\n",
                POOL_TARGET,
                len,
                config.extent_sectors
            );
            return Err(CtrError::inval(c"Pool length below one extent"));
        }
        let write_meta = !config.features.read_only;
        let metadata_dev = ctr.get_device(0, write_meta, c"Error opening metadata device")?;
        let data = ctr.get_device(1, true, c"Error opening data device")?;
        if metadata_dev.devt() == data.devt() {
            return Err(CtrError::inval(c"Metadata and data devices must differ"));
        }
        let claim = DeviceClaim::take([metadata_dev.devt(), data.devt()])?;
        let data_io = ctr.block_io(data).ok_or(CtrError::inval(c"Error opening data device"))?;
        if data_io.nr_sectors() < len {
            pr_err!(
                "{}: the data device has {} sectors, the target {}\n",
                POOL_TARGET,
                data_io.nr_sectors(),
                len
            );
            return Err(CtrError::inval(c"Data device smaller than the pool target"));
        }
        let io = ctr.block_io(metadata_dev).ok_or(CtrError::inval(c"Error opening metadata device"))?;
        let blocks = io.nr_sectors() / BLOCK_SECTORS;
        let buf = IoBuf::new(BLOCK_SIZE).map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate memory" })?;
        let data_extents = len >> config.extent_shift();
        let meta = Metadata::open(MetaDev { io, buf, blocks }, &config, data_extents)?;
        ctr.set_num_flush_bios(1);
        let init = pin_init!(PoolTarget { metadata_dev, data, config, meta <- new_mutex!(meta), claim });
        KBox::pin_init(init, GFP_KERNEL).map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate memory" })
    }

    fn map(&self, devs: &Devices, bio: &mut Bio<'_>) -> MapResult {
        // I/O to the pool device itself goes to the data device, as with
        // dm-thin's pool.
        let sector = bio.target_sector();
        match bio.remap(devs, self.data, sector) {
            Ok(()) => MapResult::Remapped,
            Err(_) => MapResult::Kill,
        }
    }

    fn status(&self, devs: &Devices, kind: StatusType, out: &mut Emit<'_>) {
        let _ = match kind {
            StatusType::Table => {
                self.config
                    .write_table(out, devs.name(self.metadata_dev), devs.name(self.data))
            }
            StatusType::Info => {
                let st = self.meta.lock().pool.stats();
                let f = &self.config.features;
                PoolStatus {
                    // Not stored by the pool core yet (set_transaction_id
                    // is not implemented).
                    transaction_id: 0,
                    meta_used: st.meta_blocks.saturating_sub(st.meta_free),
                    meta_total: st.meta_blocks,
                    data_used: st.data_extents.saturating_sub(st.data_free),
                    data_total: st.data_extents,
                    mode: if f.read_only { PoolMode::ReadOnly } else { PoolMode::ReadWrite },
                    discard: f.discard,
                    no_space: if f.error_if_no_space { NoSpacePolicy::Error } else { NoSpacePolicy::Queue },
                    needs_check: false,
                }
                .write(out)
            }
            StatusType::Ima => Ok(()),
        };
    }

    fn message(&self, args: &[&[u8]], _out: &mut Emit<'_>) -> Result {
        let mut t = Text::<256>::new();
        let m = match parse_message(args) {
            Ok(m) => m,
            Err(e) => {
                let _ = write!(t, "{}", e);
                pr_warn!("{}: message refused: {}\n", POOL_TARGET, t.as_str());
                return Err(EINVAL);
            }
        };
        let _ = write!(t, "{}", m);
        if let Message::SetTransactionId { .. } = m {
            pr_warn!("{}: message '{}' is valid but not implemented yet\n", POOL_TARGET, t.as_str());
            return Err(not_implemented().err);
        }
        if self.config.features.read_only {
            pr_warn!("{}: message '{}' refused: the pool is read-only\n", POOL_TARGET, t.as_str());
            return Err(EROFS);
        }
        self.run(&m).map_err(|e| {
            let mut why = Text::<64>::new();
            let _ = write!(why, "{}", e);
            pr_warn!("{}: message '{}' failed: {}\n", POOL_TARGET, t.as_str(), why.as_str());
            Error::from_errno(-e.to_errno())
        })
    }
}
