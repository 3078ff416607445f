//! Block layout: the common 24-byte header and little-endian field access.
//!
//! Every metadata block starts with
//! `csum: u32 | tag: u16 | level: u8 | pad: u8 | blocknr: u64 | gen: u64`;
//! the checksum is CRC-32C over bytes 4..4096.

use super::crc::crc32c;
use super::{Error, BLOCK_SIZE};

/// Size of the common block header.
pub(crate) const HDR: usize = 24;
/// Bytes after the header.
pub(crate) const PAYLOAD: usize = BLOCK_SIZE - HDR;

/// Superblock.
pub(crate) const TAG_SB: u16 = 0x5342;
/// Metadata space map block.
pub(crate) const TAG_MSM: u16 = 0x4D53;
/// Data space map block.
pub(crate) const TAG_DSM: u16 = 0x4453;
/// Volume table leaf.
pub(crate) const TAG_VLEAF: u16 = 0x564C;
/// Volume table internal node.
pub(crate) const TAG_VINT: u16 = 0x5649;
/// Volume directory leaf.
pub(crate) const TAG_DLEAF: u16 = 0x444C;
/// Volume directory internal node.
pub(crate) const TAG_DINT: u16 = 0x4449;
/// Space map index block (selector and initialised bits of space map blocks).
pub(crate) const TAG_SIDX: u16 = 0x5349;

pub(crate) fn rd_u64(b: &[u8], off: usize) -> Result<u64, Error> {
    let end = off.checked_add(8).ok_or(Error::Corrupt)?;
    let s = b.get(off..end).ok_or(Error::Corrupt)?;
    let a: [u8; 8] = s.try_into().map_err(|_| Error::Corrupt)?;
    Ok(u64::from_le_bytes(a))
}

pub(crate) fn rd_u32(b: &[u8], off: usize) -> Result<u32, Error> {
    let end = off.checked_add(4).ok_or(Error::Corrupt)?;
    let s = b.get(off..end).ok_or(Error::Corrupt)?;
    let a: [u8; 4] = s.try_into().map_err(|_| Error::Corrupt)?;
    Ok(u32::from_le_bytes(a))
}

pub(crate) fn rd_u16(b: &[u8], off: usize) -> Result<u16, Error> {
    let end = off.checked_add(2).ok_or(Error::Corrupt)?;
    let s = b.get(off..end).ok_or(Error::Corrupt)?;
    let a: [u8; 2] = s.try_into().map_err(|_| Error::Corrupt)?;
    Ok(u16::from_le_bytes(a))
}

/// Reads a 48-bit little-endian value.
pub(crate) fn rd_u48(b: &[u8], off: usize) -> Result<u64, Error> {
    let end = off.checked_add(6).ok_or(Error::Corrupt)?;
    let s = b.get(off..end).ok_or(Error::Corrupt)?;
    let mut a = [0u8; 8];
    for (d, v) in a.iter_mut().zip(s) {
        *d = *v;
    }
    Ok(u64::from_le_bytes(a))
}

fn wr_bytes(b: &mut [u8], off: usize, v: &[u8]) -> Result<(), Error> {
    let end = off.checked_add(v.len()).ok_or(Error::Invalid)?;
    let d = b.get_mut(off..end).ok_or(Error::Invalid)?;
    for (x, y) in d.iter_mut().zip(v) {
        *x = *y;
    }
    Ok(())
}

pub(crate) fn wr_u64(b: &mut [u8], off: usize, v: u64) -> Result<(), Error> {
    wr_bytes(b, off, &v.to_le_bytes())
}

pub(crate) fn wr_u32(b: &mut [u8], off: usize, v: u32) -> Result<(), Error> {
    wr_bytes(b, off, &v.to_le_bytes())
}

pub(crate) fn wr_u16(b: &mut [u8], off: usize, v: u16) -> Result<(), Error> {
    wr_bytes(b, off, &v.to_le_bytes())
}

/// Writes a 48-bit little-endian value (`v` must be below 2^48).
pub(crate) fn wr_u48(b: &mut [u8], off: usize, v: u64) -> Result<(), Error> {
    if v >> 48 != 0 {
        return Err(Error::Invalid);
    }
    let a = v.to_le_bytes();
    wr_bytes(b, off, a.get(..6).ok_or(Error::Invalid)?)
}

/// Block header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) tag: u16,
    pub(crate) level: u8,
    pub(crate) blocknr: u64,
    pub(crate) gen: u64,
}

pub(crate) fn header(b: &[u8]) -> Result<Header, Error> {
    Ok(Header {
        tag: rd_u16(b, 4)?,
        level: *b.get(6).ok_or(Error::Corrupt)?,
        blocknr: rd_u64(b, 8)?,
        gen: rd_u64(b, 16)?,
    })
}

/// Writes the header (not the checksum, which is set by [`seal`]).
pub(crate) fn set_header(b: &mut [u8], h: Header) -> Result<(), Error> {
    wr_u16(b, 4, h.tag)?;
    *b.get_mut(6).ok_or(Error::Invalid)? = h.level;
    *b.get_mut(7).ok_or(Error::Invalid)? = 0;
    wr_u64(b, 8, h.blocknr)?;
    wr_u64(b, 16, h.gen)
}

/// Computes and stores the checksum.
pub(crate) fn seal(b: &mut [u8; BLOCK_SIZE]) {
    let c = crc32c(b.get(4..).unwrap_or(&[]));
    let _ = wr_u32(b, 0, c);
}

/// Checks the checksum and the self location of a block read from `nr`.
pub(crate) fn verify(b: &[u8; BLOCK_SIZE], nr: u64) -> Result<Header, Error> {
    let c = crc32c(b.get(4..).unwrap_or(&[]));
    if rd_u32(b, 0)? != c {
        return Err(Error::Corrupt);
    }
    let h = header(b)?;
    if h.blocknr != nr {
        return Err(Error::Corrupt);
    }
    Ok(h)
}
