//! `int` objects: magnitude digits of `long.shift` bits each, least significant first, with
//! the count and sign in `ob_size` (≤3.11) or in `lv_tag` (3.12+: count << non_size_bits,
//! sign 0 positive / 1 zero / 2 negative in the low bits).

use crate::{Layout, Memory};

/// Digits read at most (30-bit digits: about 13,500 decimal digits, three times what
/// `repr()` itself prints by default); larger ints are reported as too large.
const MAX_DIGITS: u64 = 1500;

/// An int's sign and magnitude as read from the target.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Digits {
    negative: bool,
    shift: u32,
    /// Least significant first; every digit < 2**shift.
    digits: Vec<u32>,
}

/// Reads the int at `addr` (whose type is already known to be int or a subclass).
pub(super) fn digits(mem: &dyn Memory, l: &Layout, addr: u64) -> Result<Digits, &'static str> {
    let (shift, size, data) = match (l.long_shift, l.long_digit_size, l.long_digits) {
        (Some(shift @ 1..=31), Some(size @ (2 | 4)), Some(data)) => (shift, size as usize, data),
        _ => return Err("no int layout"),
    };
    let (negative, count) = match (l.long_lv_tag, l.long_non_size_bits, l.long_sign_mask) {
        (Some(tag_off), Some(bits), Some(mask)) => {
            let tag = mem.ptr_at(addr, tag_off).ok_or("int not readable")?;
            let count = tag.checked_shr(bits).unwrap_or(0);
            match tag & mask as u64 {
                0 => (false, count),
                1 if count == 0 => (false, 0),
                2 => (true, count),
                _ => return Err("bad int sign (corrupt object)"),
            }
        }
        _ => {
            let size = mem.ptr_at(addr, l.varobject_ob_size.ok_or("no int layout")?);
            let size = size.ok_or("int not readable")? as i64;
            (size < 0, size.unsigned_abs())
        }
    };
    if count > MAX_DIGITS {
        return Err("int too large to show");
    }
    let mut raw = vec![0u8; count as usize * size];
    if !mem.read(addr.wrapping_add(data as u64), &mut raw) {
        return Err("int digits not readable");
    }
    let digits: Vec<u32> = raw
        .chunks_exact(size)
        .map(|c| if size == 2 { u16::from_le_bytes([c[0], c[1]]) as u32 } else { le_u32(c) })
        .collect();
    if digits.iter().any(|&d| d >> shift != 0) {
        return Err("bad int digit (corrupt object)");
    }
    Ok(Digits { negative, shift, digits })
}

fn le_u32(c: &[u8]) -> u32 {
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

impl Digits {
    pub(super) fn is_zero(&self) -> bool {
        self.digits.iter().all(|&d| d == 0)
    }

    /// Decimal text: the digits are converted to base 10**9 limbs most significant digit
    /// first (multiply the limbs by 2**shift, add the digit), then printed.
    pub(super) fn to_decimal(&self) -> String {
        const BASE: u64 = 1_000_000_000;
        let mut limbs: Vec<u32> = Vec::new(); // base 10**9, least significant first
        for &d in self.digits.iter().rev() {
            let mut carry = d as u64;
            for limb in limbs.iter_mut() {
                let v = ((*limb as u64) << self.shift) + carry;
                *limb = (v % BASE) as u32;
                carry = v / BASE;
            }
            while carry != 0 {
                limbs.push((carry % BASE) as u32);
                carry /= BASE;
            }
        }
        let mut text = String::with_capacity(limbs.len() * 9 + 1);
        if self.negative && !self.is_zero() {
            text.push('-');
        }
        match limbs.split_last() {
            None => text.push('0'),
            Some((top, rest)) => {
                text.push_str(&top.to_string());
                for limb in rest.iter().rev() {
                    text.push_str(&format!("{limb:09}"));
                }
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(negative: bool, shift: u32, digits: &[u32]) -> String {
        Digits { negative, shift, digits: digits.to_vec() }.to_decimal()
    }

    #[test]
    fn decimal_text_of_digit_arrays() {
        assert_eq!(of(false, 30, &[]), "0");
        assert_eq!(of(true, 30, &[0]), "0");
        assert_eq!(of(false, 30, &[7]), "7");
        assert_eq!(of(true, 30, &[1]), "-1");
        // 2**30 and 2**60 - 1.
        assert_eq!(of(false, 30, &[0, 1]), "1073741824");
        assert_eq!(of(false, 30, &[(1 << 30) - 1, (1 << 30) - 1]), "1152921504606846975");
        // 2**90 = 1237940039285380274899124224, and with 15-bit digits.
        assert_eq!(of(true, 30, &[0, 0, 0, 1]), "-1237940039285380274899124224");
        assert_eq!(of(false, 15, &[0, 0, 0, 0, 0, 0, 1]), "1237940039285380274899124224");
        // A limb with leading zeros inside the number: 10**9 + 5.
        assert_eq!(of(false, 30, &[1_000_000_005 & ((1 << 30) - 1)]), "1000000005");
    }
}
