//! faulthandler's `Extension modules: a, b (total: 2)` line (`_Py_DumpExtensionModules`,
//! 3.10+): the non-stdlib extension modules in `sys.modules`.

use super::config::Target;
use super::out::Out;
use super::pytrace::{is_str, write_ascii};
use pylayout::text::str_info;
use pylayout::{dict, Memory};

/// Writes the line (preceded by a blank line) if there is at least one such module.
pub fn dump_extension_modules(out: &mut Out, t: &Target) {
    let (mem, l) = (&t.mem, &t.layout);
    if l.minor < 10 {
        return;
    }
    let Some(modules) = l.interp_modules.and_then(|o| mem.ptr_at(t.interp, o)) else {
        return;
    };
    let stdlib = l
        .interp_sysdict
        .and_then(|o| mem.ptr_at(t.interp, o))
        .and_then(|sysdict| find_ascii_key(t, sysdict, b"stdlib_module_names"))
        .filter(|&set| mem.ptr_at(set, l.object_ob_type.unwrap_or(8)) == Some(t.types.frozenset_type));
    let mut count = 0u64;
    dict::for_each_item(mem, l, modules, &mut |key, value| {
        if !is_str(t, key) || !is_extension_module(t, value) {
            return true;
        }
        if stdlib.is_some_and(|set| in_stdlib(t, set, key)) {
            return true;
        }
        out.str(if count == 0 { "\nExtension modules: " } else { ", " });
        write_ascii(out, t, key);
        count += 1;
        true
    });
    if count > 0 {
        out.str(" (total: ");
        out.dec(count);
        out.str(")\n");
    }
}

/// Whether `key` is in the `sys.stdlib_module_names` frozenset `set` (3.15+: or is a
/// submodule of a package that is). Compares cached hashes first: one read of the set's
/// table instead of a string comparison per entry.
fn in_stdlib(t: &Target, set: u64, key: u64) -> bool {
    let (mem, l) = (&t.mem, &t.layout);
    let len = str_info(mem, l, t.types.str_type, key).map_or(0, |i| i.length);
    let hash = l.unicode_hash.and_then(|o| mem.ptr_at(key, o)).map_or(-1, |h| h as i64);
    let top = if l.minor >= 15 { first_dot(t, key) } else { None };
    let mut found = false;
    dict::for_each_set_entry(mem, l, set, &mut |item, item_hash| {
        let whole = (hash == -1 || item_hash == hash) && is_str(t, item) && str_eq(t, key, len, item);
        let package = top.is_some_and(|top| {
            l.unicode_length.and_then(|o| mem.ptr_at(item, o)) == Some(top)
                && is_str(t, item)
                && str_eq(t, key, top, item)
        });
        found = whole || package;
        !found
    });
    found
}

/// `_PyModule_IsExtension()`: a module object with a module definition.
fn is_extension_module(t: &Target, obj: u64) -> bool {
    let (mem, l) = (&t.mem, &t.layout);
    let Some(mut ty) = mem.ptr_at(obj, l.object_ob_type.unwrap_or(8)) else {
        return false;
    };
    // PyModule_Check: the module type or a subclass of it.
    let mut is_module = false;
    for _ in 0..64 {
        if ty == t.types.module_type {
            is_module = true;
            break;
        }
        match l.type_tp_base.and_then(|o| mem.ptr_at(ty, o)) {
            Some(base) if base != 0 => ty = base,
            _ => break,
        }
    }
    if !is_module {
        return false;
    }
    // 3.15 replaced md_def by md_token, which is the definition when md_token_is_def.
    let def = match (l.module_md_def, l.module_md_token, l.module_md_token_is_def) {
        (Some(off), _, _) => mem.ptr_at(obj, off),
        (None, Some(token), Some(is_def)) if mem.read_u8(obj + is_def as u64) == Some(1) => {
            mem.ptr_at(obj, token)
        }
        _ => None,
    };
    match (def, l.moduledef_m_methods) {
        (Some(def), Some(m_methods)) if def != 0 => mem.ptr_at(def, m_methods).is_some_and(|m| m != 0),
        _ => false,
    }
}

/// The value stored under the ASCII key `name` in a str-keyed dict.
fn find_ascii_key(t: &Target, d: u64, name: &[u8]) -> Option<u64> {
    let mut found = None;
    dict::for_each_item(&t.mem, &t.layout, d, &mut |key, value| {
        if str_is(t, key, name) {
            found = Some(value);
            return false;
        }
        true
    });
    found
}

/// Whether the str at `s` equals the ASCII bytes `name`.
fn str_is(t: &Target, s: u64, name: &[u8]) -> bool {
    let Some(info) = str_info(&t.mem, &t.layout, t.types.str_type, s) else {
        return false;
    };
    if !info.ascii || info.length != name.len() as u64 || name.len() > 64 {
        return false;
    }
    let mut buf = [0u8; 64];
    let buf = &mut buf[..name.len()];
    t.mem.read(info.data, buf) && buf == name
}

/// Whether the first `a_len` characters of str `a` are the whole of str `b`
/// (compared 64 characters at a time).
fn str_eq(t: &Target, a: u64, a_len: u64, b: u64) -> bool {
    let (Some(x), Some(y)) =
        (str_info(&t.mem, &t.layout, t.types.str_type, a), str_info(&t.mem, &t.layout, t.types.str_type, b))
    else {
        return false;
    };
    if a_len > x.length || a_len != y.length {
        return false;
    }
    let (mut bx, mut by) = ([0u8; 256], [0u8; 256]);
    let mut i = 0u64;
    while i < a_len {
        let n = (a_len - i).min(64);
        let (sx, sy) = (&mut bx[..(n * x.kind as u64) as usize], &mut by[..(n * y.kind as u64) as usize]);
        if !t.mem.read(x.data + i * x.kind as u64, sx) || !t.mem.read(y.data + i * y.kind as u64, sy) {
            return false;
        }
        for k in 0..n as usize {
            if char_at(sx, x.kind, k) != char_at(sy, y.kind, k) {
                return false;
            }
        }
        i += n;
    }
    true
}

/// Index of the first '.' in a str, if any.
fn first_dot(t: &Target, s: u64) -> Option<u64> {
    let mut index = 0u64;
    let mut found = None;
    pylayout::text::for_each_char(&t.mem, &t.layout, t.types.str_type, s, 1024, &mut |ch| {
        if found.is_none() && ch == '.' as u32 {
            found = Some(index);
        }
        index += 1;
    });
    found
}

fn char_at(buf: &[u8], kind: u8, i: usize) -> u32 {
    let w = kind as usize;
    let b = buf.get(i * w..i * w + w).unwrap_or(&[0]);
    b.iter().rev().fold(0u32, |acc, &x| (acc << 8) | x as u32)
}
