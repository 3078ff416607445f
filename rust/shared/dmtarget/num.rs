//! Strict decimal numbers.

use super::NumError;

/// Parses a decimal `u64`: ASCII digits only (no sign, no white space, no
/// `0x`), no leading zero unless the number is `0`, no overflow.
///
/// Leading zeros are refused so that every accepted number has one
/// spelling, the one the status and table lines print, and nobody mistakes
/// `010` for octal.
pub fn parse_u64(s: &[u8]) -> Result<u64, NumError> {
    let (first, rest) = match s.split_first() {
        Some(x) => x,
        None => return Err(NumError::Empty),
    };
    if *first == b'+' || *first == b'-' {
        return Err(NumError::Sign);
    }
    if *first == b'0' && !rest.is_empty() {
        return if rest.iter().all(u8::is_ascii_digit) {
            Err(NumError::LeadingZero)
        } else {
            Err(NumError::NotDecimal)
        };
    }
    let mut v: u64 = 0;
    let mut overflow = false;
    for &c in s {
        if !c.is_ascii_digit() {
            return Err(NumError::NotDecimal);
        }
        let d = u64::from(c.wrapping_sub(b'0'));
        match v.checked_mul(10).and_then(|x| x.checked_add(d)) {
            Some(x) => v = x,
            // Keep scanning: a non-digit later is the better error.
            None => overflow = true,
        }
    }
    if overflow {
        Err(NumError::Overflow)
    } else {
        Ok(v)
    }
}
