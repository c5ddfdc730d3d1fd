//! Iterating dicts and sets in another process's memory: combined tables, and split tables
//! (shared keys + a values array: instance `__dict__`s and attributes).

use crate::{Layout, Memory};

/// Entries beyond this many are not visited (guards against corrupt sizes).
const MAX_ENTRIES: u64 = 1 << 20;

/// Calls `f(key, value)` for each live entry of the dict at `dict`, in insertion order,
/// until `f` returns `false`. Returns `false` when the dict could not be read.
pub fn for_each_item(
    mem: &dyn Memory,
    layout: &Layout,
    dict: u64,
    f: &mut dyn FnMut(u64, u64) -> bool,
) -> bool {
    for_each_item_inner(mem, layout, dict, f).is_some()
}

fn for_each_item_inner(
    mem: &dyn Memory,
    layout: &Layout,
    dict: u64,
    f: &mut dyn FnMut(u64, u64) -> bool,
) -> Option<()> {
    let keys = mem.ptr_at(dict, layout.dict_ma_keys?)?;
    let values = mem.ptr_at(dict, layout.dict_ma_values?)?;
    for_each_entry(mem, layout, keys, (values != 0).then_some(values), f)
}

/// Calls `f(key, value)` for each live entry of the keys object `keys` until `f` returns
/// `false`. `values`: the values array (`PyDictValues`, or 3.9/3.10's `PyObject **`) of a
/// split table — a dict's `ma_values`, an instance's pre-header or inline values — whose
/// keys are shared (the type's `ht_cached_keys`); visited in the instance's insertion order
/// (3.11+ record it beside the values; 3.9/3.10's is the keys' order). `None` if unreadable.
pub fn for_each_entry(
    mem: &dyn Memory,
    layout: &Layout,
    keys: u64,
    values: Option<u64>,
    f: &mut dyn FnMut(u64, u64) -> bool,
) -> Option<()> {
    let nentries = mem.ptr_at(keys, layout.dictkeys_nentries?)?;
    if nentries > MAX_ENTRIES {
        return None;
    }
    let Table { entries, entry_size, key_off, value_off, .. } = Table::read(mem, layout, keys)?;
    let entry = |i: u64| entries.wrapping_add(i * entry_size);
    let Some(values) = values else {
        for i in 0..nentries {
            let value = mem.ptr_at(entry(i), value_off)?;
            if value != 0 && !f(mem.ptr_at(entry(i), key_off)?, value) {
                break;
            }
        }
        return Some(());
    };
    let array = values.checked_add(layout.dictvalues_values.unwrap_or(0) as u64)?;
    // Some(false): stop (f said so).
    let mut visit = |i: u64| -> Option<bool> {
        if i >= nentries {
            return Some(true); // a corrupt order: skipped
        }
        let value = mem.read_u64(array.wrapping_add(i * 8))?;
        Some(value == 0 || f(mem.ptr_at(entry(i), key_off)?, value))
    };
    let mut order = [0u8; 256];
    match insertion_order(mem, layout, values, &mut order) {
        Some(n) => {
            for &i in &order[..n] {
                if !visit(u64::from(i))? {
                    break;
                }
            }
        }
        None => {
            for i in 0..nentries {
                if !visit(i)? {
                    break;
                }
            }
        }
    }
    Some(())
}

/// Where a keys table's parts are: its index array, then its entries.
struct Table {
    /// The index array's address and size in bytes.
    indices: u64,
    index_bytes: u64,
    entries: u64,
    /// An entry's size and its key's and value's offsets: 3.11+'s unicode entries (key and
    /// value, no hash) or general ones.
    entry_size: u64,
    key_off: u32,
    value_off: u32,
}

impl Table {
    fn read(mem: &dyn Memory, layout: &Layout, keys: u64) -> Option<Table> {
        let (index_bytes, unicode) = if let Some(log2_off) = layout.dictkeys_log2_index_bytes {
            let log2 = mem.read_u8(keys.checked_add(u64::from(log2_off))?)?;
            let kind = mem.read_u8(keys.checked_add(u64::from(layout.dictkeys_kind?))?)?;
            (1u64.checked_shl(u32::from(log2))?, kind != 0)
        } else {
            // ≤3.10: `DK_IXSIZE` bytes per slot, by the table's size.
            let size = mem.ptr_at(keys, layout.dictkeys_size?)?;
            let width = match size {
                0..=0xff => 1,
                0x100..=0xffff => 2,
                0x1_0000..=0xffff_ffff => 4,
                _ => 8,
            };
            (size.checked_mul(width)?, false)
        };
        let (entry_size, key_off, value_off) = if unicode {
            (
                layout.dictkeys_unicode_entry_size?,
                layout.dictkeys_unicode_entry_key?,
                layout.dictkeys_unicode_entry_value?,
            )
        } else {
            (layout.dictkeys_entry_size?, layout.dictkeys_entry_key?, layout.dictkeys_entry_value?)
        };
        let indices = keys.checked_add(u64::from(layout.dictkeys_indices?))?;
        let entries = indices.checked_add(index_bytes)?;
        Some(Table { indices, index_bytes, entries, entry_size: u64::from(entry_size), key_off, value_off })
    }
}

/// The value of the entry of the combined keys table `keys` whose key `is_key` accepts,
/// found as CPython's own lookup finds it: from the slot `hash` selects, along the same
/// probe sequence, reading a few index slots and entries instead of every entry (`hash`
/// is the key's own, which str salts per process: the process must give it). `Some(None)`:
/// the sequence reached an empty slot, so no entry has that key. `None`: the table does
/// not read, or its probe sequence never ends (corrupt); scan it instead.
pub fn lookup_by_hash(
    mem: &dyn Memory,
    layout: &Layout,
    keys: u64,
    hash: i64,
    is_key: &mut dyn FnMut(u64) -> bool,
) -> Option<Option<u64>> {
    let t = Table::read(mem, layout, keys)?;
    let size = match layout.dictkeys_log2_size {
        Some(off) => 1u64.checked_shl(u32::from(mem.read_u8(keys.checked_add(u64::from(off))?)?))?,
        None => mem.ptr_at(keys, layout.dictkeys_size?)?,
    };
    if !size.is_power_of_two() || size > MAX_ENTRIES * 2 {
        return None;
    }
    // Each index slot is 1, 2, 4 or 8 bytes (signed), as the index array's size says.
    let width = t.index_bytes / size;
    if !matches!(width, 1 | 2 | 4 | 8) || width * size != t.index_bytes {
        return None;
    }
    let nentries = mem.ptr_at(keys, layout.dictkeys_nentries?)?;
    let mask = size - 1;
    let mut perturb = hash as u64;
    let mut i = perturb & mask;
    for _ in 0..size {
        let mut raw = [0u8; 8];
        mem.read(t.indices + i * width, &mut raw[..width as usize]).then_some(())?;
        // Signed: DKIX_EMPTY is -1, DKIX_DUMMY (a deleted entry) -2.
        let ix = match width {
            1 => i64::from(raw[0] as i8),
            2 => i64::from(i16::from_le_bytes([raw[0], raw[1]])),
            4 => i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
            _ => i64::from_le_bytes(raw),
        };
        match ix {
            -1 => return Some(None),
            ix if ix >= 0 && (ix as u64) < nentries => {
                let entry = t.entries.checked_add(ix as u64 * t.entry_size)?;
                let key = mem.ptr_at(entry, t.key_off)?;
                if key != 0 && is_key(key) {
                    return Some(mem.ptr_at(entry, t.value_off).filter(|&v| v != 0));
                }
            }
            ix if ix >= 0 => return None, // past the entries: corrupt
            _ => {}
        }
        perturb >>= PERTURB_SHIFT;
        i = mask & (i.wrapping_mul(5).wrapping_add(perturb).wrapping_add(1));
    }
    None
}

/// The bytes of the combined keys table `keys` up to its last used entry: what a scan
/// ([`for_each_entry`]) of it reads besides the keys themselves. None if it does not read.
pub fn table_span(mem: &dyn Memory, layout: &Layout, keys: u64) -> Option<(u64, u64)> {
    let nentries = mem.ptr_at(keys, layout.dictkeys_nentries?)?.min(MAX_ENTRIES);
    let t = Table::read(mem, layout, keys)?;
    Some((keys, t.entries.checked_add(nentries.checked_mul(t.entry_size)?)?))
}

/// CPython's `PERTURB_SHIFT`: how the probe sequence folds in the hash's higher bits.
const PERTURB_SHIFT: u32 = 5;

/// Reads the insertion order of the split table whose `PyDictValues` is at `values` into
/// `out`; the number of indices, or `None` where the version records none (3.9/3.10) or
/// it does not read.
fn insertion_order(mem: &dyn Memory, layout: &Layout, values: u64, out: &mut [u8; 256]) -> Option<usize> {
    if let (Some(cap_off), Some(size_off)) = (layout.dictvalues_capacity, layout.dictvalues_size) {
        // 3.13+: `size` indices after the `capacity` values.
        let capacity = u64::from(mem.read_u8(values.checked_add(u64::from(cap_off))?)?);
        let size = mem.read_u8(values.checked_add(u64::from(size_off))?)? as usize;
        let at = values.checked_add(u64::from(layout.dictvalues_values?))?.checked_add(capacity * 8)?;
        return mem.read(at, &mut out[..size]).then_some(size);
    }
    // 3.11/3.12: a count, then indices going down, in the bytes before the values.
    let size_at = values.checked_sub(u64::from(layout.dictvalues_order_size_before?))?;
    let size = mem.read_u8(size_at)? as usize;
    if size == 0 {
        return Some(0);
    }
    let first = values.checked_sub(u64::from(layout.dictvalues_order_before?))?;
    let lowest = first.checked_sub(size.checked_sub(1)? as u64)?;
    let mut down = [0u8; 256];
    if !mem.read(lowest, &mut down[..size]) {
        return None;
    }
    for (k, slot) in out[..size].iter_mut().enumerate() {
        *slot = down[size - 1 - k];
    }
    Some(size)
}

/// Calls `f(key, hash)` for each entry of the set or frozenset at `set` until `f` returns
/// `false`, reading the table 256 entries at a time. Dummy (deleted) slots are passed too:
/// callers check the key's type.
pub fn for_each_set_entry(
    mem: &dyn Memory,
    layout: &Layout,
    set: u64,
    f: &mut dyn FnMut(u64, i64) -> bool,
) -> bool {
    let mut inner = || -> Option<()> {
        let mask = mem.ptr_at(set, layout.set_mask?)?;
        if mask >= MAX_ENTRIES {
            return None;
        }
        let table = mem.ptr_at(set, layout.set_table?)?;
        let (size, key_off, hash_off) = (
            layout.set_entry_size? as usize,
            layout.set_entry_key? as usize,
            layout.set_entry_hash? as usize,
        );
        if size == 0 || size > 32 || key_off + 8 > size || hash_off + 8 > size {
            return None;
        }
        let mut buf = [0u8; 256 * 32];
        let mut i = 0u64;
        while i <= mask {
            let n = (mask + 1 - i).min(256) as usize;
            let bytes = &mut buf[..n * size];
            if !mem.read(table + i * size as u64, bytes) {
                return None;
            }
            for e in bytes.chunks_exact(size) {
                let key = u64::from_le_bytes(e[key_off..key_off + 8].try_into().ok()?);
                let hash = i64::from_le_bytes(e[hash_off..hash_off + 8].try_into().ok()?);
                if key != 0 && !f(key, hash) {
                    return Some(());
                }
            }
            i += n as u64;
        }
        Some(())
    };
    inner().is_some()
}
