//! Table lines, messages and status lines of the snapguard device-mapper
//! targets `snapguard-pool` and `snapguard`, in `no_std` Rust without
//! `alloc` (see `Documentation/snapshot-target.rst`).
//!
//! The kernel hands a target's constructor and message callbacks an
//! `argc`/`argv` array of NUL-terminated words (device-mapper has already
//! split the line at white space); this module takes the same words as
//! `&[&[u8]]`, validates them completely and returns a typed configuration
//! or a precise [`TableError`] / [`MessageError`]. It never touches a
//! device: opening devices and reading metadata is the kernel glue's job,
//! after parsing succeeded.
//!
//! The other direction, status and table lines, is formatted into any
//! [`core::fmt::Write`] (the kernel's `DMEMIT` buffer, a `String` on the
//! host). A table line printed by [`PoolTable::write_table`] or
//! [`VolumeTable::write_table`] parses back to the same configuration, so
//! `dmsetup table` output can be fed to `dmsetup load` unchanged.

// No panics on any input: no overflowing arithmetic, no slice indexing.
#![deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

mod error;
mod message;
mod num;
mod status;
mod table;

pub use error::{Field, MessageError, NumError, TableError};
pub use message::{parse_message, Message};
pub use num::parse_u64;
pub use status::{
    DiscardState, NoSpacePolicy, PoolMode, PoolStatus, StatusParseError, VolumeStatus,
};
pub use table::{
    parse_pool_table, parse_volume_table, write_volume_table, Discard, Feature, PoolConfig,
    PoolFeatures, PoolTable, VolumeTable,
};

/// Name of the pool target type.
pub const POOL_TARGET: &str = "snapguard-pool";
/// Name of the volume target type.
pub const VOLUME_TARGET: &str = "snapguard";

/// Sector size (bytes): device-mapper counts in 512-byte sectors.
pub const SECTOR_SIZE: u64 = 512;
/// Smallest extent size in sectors (4 KiB, one page and one metadata block).
pub const MIN_EXTENT_SECTORS: u64 = 8;
/// Largest extent size in sectors (1 GiB).
pub const MAX_EXTENT_SECTORS: u64 = 1 << 21;
/// Volume ids are `0..=MAX_VOLUME_ID` (the pool core stores at most
/// 2^24 volumes; a pool may be formatted for fewer).
pub const MAX_VOLUME_ID: u32 = (1 << 24) - 1;
/// Smallest `cache_mib:` value.
pub const MIN_CACHE_MIB: u32 = 1;
/// Largest `cache_mib:` value (bounds the pool's metadata cache, which
/// the kernel allocates with `vmalloc`).
pub const MAX_CACHE_MIB: u32 = 1024;
/// Most feature arguments a valid pool table can have (six features, of
/// which `ignore_discard` and `no_discard_passdown` exclude each other).
pub const MAX_FEATURE_ARGS: usize = 5;
