//! Rust's legacy mangling: an Itanium-style path `_ZN <len><ident>… E` whose last element
//! is the hash `h<16 hex digits>`. Printed as rustc-demangle's `{:#}` does: elements joined
//! by `::`, the hash left out, `$LT$`-style and `$u20$` escapes and `..` decoded.

use super::sink::Sink;

/// Length of the hash element: `h` and 16 hex digits.
const HASH_LEN: usize = 17;

/// Whether `s` is a legacy Rust symbol (not a C++ one): `_ZN…E` ending in the hash.
pub fn is_legacy(s: &[u8]) -> bool {
    let mut last: &[u8] = &[];
    let ok = for_each_element(s, &mut |e| last = e).is_some();
    ok && is_hash(last)
}

fn is_hash(e: &[u8]) -> bool {
    e.len() == HASH_LEN
        && e.first() == Some(&b'h')
        && e.iter().skip(1).all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Calls `f` with each element of the path; returns what follows the closing `E`.
fn for_each_element<'s>(s: &'s [u8], f: &mut dyn FnMut(&'s [u8])) -> Option<&'s [u8]> {
    let mut rest = s.strip_prefix(b"_ZN")?;
    loop {
        match rest.first()? {
            b'E' => return rest.get(1..),
            b'0'..=b'9' => {}
            _ => return None,
        }
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut len = 0usize;
        for &d in rest.get(..digits)? {
            len = len.checked_mul(10)?.checked_add((d - b'0') as usize)?;
        }
        let element = rest.get(digits..digits.checked_add(len)?)?;
        f(element);
        rest = rest.get(digits + len..)?;
    }
}

pub fn demangle(s: &[u8], out: &mut Sink) -> bool {
    let s = super::rust_v0::strip_llvm_suffix(s);
    let mut count = 0usize;
    let Some(suffix) = for_each_element(s, &mut |_| count += 1) else {
        return false;
    };
    if !super::rust_v0::suffix_ok(suffix) {
        return false;
    }
    let mut index = 0usize;
    for_each_element(s, &mut |e| {
        index += 1;
        if index == count && is_hash(e) {
            return;
        }
        if index > 1 {
            out.str("::");
        }
        element(e, out);
    });
    out.bytes(suffix);
    true
}

/// One element with its escapes decoded; from an escape it cannot decode on, the rest is
/// written as it is.
fn element(e: &[u8], out: &mut Sink) {
    let mut rest = if e.starts_with(b"_$") { &e[1..] } else { e };
    loop {
        match rest.first() {
            None => return,
            Some(b'.') => {
                if rest.get(1) == Some(&b'.') {
                    out.str("::");
                    rest = &rest[2..];
                } else {
                    out.byte(b'.');
                    rest = &rest[1..];
                }
            }
            Some(b'$') => {
                let Some(end) = rest[1..].iter().position(|&b| b == b'$') else {
                    break;
                };
                let Some(c) = unescape(&rest[1..1 + end]) else {
                    break;
                };
                out.char(c);
                rest = &rest[end + 2..];
            }
            Some(_) => {
                let n = rest.iter().position(|&b| b == b'$' || b == b'.').unwrap_or(rest.len());
                out.bytes(&rest[..n]);
                rest = &rest[n..];
            }
        }
    }
    out.bytes(rest);
}

/// The character an escape (`LT`, `u20`, …, without its `$`s) stands for.
fn unescape(escape: &[u8]) -> Option<char> {
    let c = match escape {
        b"SP" => '@',
        b"BP" => '*',
        b"RF" => '&',
        b"LT" => '<',
        b"GT" => '>',
        b"LP" => '(',
        b"RP" => ')',
        b"C" => ',',
        _ => {
            let digits = escape.strip_prefix(b"u")?;
            if digits.is_empty() || !digits.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            let mut v: u32 = 0;
            for &d in digits {
                let nibble = if d.is_ascii_digit() { d - b'0' } else { d - b'a' + 10 };
                v = v.checked_mul(16)?.checked_add(nibble as u32)?;
            }
            char::from_u32(v).filter(|c| !c.is_control())?
        }
    };
    Some(c)
}
