// SPDX-License-Identifier: GPL-2.0

//! A fixed-capacity UTF-8 string for building log lines without allocating.

use core::fmt;

/// Up to `N` bytes of text; writes past the end are cut at a character
/// boundary and marked with `...`.
#[derive(Clone)]
pub(crate) struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
    cut: bool,
}

impl<const N: usize> Text<N> {
    /// An empty text.
    pub(crate) const fn new() -> Self {
        Text { buf: [0; N], len: 0, cut: false }
    }

    /// The text so far.
    pub(crate) fn as_str(&self) -> &str {
        let bytes = self.buf.get(..self.len).unwrap_or(&[]);
        // The buffer only ever receives whole characters (see `write_str`).
        core::str::from_utf8(bytes).unwrap_or("")
    }

    /// Whether nothing was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the text.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.cut = false;
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Ok(());
        }
        let room = N.saturating_sub(self.len);
        let mut take = s.len().min(room);
        if take < s.len() {
            // Leave room for the marker and cut at a character boundary.
            take = take.saturating_sub(3);
            while take > 0 && !s.is_char_boundary(take) {
                take -= 1;
            }
            self.cut = true;
        }
        let src = s.as_bytes().get(..take).unwrap_or(&[]);
        if let Some(dst) = self.buf.get_mut(self.len..self.len + take) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        if self.cut {
            let end = (self.len + 3).min(N);
            if let Some(dst) = self.buf.get_mut(self.len..end) {
                dst.fill(b'.');
                self.len = end;
            }
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
