//! `Display` for [`Value`]: the text Python's `repr()` prints for the same object, plus
//! `, ...(N more)` in cut containers, `...` after a cut string and `...` for containers not
//! shown (too deep, a cycle, past the budget).

use super::Value;
use std::fmt::{self, Display, Formatter, Write};

impl Display for Value {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Value::Int(text) => f.write_str(text),
            Value::Float(x) => f.write_str(&float_repr(*x)),
            Value::Str { text, truncated } => {
                write_str_repr(f, text)?;
                cut_mark(f, *truncated)
            }
            Value::Bytes { bytes, truncated } => {
                write_bytes_repr(f, bytes)?;
                cut_mark(f, *truncated)
            }
            Value::Tuple { items, more } => {
                f.write_char('(')?;
                write_items(f, items, *more)?;
                // A one-item tuple keeps its comma: `(1,)`.
                if items.len() == 1 && *more == 0 {
                    f.write_char(',')?;
                }
                f.write_char(')')
            }
            Value::List { items, more } => {
                f.write_char('[')?;
                write_items(f, items, *more)?;
                f.write_char(']')
            }
            Value::Dict { items, more } => {
                f.write_char('{')?;
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write_more(f, items.is_empty(), *more)?;
                f.write_char('}')
            }
            Value::Set { items, more } => write_set(f, "", items, *more),
            Value::FrozenSet { items, more } => write_set(f, "frozenset", items, *more),
            Value::Other { type_name, addr } => match type_name {
                Some(name) => write!(f, "<{name} object at {addr:#x}>"),
                None => write!(f, "<object at {addr:#x}>"),
            },
            Value::TooDeep { .. } => f.write_str("..."),
            Value::Unreadable { addr, why } => write!(f, "<unreadable object at {addr:#x}: {why}>"),
        }
    }
}

fn cut_mark(f: &mut Formatter<'_>, truncated: bool) -> fmt::Result {
    if truncated {
        f.write_str("...")?;
    }
    Ok(())
}

fn write_items(f: &mut Formatter<'_>, items: &[Value], more: u64) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    write_more(f, items.is_empty(), more)
}

fn write_more(f: &mut Formatter<'_>, first: bool, more: u64) -> fmt::Result {
    if more > 0 {
        write!(f, "{}...({more} more)", if first { "" } else { ", " })?;
    }
    Ok(())
}

/// `{1, 2}`, `set()`, `frozenset({1})`, `frozenset()`.
fn write_set(f: &mut Formatter<'_>, name: &str, items: &[Value], more: u64) -> fmt::Result {
    if items.is_empty() && more == 0 {
        return write!(f, "{}()", if name.is_empty() { "set" } else { name });
    }
    if !name.is_empty() {
        write!(f, "{name}(")?;
    }
    f.write_char('{')?;
    write_items(f, items, more)?;
    f.write_char('}')?;
    if !name.is_empty() {
        f.write_char(')')?;
    }
    Ok(())
}

/// The quote `repr()` uses: `"` when the text has `'` but no `"`, else `'`.
fn quote_for(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double {
        '"'
    } else {
        '\''
    }
}

/// `str.__repr__`: escapes backslash, the quote, `\t \n \r`, and non-printable characters
/// as `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
pub(super) fn write_str_repr(f: &mut impl Write, text: &str) -> fmt::Result {
    let quote = quote_for(text.contains('\''), text.contains('"'));
    f.write_char(quote)?;
    for c in text.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\t' => f.write_str("\\t")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            c if c == quote => write!(f, "\\{c}")?,
            c if is_printable(c) => f.write_char(c)?,
            c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
            c if (c as u32) < 0x10000 => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "\\U{:08x}", c as u32)?,
        }
    }
    f.write_char(quote)
}

/// `bytes.__repr__`.
pub(super) fn write_bytes_repr(f: &mut impl Write, bytes: &[u8]) -> fmt::Result {
    let quote = quote_for(bytes.contains(&b'\''), bytes.contains(&b'"'));
    f.write_str("b")?;
    f.write_char(quote)?;
    for &b in bytes {
        match b {
            b'\\' => f.write_str("\\\\")?,
            b'\t' => f.write_str("\\t")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b if b as char == quote => write!(f, "\\{quote}")?,
            0x20..=0x7e => f.write_char(b as char)?,
            b => write!(f, "\\x{b:02x}")?,
        }
    }
    f.write_char(quote)
}

/// `str.isprintable()` for one character: agrees with CPython 3.13's on every assigned code
/// point (checked against its `unicodedata`); unassigned ones in planes 0-3 and 14, which
/// Python escapes, are shown as they are.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x7f {
        return u >= 0x20;
    }
    if u <= 0xa0 || u == 0xad {
        return false; // DEL, C1 controls, no-break space, soft hyphen
    }
    const NOT_PRINTABLE: &[(u32, u32)] = &[
        (0x0378, 0x0379),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x1680, 0x1680),
        (0x180e, 0x180e),
        (0x2000, 0x200f),
        (0x2028, 0x202f),
        (0x205f, 0x2064),
        (0x2065, 0x206f),
        (0x3000, 0x3000),
        (0xd800, 0xf8ff),
        (0xfeff, 0xfeff),
        (0xfff0, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0x40000, 0xdffff), // planes 4-13: nothing assigned
        (0xe0000, 0xe00ff),
        (0xe01f0, 0xe0fff),
        (0xf0000, 0x10ffff),
    ];
    if u & 0xfffe == 0xfffe {
        return false; // noncharacters U+xxFFFE, U+xxFFFF
    }
    !NOT_PRINTABLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}

/// `float.__repr__`: the shortest text that reads back as the same float; positional
/// notation for exponents -4 ≤ e < 16, else scientific with a two-digit exponent.
pub(super) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` is also the shortest round-trip form: "-1.2345e-7".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.unsigned_abs())
    }
}
