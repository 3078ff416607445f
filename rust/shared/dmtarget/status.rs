//! Status lines (`dmsetup status`).

use core::fmt;

use super::num::parse_u64;
use super::Discard;

/// Operating mode of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// `rw`: normal operation.
    ReadWrite,
    /// `ro`: metadata is not changed (by request or after an error).
    ReadOnly,
    /// `out_of_data_space`: no free data extent; writes to unprovisioned
    /// extents queue or fail (see [`NoSpacePolicy`]).
    OutOfDataSpace,
    /// `fail`: all I/O fails.
    Fail,
}

impl PoolMode {
    /// The status word.
    pub fn name(&self) -> &'static str {
        match self {
            PoolMode::ReadWrite => "rw",
            PoolMode::ReadOnly => "ro",
            PoolMode::OutOfDataSpace => "out_of_data_space",
            PoolMode::Fail => "fail",
        }
    }
}

/// Discard handling in effect (the status names of [`Discard`]).
pub type DiscardState = Discard;

impl Discard {
    /// The status word.
    pub fn status_name(&self) -> &'static str {
        match self {
            Discard::Passdown => "discard_passdown",
            Discard::NoPassdown => "no_discard_passdown",
            Discard::Ignore => "ignore_discard",
        }
    }
}

/// What writes do when the pool is out of data space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSpacePolicy {
    /// `queue_if_no_space` (the default).
    Queue,
    /// `error_if_no_space`.
    Error,
}

impl NoSpacePolicy {
    /// The status word.
    pub fn name(&self) -> &'static str {
        match self {
            NoSpacePolicy::Queue => "queue_if_no_space",
            NoSpacePolicy::Error => "error_if_no_space",
        }
    }
}

/// The pool status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// User transaction id (`set_transaction_id`).
    pub transaction_id: u64,
    /// Used metadata blocks.
    pub meta_used: u64,
    /// Metadata blocks.
    pub meta_total: u64,
    /// Used data extents.
    pub data_used: u64,
    /// Data extents.
    pub data_total: u64,
    /// Mode.
    pub mode: PoolMode,
    /// Discard handling.
    pub discard: Discard,
    /// Out-of-space policy.
    pub no_space: NoSpacePolicy,
    /// The metadata needs an offline check (`needs_check`).
    pub needs_check: bool,
}

impl PoolStatus {
    /// Writes the status line.
    pub fn write<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        write!(
            w,
            "{} {}/{} {}/{} {} {} {} {}",
            self.transaction_id,
            self.meta_used,
            self.meta_total,
            self.data_used,
            self.data_total,
            self.mode.name(),
            self.discard.status_name(),
            self.no_space.name(),
            if self.needs_check { "needs_check" } else { "-" }
        )
    }

    /// Parses a status line as [`PoolStatus::write`] prints it (for tools
    /// and tests).
    pub fn parse(s: &str) -> Result<Self, StatusParseError> {
        let mut it = s.split_ascii_whitespace();
        let mut next = |i: usize| it.next().ok_or(StatusParseError { word: i });
        let transaction_id = num(next(0)?, 0)?;
        let (meta_used, meta_total) = pair(next(1)?, 1)?;
        let (data_used, data_total) = pair(next(2)?, 2)?;
        let mode = pick(
            next(3)?,
            3,
            [
                PoolMode::ReadWrite,
                PoolMode::ReadOnly,
                PoolMode::OutOfDataSpace,
                PoolMode::Fail,
            ],
            PoolMode::name,
        )?;
        let discard = pick(
            next(4)?,
            4,
            [Discard::Passdown, Discard::NoPassdown, Discard::Ignore],
            Discard::status_name,
        )?;
        let no_space = pick(
            next(5)?,
            5,
            [NoSpacePolicy::Queue, NoSpacePolicy::Error],
            NoSpacePolicy::name,
        )?;
        let needs_check = match next(6)? {
            "needs_check" => true,
            "-" => false,
            _ => return Err(StatusParseError { word: 6 }),
        };
        if it.next().is_some() {
            return Err(StatusParseError { word: 7 });
        }
        Ok(PoolStatus {
            transaction_id,
            meta_used,
            meta_total,
            data_used,
            data_total,
            mode,
            discard,
            no_space,
            needs_check,
        })
    }
}

/// The volume status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeStatus {
    /// The volume (or its pool) failed: `Fail`.
    Fail,
    /// Normal: `<mapped sectors> <highest mapped sector> <shared sectors>`.
    Active {
        /// Sectors mapped to data extents.
        mapped_sectors: u64,
        /// Last sector of the highest mapped extent; `None` (`-`) when
        /// nothing is mapped.
        highest_mapped: Option<u64>,
        /// Mapped sectors whose extents are shared with another volume.
        shared_sectors: u64,
    },
}

impl VolumeStatus {
    /// Writes the status line.
    pub fn write<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        match *self {
            VolumeStatus::Fail => w.write_str("Fail"),
            VolumeStatus::Active {
                mapped_sectors,
                highest_mapped,
                shared_sectors,
            } => {
                write!(w, "{mapped_sectors} ")?;
                match highest_mapped {
                    Some(h) => write!(w, "{h}")?,
                    None => w.write_str("-")?,
                }
                write!(w, " {shared_sectors}")
            }
        }
    }

    /// Parses a status line as [`VolumeStatus::write`] prints it.
    pub fn parse(s: &str) -> Result<Self, StatusParseError> {
        let mut it = s.split_ascii_whitespace();
        let first = it.next().ok_or(StatusParseError { word: 0 })?;
        if first == "Fail" {
            return match it.next() {
                None => Ok(VolumeStatus::Fail),
                Some(_) => Err(StatusParseError { word: 1 }),
            };
        }
        let mapped_sectors = num(first, 0)?;
        let highest_mapped = match it.next().ok_or(StatusParseError { word: 1 })? {
            "-" => None,
            h => Some(num(h, 1)?),
        };
        let shared_sectors = num(it.next().ok_or(StatusParseError { word: 2 })?, 2)?;
        if it.next().is_some() {
            return Err(StatusParseError { word: 3 });
        }
        Ok(VolumeStatus::Active {
            mapped_sectors,
            highest_mapped,
            shared_sectors,
        })
    }
}

/// A status line that does not parse: the index of the first bad word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusParseError {
    /// Index of the word (white-space separated) that is missing or bad.
    pub word: usize,
}

impl fmt::Display for StatusParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status word {} missing or invalid", self.word)
    }
}

fn num(s: &str, word: usize) -> Result<u64, StatusParseError> {
    parse_u64(s.as_bytes()).map_err(|_| StatusParseError { word })
}

fn pair(s: &str, word: usize) -> Result<(u64, u64), StatusParseError> {
    let (a, b) = s.split_once('/').ok_or(StatusParseError { word })?;
    Ok((num(a, word)?, num(b, word)?))
}

fn pick<T: Copy, const N: usize>(
    s: &str,
    word: usize,
    all: [T; N],
    name: fn(&T) -> &'static str,
) -> Result<T, StatusParseError> {
    all.into_iter()
        .find(|v| name(v) == s)
        .ok_or(StatusParseError { word })
}
