// SPDX-License-Identifier: GPL-2.0

//! The `snapguard` (volume) target.

use super::{not_implemented, refuse};
use crate::dmtarget::{parse_volume_table, write_volume_table, VolumeStatus, VOLUME_TARGET};
use crate::kbind::dm::{Bio, Ctr, CtrError, Dev, Devices, Emit, MapResult, StatusType, Target};
use kernel::prelude::*;

/// A volume of a pool.
pub(crate) struct VolumeTarget {
    pool: Dev,
    id: u32,
}

impl VolumeTarget {
    /// Binds to the pool's in-core state. Not implemented yet.
    fn bind_pool(&mut self) -> Result<(), CtrError> {
        pr_err!(
            "{}: valid table (volume {}), but volumes are not implemented yet\n",
            VOLUME_TARGET,
            self.id
        );
        Err(not_implemented())
    }
}

impl Target for VolumeTarget {
    const NAME: &'static CStr = c"snapguard";
    const VERSION: [u32; 3] = [0, 1, 0];
    const FEATURES: u32 = 0;

    fn ctr(ctr: &mut Ctr<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
        let table = parse_volume_table(ctr.args()).map_err(|e| refuse(VOLUME_TARGET, ctr.args(), e))?;
        let id = table.volume_id;
        let write = ctr.table_writable();
        let pool = ctr.get_device(0, write, c"Error opening pool device")?;
        let mut v = VolumeTarget { pool, id };
        v.bind_pool()?;
        KBox::pin(v, GFP_KERNEL).map_err(|_| CtrError { err: ENOMEM, msg: c"Cannot allocate memory" })
    }

    fn map(&self, _devs: &Devices, _bio: &mut Bio<'_>) -> MapResult {
        // Never reached: the constructor does not succeed yet.
        MapResult::Kill
    }

    fn status(&self, devs: &Devices, kind: StatusType, out: &mut Emit<'_>) {
        let _ = match kind {
            StatusType::Table => write_volume_table(out, devs.name(self.pool), self.id),
            StatusType::Info => VolumeStatus::Fail.write(out),
            StatusType::Ima => Ok(()),
        };
    }
}
