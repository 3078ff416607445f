//! Error kinds of table and message parsing.
//!
//! Each error has a short fixed text ([`TableError::message`],
//! [`MessageError::message`]) that the kernel glue hands to device-mapper
//! as `ti->error` (which must point at a static string), and a detailed
//! [`core::fmt::Display`] form (with the offending argument and value) for
//! the kernel log and the host tools. Every error maps to `EINVAL`.

use core::ffi::CStr;
use core::fmt;

use super::{Feature, MAX_CACHE_MIB, MAX_EXTENT_SECTORS, MAX_FEATURE_ARGS, MAX_VOLUME_ID};
use super::{MIN_CACHE_MIB, MIN_EXTENT_SECTORS};

/// Why a word is not a number ([`super::parse_u64`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumError {
    /// Empty word.
    Empty,
    /// A leading `+` or `-`.
    Sign,
    /// Not made of ASCII decimal digits only.
    NotDecimal,
    /// A leading zero (only `0` itself may start with `0`).
    LeadingZero,
    /// Larger than 2^64 - 1.
    Overflow,
}

impl NumError {
    fn text(&self) -> &'static str {
        match self {
            NumError::Empty => "empty",
            NumError::Sign => "sign not allowed",
            NumError::NotDecimal => "not a decimal number",
            NumError::LeadingZero => "leading zero not allowed",
            NumError::Overflow => "too large for 64 bits",
        }
    }
}

/// Which value a number error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Pool table: `<extent sectors>`.
    ExtentSectors,
    /// Pool table: `<low water mark extents>`.
    LowWater,
    /// Pool table: `<#feature args>`.
    FeatureCount,
    /// Pool feature `cache_mib:<N>`.
    CacheMib,
    /// Volume table: `<volume id>`; messages `create`, `delete`.
    VolumeId,
    /// Message `snapshot`: `<origin id>`.
    OriginId,
    /// Message `snapshot`: `<new id>`.
    NewId,
    /// Message `set_transaction_id`: `<old>`.
    OldTransactionId,
    /// Message `set_transaction_id`: `<new>`.
    NewTransactionId,
}

impl Field {
    /// The name used in the table and message syntax.
    pub fn name(&self) -> &'static str {
        match self {
            Field::ExtentSectors => "extent sectors",
            Field::LowWater => "low water mark",
            Field::FeatureCount => "feature argument count",
            Field::CacheMib => "cache_mib",
            Field::VolumeId => "volume id",
            Field::OriginId => "origin id",
            Field::NewId => "new id",
            Field::OldTransactionId => "old transaction id",
            Field::NewTransactionId => "new transaction id",
        }
    }

    fn invalid(&self) -> &'static CStr {
        match self {
            Field::ExtentSectors => c"Invalid extent size",
            Field::LowWater => c"Invalid low water mark",
            Field::FeatureCount => c"Invalid number of feature arguments",
            Field::CacheMib => c"Invalid cache_mib",
            Field::VolumeId => c"Invalid volume id",
            Field::OriginId => c"Invalid origin id",
            Field::NewId => c"Invalid new id",
            Field::OldTransactionId => c"Invalid old transaction id",
            Field::NewTransactionId => c"Invalid new transaction id",
        }
    }
}

/// A refused `snapguard-pool` or `snapguard` table line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// Pool table with fewer than 4 arguments.
    PoolArgCount {
        /// Arguments given.
        got: usize,
    },
    /// Volume table without exactly 2 arguments.
    VolumeArgCount {
        /// Arguments given.
        got: usize,
    },
    /// An empty device argument.
    EmptyDevice {
        /// Index of the argument.
        arg: usize,
    },
    /// A device argument that is not UTF-8 or holds white space or control
    /// characters (it could not be printed back as one table word).
    BadDevice {
        /// Index of the argument.
        arg: usize,
    },
    /// The metadata and data devices are spelled the same.
    SameDevice,
    /// A number that does not parse.
    Number {
        /// Index of the argument.
        arg: usize,
        /// Which value.
        field: Field,
        /// Why.
        err: NumError,
    },
    /// Extent size not a power of two.
    ExtentNotPowerOfTwo {
        /// The value given.
        sectors: u64,
    },
    /// Extent size below [`MIN_EXTENT_SECTORS`].
    ExtentTooSmall {
        /// The value given.
        sectors: u64,
    },
    /// Extent size above [`MAX_EXTENT_SECTORS`].
    ExtentTooLarge {
        /// The value given.
        sectors: u64,
    },
    /// More than [`MAX_FEATURE_ARGS`] feature arguments declared.
    FeatureCountTooLarge {
        /// The count given.
        declared: u64,
    },
    /// The feature count does not match the arguments that follow it.
    FeatureCountMismatch {
        /// The count given.
        declared: u64,
        /// Arguments after the count.
        given: usize,
    },
    /// A feature argument that is not a feature.
    UnknownFeature {
        /// Index of the argument.
        arg: usize,
    },
    /// A feature given twice.
    DuplicateFeature {
        /// Index of the second occurrence.
        arg: usize,
        /// The feature.
        feature: Feature,
    },
    /// Two features that exclude each other.
    ConflictingFeatures {
        /// Index of the later one.
        arg: usize,
        /// The earlier feature.
        first: Feature,
        /// The later feature.
        second: Feature,
    },
    /// `cache_mib:<N>` outside [`MIN_CACHE_MIB`]..=[`MAX_CACHE_MIB`].
    CacheMibRange {
        /// Index of the argument.
        arg: usize,
        /// The value given.
        mib: u64,
    },
    /// A volume id above [`MAX_VOLUME_ID`].
    VolumeIdRange {
        /// Index of the argument.
        arg: usize,
        /// The value given.
        id: u64,
    },
}

impl TableError {
    /// The `argv` index of the offending argument, when there is one.
    pub fn arg(&self) -> Option<usize> {
        match *self {
            TableError::EmptyDevice { arg }
            | TableError::BadDevice { arg }
            | TableError::Number { arg, .. }
            | TableError::UnknownFeature { arg }
            | TableError::DuplicateFeature { arg, .. }
            | TableError::ConflictingFeatures { arg, .. }
            | TableError::CacheMibRange { arg, .. }
            | TableError::VolumeIdRange { arg, .. } => Some(arg),
            TableError::ExtentNotPowerOfTwo { .. }
            | TableError::ExtentTooSmall { .. }
            | TableError::ExtentTooLarge { .. } => Some(2),
            TableError::FeatureCountTooLarge { .. } | TableError::FeatureCountMismatch { .. } => {
                Some(4)
            }
            TableError::PoolArgCount { .. }
            | TableError::VolumeArgCount { .. }
            | TableError::SameDevice => None,
        }
    }

    /// The short, fixed text for `ti->error`.
    pub fn message(&self) -> &'static CStr {
        match self {
            TableError::PoolArgCount { .. } | TableError::VolumeArgCount { .. } => {
                c"Invalid argument count"
            }
            TableError::EmptyDevice { .. } => c"Empty device argument",
            TableError::BadDevice { .. } => c"Invalid device argument",
            TableError::SameDevice => c"Metadata and data devices must differ",
            TableError::Number { field, .. } => field.invalid(),
            TableError::ExtentNotPowerOfTwo { .. } => c"Invalid extent size: not a power of two",
            TableError::ExtentTooSmall { .. } => c"Invalid extent size: below 8 sectors",
            TableError::ExtentTooLarge { .. } => c"Invalid extent size: above 2097152 sectors",
            TableError::FeatureCountTooLarge { .. } => c"Invalid number of feature arguments",
            TableError::FeatureCountMismatch { .. } => {
                c"Feature argument count does not match the arguments"
            }
            TableError::UnknownFeature { .. } => c"Unrecognised pool feature",
            TableError::DuplicateFeature { .. } => c"Duplicate pool feature",
            TableError::ConflictingFeatures { .. } => c"Conflicting pool features",
            TableError::CacheMibRange { .. } => c"Invalid cache_mib: out of range",
            TableError::VolumeIdRange { .. } => c"Invalid volume id: out of range",
        }
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TableError::PoolArgCount { got } => write!(
                f,
                "{got} arguments, expected <metadata dev> <data dev> <extent sectors> \
                 <low water mark> [<#feature args> <arg>...]"
            ),
            TableError::VolumeArgCount { got } => {
                write!(f, "{got} arguments, expected <pool dev> <volume id>")
            }
            TableError::EmptyDevice { arg } => write!(f, "argument {arg}: empty device"),
            TableError::BadDevice { arg } => write!(
                f,
                "argument {arg}: device is not UTF-8 or holds white space or control characters"
            ),
            TableError::SameDevice => {
                f.write_str("metadata and data devices must be different devices")
            }
            TableError::Number { arg, field, err } => {
                write!(f, "argument {arg} ({}): {}", field.name(), err.text())
            }
            TableError::ExtentNotPowerOfTwo { sectors } => {
                write!(f, "extent size {sectors} sectors is not a power of two")
            }
            TableError::ExtentTooSmall { sectors } => write!(
                f,
                "extent size {sectors} sectors is below {MIN_EXTENT_SECTORS} (4 KiB)"
            ),
            TableError::ExtentTooLarge { sectors } => write!(
                f,
                "extent size {sectors} sectors is above {MAX_EXTENT_SECTORS} (1 GiB)"
            ),
            TableError::FeatureCountTooLarge { declared } => write!(
                f,
                "{declared} feature arguments declared, at most {MAX_FEATURE_ARGS} are valid"
            ),
            TableError::FeatureCountMismatch { declared, given } => {
                write!(f, "{declared} feature arguments declared but {given} given")
            }
            TableError::UnknownFeature { arg } => {
                write!(f, "argument {arg}: unrecognised pool feature")
            }
            TableError::DuplicateFeature { arg, feature } => {
                write!(f, "argument {arg}: feature {} given twice", feature.name())
            }
            TableError::ConflictingFeatures { arg, first, second } => write!(
                f,
                "argument {arg}: feature {} conflicts with {}",
                second.name(),
                first.name()
            ),
            TableError::CacheMibRange { arg, mib } => write!(
                f,
                "argument {arg}: cache_mib:{mib} is outside {MIN_CACHE_MIB}..={MAX_CACHE_MIB}"
            ),
            TableError::VolumeIdRange { arg, id } => {
                write!(f, "argument {arg}: volume id {id} is above {MAX_VOLUME_ID}")
            }
        }
    }
}

/// A refused pool message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// No words at all.
    Empty,
    /// The first word is not a known message.
    UnknownCommand,
    /// Wrong number of arguments for the message.
    ArgCount {
        /// The message name.
        command: &'static str,
        /// Arguments it takes.
        expected: usize,
        /// Arguments given (not counting the name).
        got: usize,
    },
    /// A number that does not parse.
    Number {
        /// Index of the word (0 is the message name).
        arg: usize,
        /// Which value.
        field: Field,
        /// Why.
        err: NumError,
    },
    /// A volume id above [`MAX_VOLUME_ID`].
    VolumeIdRange {
        /// Index of the word.
        arg: usize,
        /// The value given.
        id: u64,
    },
    /// `snapshot` with the same origin and new id.
    SameVolume {
        /// The id.
        id: u32,
    },
}

impl MessageError {
    /// The short, fixed text.
    pub fn message(&self) -> &'static CStr {
        match self {
            MessageError::Empty => c"Empty message",
            MessageError::UnknownCommand => c"Unrecognised pool message",
            MessageError::ArgCount { .. } => c"Invalid argument count",
            MessageError::Number { field, .. } => field.invalid(),
            MessageError::VolumeIdRange { .. } => c"Invalid volume id: out of range",
            MessageError::SameVolume { .. } => c"Snapshot origin and new id must differ",
        }
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MessageError::Empty => f.write_str("empty message"),
            MessageError::UnknownCommand => f.write_str(
                "unrecognised message, expected create, delete, snapshot or set_transaction_id",
            ),
            MessageError::ArgCount {
                command,
                expected,
                got,
            } => write!(f, "{command} takes {expected} arguments, {got} given"),
            MessageError::Number { arg, field, err } => {
                write!(f, "argument {arg} ({}): {}", field.name(), err.text())
            }
            MessageError::VolumeIdRange { arg, id } => {
                write!(f, "argument {arg}: volume id {id} is above {MAX_VOLUME_ID}")
            }
            MessageError::SameVolume { id } => {
                write!(f, "snapshot of volume {id} onto itself")
            }
        }
    }
}
