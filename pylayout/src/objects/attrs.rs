//! Attributes of instances (`obj.name` without running Python): where CPython keeps an
//! instance's attributes depends on the version and the type.
//!
//! * a dict at `tp_dictoffset` (every version; the only way up to 3.10, and modules), counted
//!   from the object's end when negative (subclasses of int, tuple, bytes up to 3.11);
//! * 3.11/3.12 `Py_TPFLAGS_MANAGED_DICT`: a dict pointer before the object (the pre-header);
//!   while no dict object exists, a values array (3.11: its own word, 3.12: the same word
//!   odd: the values' address - 1) whose keys are the type's `ht_cached_keys`;
//! * 3.13+ `Py_TPFLAGS_INLINE_VALUES`: the values follow the object (`tp_basicsize`), valid
//!   until a dict object takes them over (the pre-header's dict pointer).

use super::ObjectTypes;
use crate::text::{for_each_char, StrRead};
use crate::{dict, Layout, Memory};

/// Where an object's attributes are.
enum Attrs {
    Dict(u64),
    Split { keys: u64, values: u64 },
}

/// The address of the value of attribute `name` of the object at `obj`, if it is an
/// instance attribute (in its `__dict__` or values; class attributes are not looked up).
pub fn instance_attr(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    obj: u64,
    name: &str,
) -> Option<u64> {
    match attrs_of(mem, layout, obj)? {
        Attrs::Dict(d) => dict_lookup(mem, layout, types, d, name),
        Attrs::Split { keys, values } => {
            find_str_entry(mem, layout, types, keys, Some(values), name).map(|(_, value)| value)
        }
    }
}

/// Key objects found by name, by keys table: many instances share one table (every
/// `threading.Thread`'s attributes), so after the first lookup an attribute is found by
/// comparing key addresses instead of decoding each key's text (most of what listing the
/// `threading` names of a 1000-thread process cost the dump helper).
#[derive(Default)]
pub struct KeyCache(std::collections::HashMap<(u64, &'static str), u64>);

/// [`instance_attr`], with the key found remembered in `cache` for the next instance that
/// shares the keys table. A remembered key that is not (or no longer) there is looked up
/// by its text again.
pub fn instance_attr_cached(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    obj: u64,
    name: &'static str,
    cache: &mut KeyCache,
) -> Option<u64> {
    let (keys, values) = match attrs_of(mem, layout, obj)? {
        Attrs::Dict(d) => dict_table(mem, layout, d)?,
        Attrs::Split { keys, values } => (keys, Some(values)),
    };
    if let Some(&key) = cache.0.get(&(keys, name)) {
        let mut found = None;
        dict::for_each_entry(mem, layout, keys, values, &mut |k, value| {
            if k == key {
                found = Some(value);
            }
            found.is_none()
        });
        if found.is_some() {
            return found;
        }
    }
    let (key, value) = find_str_entry(mem, layout, types, keys, values, name)?;
    cache.0.insert((keys, name), key);
    Some(value)
}

fn attrs_of(mem: &dyn Memory, layout: &Layout, obj: u64) -> Option<Attrs> {
    let ty = mem.ptr_at(obj, layout.object_ob_type?)?;
    let flags = mem.ptr_at(ty, layout.type_tp_flags?)?;
    let has = |flag: Option<u32>| flag.is_some_and(|f| flags & u64::from(f) != 0);
    let cached_keys = || mem.ptr_at(ty, layout.heaptype_ht_cached_keys?).filter(|&k| k != 0);
    if has(layout.type_managed_dict_flag) || has(layout.type_inline_values_flag) {
        let word = mem.read_u64(obj.checked_sub(u64::from(layout.object_managed_dict_before?))?)?;
        if let Some(add) = layout.object_tagged_values_add.filter(|_| word & 1 == 1) {
            return Some(Attrs::Split { keys: cached_keys()?, values: word.checked_add(u64::from(add))? });
        }
        if word != 0 {
            return Some(Attrs::Dict(word));
        }
        if has(layout.type_inline_values_flag) {
            let values = obj.checked_add(mem.ptr_at(ty, layout.type_tp_basicsize?)?)?;
            let valid = mem.read_u8(values.checked_add(u64::from(layout.dictvalues_valid?))?)?;
            return (valid != 0).then_some(Attrs::Split { keys: cached_keys()?, values });
        }
        let values = mem.read_u64(obj.checked_sub(u64::from(layout.object_values_before?))?)?;
        return (values != 0).then_some(Attrs::Split { keys: cached_keys()?, values });
    }
    let offset = mem.ptr_at(ty, layout.type_tp_dictoffset?)? as i64;
    let at = match offset {
        1..=MAX_OFFSET => obj.checked_add(offset as u64)?,
        MIN_OFFSET..=-1 => {
            obj.checked_add(var_size(mem, layout, ty, obj)?)?.checked_sub(offset.unsigned_abs())?
        }
        _ => return None,
    };
    mem.read_u64(at).filter(|&d| d != 0).map(Attrs::Dict)
}

/// A dict offset beyond these is not a real type's (a torn or foreign read).
const MAX_OFFSET: i64 = 1 << 20;
const MIN_OFFSET: i64 = -MAX_OFFSET;

/// The allocated size of the variable-size object at `obj`, as CPython computes it to find
/// a negative `tp_dictoffset` (counted from the end: subclasses of int, tuple, bytes up to
/// 3.11; 3.12+ gives them managed dicts): basicsize + |ob_size| * itemsize, word-aligned.
fn var_size(mem: &dyn Memory, layout: &Layout, ty: u64, obj: u64) -> Option<u64> {
    let items = (mem.read_u64(obj.checked_add(u64::from(layout.varobject_ob_size?))?)? as i64).unsigned_abs();
    let basic = mem.ptr_at(ty, layout.type_tp_basicsize?)?;
    let itemsize = mem.ptr_at(ty, layout.type_tp_itemsize?)?;
    let size = basic.checked_add(items.checked_mul(itemsize)?)?;
    (size <= 1 << 32).then_some((size + 7) & !7)
}

/// The value under the str key `name` in the dict at `d` (combined or split table).
pub(crate) fn dict_lookup(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    d: u64,
    name: &str,
) -> Option<u64> {
    let (keys, values) = dict_table(mem, layout, d)?;
    find_str_entry(mem, layout, types, keys, values, name).map(|(_, value)| value)
}

/// [`dict_lookup`], probing from `hash`, the key's hash in the process (see
/// [`dict::lookup_by_hash`]), when given and the table is a combined one; every entry is
/// read only when that cannot tell.
pub(crate) fn dict_lookup_hashed(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    d: u64,
    name: &str,
    hash: Option<i64>,
) -> Option<u64> {
    if let (Some(hash), Some((keys, None))) = (hash, dict_table(mem, layout, d)) {
        let len = name.chars().count();
        let mut is_name = |key: u64| str_text(mem, layout, types, key, len + 1).is_some_and(|k| k == name);
        if let Some(found) = dict::lookup_by_hash(mem, layout, keys, hash, &mut is_name) {
            // A reader without the hash (a debugger on a core made from a dump, which holds
            // what this read) scans the entries: read the table whole, in one read.
            if let Some((start, end)) =
                dict::table_span(mem, layout, keys).filter(|(s, e)| e - s <= MAX_TABLE_READ)
            {
                let _ = mem.read(start, &mut vec![0u8; (end - start) as usize]);
            }
            return found;
        }
    }
    dict_lookup(mem, layout, types, d, name)
}

/// A keys table read whole for the scanners after a lookup by hash, at most.
const MAX_TABLE_READ: u64 = 1 << 20;

/// A dict's keys table and, when split, its values array.
fn dict_table(mem: &dyn Memory, layout: &Layout, d: u64) -> Option<(u64, Option<u64>)> {
    let keys = mem.ptr_at(d, layout.dict_ma_keys?)?;
    let values = mem.ptr_at(d, layout.dict_ma_values?)?;
    Some((keys, (values != 0).then_some(values)))
}

/// The (key, value) addresses of the entry whose key is the str `name`.
fn find_str_entry(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    keys: u64,
    values: Option<u64>,
    name: &str,
) -> Option<(u64, u64)> {
    let len = name.chars().count();
    let mut found = None;
    dict::for_each_entry(mem, layout, keys, values, &mut |key, value| {
        if str_text(mem, layout, types, key, len + 1).is_some_and(|k| k == name) {
            found = Some((key, value));
            return false;
        }
        true
    });
    found
}

/// The text of the str at `obj` if it is one of at most `limit` characters (lone
/// surrogates as U+FFFD).
pub fn str_text(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    obj: u64,
    limit: usize,
) -> Option<String> {
    let mut text = String::new();
    let mut push = |c: u32| text.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
    match for_each_char(mem, layout, types.str_, obj, limit, &mut push) {
        StrRead::Done { truncated: false } => Some(text),
        _ => None,
    }
}
