//! CRC-32C (Castagnoli), slicing-by-8 with `const` tables, no allocation.

const POLY: u32 = 0x82F6_3B78;

// Evaluated at compile time only (a fault would fail the build).
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0usize;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1usize;
    while s < 8 {
        let mut i = 0usize;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

#[inline(always)]
fn t(k: usize, v: u32) -> u32 {
    TABLES
        .get(k)
        .and_then(|r| r.get((v & 0xFF) as usize))
        .copied()
        .unwrap_or(0)
}

/// CRC-32C of `data` (initial value `!0`, final inversion), as used by
/// iSCSI, ext4 and btrfs: `crc32c(b"123456789") == 0xE306_9283`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c: u32 = !0;
    let mut chunks = data.chunks_exact(8);
    for ch in &mut chunks {
        let a: [u8; 8] = ch.try_into().unwrap_or([0; 8]);
        let lo = u32::from_le_bytes([a[0], a[1], a[2], a[3]]) ^ c;
        let hi = u32::from_le_bytes([a[4], a[5], a[6], a[7]]);
        c = t(7, lo)
            ^ t(6, lo >> 8)
            ^ t(5, lo >> 16)
            ^ t(4, lo >> 24)
            ^ t(3, hi)
            ^ t(2, hi >> 8)
            ^ t(1, hi >> 16)
            ^ t(0, hi >> 24);
    }
    for &b in chunks.remainder() {
        c = t(0, c ^ u32::from(b)) ^ (c >> 8);
    }
    !c
}
