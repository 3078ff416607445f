// SPDX-License-Identifier: GPL-2.0

//! A fixed-size UTF-8 buffer for evidence descriptions.

use core::fmt;

/// Bytes a [`Detail`] holds.
pub const DETAIL_LEN: usize = 160;

/// A human-readable description of up to [`DETAIL_LEN`] bytes, written with
/// `core::fmt::Write`; text past the end is cut at a character boundary.
#[derive(Clone, Copy)]
pub struct Detail {
    buf: [u8; DETAIL_LEN],
    len: u8,
}

impl Detail {
    /// An empty description.
    pub const fn new() -> Self {
        Detail {
            buf: [0; DETAIL_LEN],
            len: 0,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let bytes = self.buf.get(..usize::from(self.len)).unwrap_or(&[]);
        // Only whole characters are ever copied in (see `write_str`).
        core::str::from_utf8(bytes).unwrap_or("")
    }
}

impl Default for Detail {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Write for Detail {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let len = usize::from(self.len);
        let room = DETAIL_LEN.saturating_sub(len);
        let mut take = s.len().min(room);
        // At most three steps back: a UTF-8 character is at most 4 bytes.
        while take > 0 && !s.is_char_boundary(take) {
            take -= 1;
        }
        let src = s.as_bytes().get(..take).unwrap_or(&[]);
        let end = len.saturating_add(take);
        if let Some(dst) = self.buf.get_mut(len..end) {
            // A zip copy, not `copy_from_slice`: both are `take` bytes long,
            // but the compiler cannot see it and would keep a panic path.
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
            self.len = u8::try_from(end).unwrap_or(self.len);
        }
        Ok(())
    }
}
