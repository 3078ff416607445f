// SPDX-License-Identifier: GPL-2.0

//! The `snapguard-pool` target.

use super::{refuse, NOT_IMPLEMENTED};
use crate::dmtarget::{parse_pool_table, PoolConfig, POOL_TARGET};
use crate::kbind::dm::{self, Bio, Ctr, CtrError, Dev, Devices, Emit, MapResult, StatusType, Target};
use core::fmt::Write;
use kernel::prelude::*;

/// A pool: metadata and data device and its configuration.
pub(crate) struct PoolTarget {
    metadata: Dev,
    data: Dev,
    config: PoolConfig,
}

impl PoolTarget {
    /// Opens the pool metadata, formatting an all-zero metadata device.
    /// Not implemented yet.
    fn open_metadata(&mut self) -> Result<(), CtrError> {
        pr_err!(
            "{}: valid table (extent {} sectors), but the pool is not implemented yet\n",
            POOL_TARGET,
            self.config.extent_sectors
        );
        Err(NOT_IMPLEMENTED)
    }
}

impl Target for PoolTarget {
    const NAME: &'static CStr = c"snapguard-pool";
    const VERSION: [u32; 3] = [0, 1, 0];
    const FEATURES: u32 = dm::features::SINGLETON | dm::features::ALWAYS_WRITEABLE | dm::features::IMMUTABLE;

    fn ctr(ctr: &mut Ctr<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
        let table = parse_pool_table(ctr.args()).map_err(|e| refuse(POOL_TARGET, ctr.args(), e))?;
        let config = table.config;
        if ctr.len() < config.extent_sectors {
            pr_err!(
                "{}: target length {} sectors is below one extent ({} sectors)\n",
                POOL_TARGET,
                ctr.len(),
                config.extent_sectors
            );
            return Err(CtrError::inval(c"Pool length below one extent"));
        }
        let write_meta = !config.features.read_only;
        let metadata = ctr.get_device(0, write_meta, c"Error opening metadata device")?;
        let data = ctr.get_device(1, true, c"Error opening data device")?;
        if metadata.devt() == data.devt() {
            return Err(CtrError::inval(c"Metadata and data devices must differ"));
        }
        ctr.set_num_flush_bios(1);
        let mut pool = PoolTarget { metadata, data, config };
        pool.open_metadata()?;
        KBox::pin(pool, GFP_KERNEL).map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate memory" })
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
            StatusType::Table => self
                .config
                .write_table(out, devs.name(self.metadata), devs.name(self.data)),
            // No metadata is open yet: report failure.
            StatusType::Info => out.write_str("Fail"),
            StatusType::Ima => Ok(()),
        };
    }
}
