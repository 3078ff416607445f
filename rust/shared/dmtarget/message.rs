//! Messages to the pool (`dmsetup message <pool> 0 ...`).

use core::fmt;

use super::num::parse_u64;
use super::table::volume_id;
use super::{Field, MessageError};

/// A parsed pool message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// `create <id>`: a new, empty volume.
    Create {
        /// Volume id.
        id: u32,
    },
    /// `delete <id>`.
    Delete {
        /// Volume id.
        id: u32,
    },
    /// `snapshot <origin id> <new id>`: a new volume sharing all extents of
    /// the origin.
    Snapshot {
        /// The volume to copy.
        origin: u32,
        /// The new volume.
        new: u32,
    },
    /// `set_transaction_id <old> <new>`: succeeds only if the pool's
    /// transaction id is `old`.
    SetTransactionId {
        /// Expected current id.
        old: u64,
        /// New id.
        new: u64,
    },
}

impl fmt::Display for Message {
    /// The message in canonical form (parses back to the same value).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Message::Create { id } => write!(f, "create {id}"),
            Message::Delete { id } => write!(f, "delete {id}"),
            Message::Snapshot { origin, new } => write!(f, "snapshot {origin} {new}"),
            Message::SetTransactionId { old, new } => {
                write!(f, "set_transaction_id {old} {new}")
            }
        }
    }
}

fn id_arg(argv: &[&[u8]], arg: usize, field: Field) -> Result<u32, MessageError> {
    let w = argv.get(arg).copied().unwrap_or(&[]);
    volume_id(w).map_err(|e| match e {
        Ok(err) => MessageError::Number { arg, field, err },
        Err(id) => MessageError::VolumeIdRange { arg, id },
    })
}

fn u64_arg(argv: &[&[u8]], arg: usize, field: Field) -> Result<u64, MessageError> {
    let w = argv.get(arg).copied().unwrap_or(&[]);
    parse_u64(w).map_err(|err| MessageError::Number { arg, field, err })
}

/// Parses a pool message; `argv[0]` is the message name (ASCII
/// case-insensitive, as dm-thin).
pub fn parse_message(argv: &[&[u8]]) -> Result<Message, MessageError> {
    let (name, args) = argv.split_first().ok_or(MessageError::Empty)?;
    let (command, expected) = [
        ("create", 1),
        ("delete", 1),
        ("snapshot", 2),
        ("set_transaction_id", 2),
    ]
    .into_iter()
    .find(|(c, _)| name.eq_ignore_ascii_case(c.as_bytes()))
    .ok_or(MessageError::UnknownCommand)?;
    if args.len() != expected {
        return Err(MessageError::ArgCount {
            command,
            expected,
            got: args.len(),
        });
    }
    Ok(match command {
        "create" => Message::Create {
            id: id_arg(argv, 1, Field::VolumeId)?,
        },
        "delete" => Message::Delete {
            id: id_arg(argv, 1, Field::VolumeId)?,
        },
        "snapshot" => {
            let origin = id_arg(argv, 1, Field::OriginId)?;
            let new = id_arg(argv, 2, Field::NewId)?;
            if origin == new {
                return Err(MessageError::SameVolume { id: new });
            }
            Message::Snapshot { origin, new }
        }
        _ => Message::SetTransactionId {
            old: u64_arg(argv, 1, Field::OldTransactionId)?,
            new: u64_arg(argv, 2, Field::NewTransactionId)?,
        },
    })
}
