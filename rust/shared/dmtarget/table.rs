//! Table lines of `snapguard-pool` and `snapguard`.

use core::fmt;

use super::num::parse_u64;
use super::{Field, NumError, TableError};
use super::{MAX_CACHE_MIB, MAX_EXTENT_SECTORS, MAX_FEATURE_ARGS, MAX_VOLUME_ID};
use super::{MIN_CACHE_MIB, MIN_EXTENT_SECTORS, SECTOR_SIZE};

/// A pool feature argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `skip_block_zeroing`: newly provisioned extents are not zeroed.
    SkipBlockZeroing,
    /// `ignore_discard`: discards are refused.
    IgnoreDiscard,
    /// `no_discard_passdown`: discards unmap extents but are not passed to
    /// the data device.
    NoDiscardPassdown,
    /// `read_only`: no metadata changes.
    ReadOnly,
    /// `error_if_no_space`: fail writes at once when out of data space
    /// instead of queueing them.
    ErrorIfNoSpace,
    /// `cache_mib:<N>`: metadata cache size in MiB.
    CacheMib,
}

impl Feature {
    /// The feature's keyword (`cache_mib` without its `:<N>`).
    pub fn name(&self) -> &'static str {
        match self {
            Feature::SkipBlockZeroing => "skip_block_zeroing",
            Feature::IgnoreDiscard => "ignore_discard",
            Feature::NoDiscardPassdown => "no_discard_passdown",
            Feature::ReadOnly => "read_only",
            Feature::ErrorIfNoSpace => "error_if_no_space",
            Feature::CacheMib => "cache_mib",
        }
    }
}

/// Discard handling of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Discard {
    /// Discards unmap extents and are passed down to the data device.
    #[default]
    Passdown,
    /// `no_discard_passdown`.
    NoPassdown,
    /// `ignore_discard`.
    Ignore,
}

/// The feature arguments of a pool table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolFeatures {
    /// `skip_block_zeroing`.
    pub skip_block_zeroing: bool,
    /// `ignore_discard` / `no_discard_passdown`.
    pub discard: Discard,
    /// `read_only`.
    pub read_only: bool,
    /// `error_if_no_space`.
    pub error_if_no_space: bool,
    /// `cache_mib:<N>`; `None` leaves the size to the target.
    pub cache_mib: Option<u32>,
}

impl PoolFeatures {
    /// Number of feature arguments this set prints as.
    pub fn count(&self) -> usize {
        [
            self.skip_block_zeroing,
            self.discard != Discard::Passdown,
            self.read_only,
            self.error_if_no_space,
            self.cache_mib.is_some(),
        ]
        .into_iter()
        .filter(|&on| on)
        .count()
    }

    /// Writes `<#feature args> <arg>...` (always the count, as dm-thin).
    pub fn write<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        write!(w, "{}", self.count())?;
        if self.skip_block_zeroing {
            w.write_str(" skip_block_zeroing")?;
        }
        match self.discard {
            Discard::Passdown => {}
            Discard::NoPassdown => w.write_str(" no_discard_passdown")?,
            Discard::Ignore => w.write_str(" ignore_discard")?,
        }
        if self.read_only {
            w.write_str(" read_only")?;
        }
        if self.error_if_no_space {
            w.write_str(" error_if_no_space")?;
        }
        if let Some(mib) = self.cache_mib {
            write!(w, " cache_mib:{mib}")?;
        }
        Ok(())
    }
}

/// A pool's configuration: the table line without its devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Extent size in 512-byte sectors: a power of two from
    /// [`MIN_EXTENT_SECTORS`] to [`MAX_EXTENT_SECTORS`].
    pub extent_sectors: u64,
    /// Free data extents at or below which the pool raises a dm event.
    pub low_water_extents: u64,
    /// Feature arguments.
    pub features: PoolFeatures,
}

impl PoolConfig {
    /// Extent size in bytes.
    pub fn extent_bytes(&self) -> u64 {
        // Cannot overflow: at most 2^21 * 2^9.
        self.extent_sectors.saturating_mul(SECTOR_SIZE)
    }

    /// log2 of the extent size in sectors.
    pub fn extent_shift(&self) -> u32 {
        self.extent_sectors.trailing_zeros()
    }

    /// Writes the pool table line (what `dmsetup table` shows after the
    /// target name) with the given device names.
    pub fn write_table<W: fmt::Write + ?Sized>(
        &self,
        w: &mut W,
        metadata_dev: &str,
        data_dev: &str,
    ) -> fmt::Result {
        write!(
            w,
            "{metadata_dev} {data_dev} {} {} ",
            self.extent_sectors, self.low_water_extents
        )?;
        self.features.write(w)
    }
}

/// A parsed `snapguard-pool` table line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolTable<'a> {
    /// `<metadata dev>` as given.
    pub metadata_dev: &'a str,
    /// `<data dev>` as given.
    pub data_dev: &'a str,
    /// The rest.
    pub config: PoolConfig,
}

impl PoolTable<'_> {
    /// Writes the table line back (with the devices as given).
    pub fn write_table<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        self.config.write_table(w, self.metadata_dev, self.data_dev)
    }
}

/// A parsed `snapguard` (volume) table line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeTable<'a> {
    /// `<pool dev>` as given.
    pub pool_dev: &'a str,
    /// `<volume id>`.
    pub volume_id: u32,
}

impl VolumeTable<'_> {
    /// Writes the table line back (with the pool device as given).
    pub fn write_table<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        write_volume_table(w, self.pool_dev, self.volume_id)
    }
}

/// Writes a volume table line with the given pool device name.
pub fn write_volume_table<W: fmt::Write + ?Sized>(
    w: &mut W,
    pool_dev: &str,
    volume_id: u32,
) -> fmt::Result {
    write!(w, "{pool_dev} {volume_id}")
}

/// The word at `i`, or an empty one.
fn word<'a>(argv: &[&'a [u8]], i: usize) -> &'a [u8] {
    argv.get(i).copied().unwrap_or(&[])
}

/// A device argument: non-empty UTF-8 without white space or controls.
fn device<'a>(argv: &[&'a [u8]], arg: usize) -> Result<&'a str, TableError> {
    let w = word(argv, arg);
    if w.is_empty() {
        return Err(TableError::EmptyDevice { arg });
    }
    let s = core::str::from_utf8(w).map_err(|_| TableError::BadDevice { arg })?;
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TableError::BadDevice { arg });
    }
    Ok(s)
}

fn number(argv: &[&[u8]], arg: usize, field: Field) -> Result<u64, TableError> {
    parse_u64(word(argv, arg)).map_err(|err| TableError::Number { arg, field, err })
}

/// The feature named by `w` (ASCII case-insensitive, as dm-thin), with the
/// value of `cache_mib:<N>`.
fn feature(w: &[u8], arg: usize) -> Result<(Feature, u64), TableError> {
    for f in [
        Feature::SkipBlockZeroing,
        Feature::IgnoreDiscard,
        Feature::NoDiscardPassdown,
        Feature::ReadOnly,
        Feature::ErrorIfNoSpace,
    ] {
        if w.eq_ignore_ascii_case(f.name().as_bytes()) {
            return Ok((f, 0));
        }
    }
    let key = Feature::CacheMib.name().as_bytes();
    let (head, tail) = w.split_at(w.len().min(key.len()));
    if head.eq_ignore_ascii_case(key) {
        let value = match tail.split_first() {
            Some((b':', v)) => v,
            None => {
                return Err(TableError::Number {
                    arg,
                    field: Field::CacheMib,
                    err: NumError::Empty,
                })
            }
            Some(_) => return Err(TableError::UnknownFeature { arg }),
        };
        let mib = parse_u64(value).map_err(|err| TableError::Number {
            arg,
            field: Field::CacheMib,
            err,
        })?;
        return Ok((Feature::CacheMib, mib));
    }
    Err(TableError::UnknownFeature { arg })
}

/// Parses the arguments of a `snapguard-pool` table line:
/// `<metadata dev> <data dev> <extent sectors> <low water mark extents>
/// [<#feature args> <arg>...]`.
///
/// Checks run in argument order, so the first bad argument is reported.
pub fn parse_pool_table<'a>(argv: &[&'a [u8]]) -> Result<PoolTable<'a>, TableError> {
    if argv.len() < 4 {
        return Err(TableError::PoolArgCount { got: argv.len() });
    }
    let metadata_dev = device(argv, 0)?;
    let data_dev = device(argv, 1)?;
    if metadata_dev == data_dev {
        return Err(TableError::SameDevice);
    }
    let extent_sectors = number(argv, 2, Field::ExtentSectors)?;
    if extent_sectors < MIN_EXTENT_SECTORS {
        return Err(TableError::ExtentTooSmall {
            sectors: extent_sectors,
        });
    }
    if extent_sectors > MAX_EXTENT_SECTORS {
        return Err(TableError::ExtentTooLarge {
            sectors: extent_sectors,
        });
    }
    if !extent_sectors.is_power_of_two() {
        return Err(TableError::ExtentNotPowerOfTwo {
            sectors: extent_sectors,
        });
    }
    let low_water_extents = number(argv, 3, Field::LowWater)?;
    let mut features = PoolFeatures::default();
    let rest = argv.get(4..).unwrap_or(&[]);
    if let Some((_, args)) = rest.split_first() {
        let declared = number(argv, 4, Field::FeatureCount)?;
        if declared > MAX_FEATURE_ARGS as u64 {
            return Err(TableError::FeatureCountTooLarge { declared });
        }
        if declared != args.len() as u64 {
            return Err(TableError::FeatureCountMismatch {
                declared,
                given: args.len(),
            });
        }
        // At most MAX_FEATURE_ARGS iterations (checked above).
        for (i, w) in args.iter().enumerate() {
            let arg = i.saturating_add(5);
            let (f, value) = feature(w, arg)?;
            add_feature(&mut features, f, value, arg)?;
        }
    }
    Ok(PoolTable {
        metadata_dev,
        data_dev,
        config: PoolConfig {
            extent_sectors,
            low_water_extents,
            features,
        },
    })
}

/// Adds feature `f` (with `value` for `cache_mib`) to `p`, refusing
/// duplicates and conflicts.
fn add_feature(p: &mut PoolFeatures, f: Feature, value: u64, arg: usize) -> Result<(), TableError> {
    let dup = Err(TableError::DuplicateFeature { arg, feature: f });
    match f {
        Feature::SkipBlockZeroing => {
            if p.skip_block_zeroing {
                return dup;
            }
            p.skip_block_zeroing = true;
        }
        Feature::IgnoreDiscard | Feature::NoDiscardPassdown => {
            let (want, other) = if f == Feature::IgnoreDiscard {
                (Discard::Ignore, Feature::NoDiscardPassdown)
            } else {
                (Discard::NoPassdown, Feature::IgnoreDiscard)
            };
            if p.discard == want {
                return dup;
            }
            if p.discard != Discard::Passdown {
                return Err(TableError::ConflictingFeatures {
                    arg,
                    first: other,
                    second: f,
                });
            }
            p.discard = want;
        }
        Feature::ReadOnly => {
            if p.read_only {
                return dup;
            }
            p.read_only = true;
        }
        Feature::ErrorIfNoSpace => {
            if p.error_if_no_space {
                return dup;
            }
            p.error_if_no_space = true;
        }
        Feature::CacheMib => {
            if p.cache_mib.is_some() {
                return dup;
            }
            let mib = u32::try_from(value)
                .ok()
                .filter(|m| (MIN_CACHE_MIB..=MAX_CACHE_MIB).contains(m))
                .ok_or(TableError::CacheMibRange { arg, mib: value })?;
            p.cache_mib = Some(mib);
        }
    }
    Ok(())
}

/// Parses a volume id word (`0..=MAX_VOLUME_ID`).
pub(crate) fn volume_id(w: &[u8]) -> Result<u32, Result<NumError, u64>> {
    let v = parse_u64(w).map_err(Ok)?;
    u32::try_from(v)
        .ok()
        .filter(|id| *id <= MAX_VOLUME_ID)
        .ok_or(Err(v))
}

/// Parses the arguments of a `snapguard` table line:
/// `<pool dev> <volume id>`.
pub fn parse_volume_table<'a>(argv: &[&'a [u8]]) -> Result<VolumeTable<'a>, TableError> {
    if argv.len() != 2 {
        return Err(TableError::VolumeArgCount { got: argv.len() });
    }
    let pool_dev = device(argv, 0)?;
    let volume_id = volume_id(word(argv, 1)).map_err(|e| match e {
        Ok(err) => TableError::Number {
            arg: 1,
            field: Field::VolumeId,
            err,
        },
        Err(id) => TableError::VolumeIdRange { arg: 1, id },
    })?;
    Ok(VolumeTable {
        pool_dev,
        volume_id,
    })
}
