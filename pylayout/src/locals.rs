//! A Python frame's local variables, and names looked up in its globals and builtins
//! (py-locals, py-print). Allocates: for readers, never for the collector's handler.
//!
//! - ≤3.10: `PyFrameObject.f_localsplus` holds `co_nlocals` locals (named by
//!   `co_varnames`), then one cell per `co_cellvars` and `co_freevars` name.
//! - 3.11+: `_PyInterpreterFrame.localsplus` holds `co_nlocalsplus` slots named by
//!   `co_localsplusnames`, each with a kind byte in `co_localspluskinds`; 3.14+ stores
//!   tagged `_PyStackRef`s there (the low bits are flags, NULL is tagged too).

use crate::objects::attrs::dict_lookup;
use crate::objects::{read_c_string, str_text, ObjectTypes};
use crate::{Layout, Memory};

/// One local variable: its name and the address of its value (0 = unbound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    pub name: String,
    pub value: u64,
    pub kind: LocalKind,
}

/// Where a local lives; cell and free variables are shown dereferenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalKind {
    Local,
    /// A local captured by an inner function (a cell variable).
    Cell,
    /// A variable of an enclosing function (a free variable).
    Free,
}

/// Slots beyond this many are not read (guards against corrupt counts).
const MAX_SLOTS: u64 = 1 << 16;
/// Characters of a variable name read at most.
const MAX_NAME: usize = 256;

/// The local variables of the Python frame at `frame` (a `walk::PyFrame::frame` address:
/// PyFrameObject ≤3.10, _PyInterpreterFrame 3.11+), in co_varnames / co_localsplusnames
/// order. Cell/free variables are dereferenced to their contents. `None` when the frame or
/// its code object cannot be read.
pub fn frame_locals(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    frame: u64,
) -> Option<Vec<Local>> {
    if layout.has_interpreter_frames() {
        localsplus_locals(mem, layout, types, frame)
    } else {
        frame_object_locals(mem, layout, types, frame)
    }
}

/// `name` looked up in the frame's globals, then its builtins (the value's address), as
/// py-print does.
pub fn frame_global(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    frame: u64,
    name: &str,
) -> Option<u64> {
    frame_global_scope(mem, layout, types, frame, name).map(|(value, _)| value)
}

/// Where [`frame_global_scope`] found a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    Builtin,
}

/// Like [`frame_global`], also saying whether the name is a global or a builtin.
pub fn frame_global_scope(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    frame: u64,
    name: &str,
) -> Option<(u64, Scope)> {
    let (globals, builtins) = if layout.has_interpreter_frames() {
        (layout.iframe_globals?, layout.iframe_builtins?)
    } else {
        (layout.frame_globals?, layout.frame_builtins?)
    };
    [(globals, Scope::Global), (builtins, Scope::Builtin)].into_iter().find_map(|(off, scope)| {
        let d = mem.ptr_at(frame, off).filter(|&d| d != 0)?;
        dict_lookup(mem, layout, types, d, name).map(|value| (value, scope))
    })
}

fn name_of(mem: &dyn Memory, layout: &Layout, types: &ObjectTypes, obj: u64) -> String {
    str_text(mem, layout, types, obj, MAX_NAME).unwrap_or_else(|| "<unreadable name>".into())
}

/// The item addresses of the tuple at `tuple`, if it is one with at most `MAX_SLOTS` items.
fn tuple_items(mem: &dyn Memory, layout: &Layout, types: &ObjectTypes, tuple: u64) -> Option<Vec<u64>> {
    if types.tuple != 0 && mem.ptr_at(tuple, layout.object_ob_type?)? != types.tuple {
        return None;
    }
    let len = mem.ptr_at(tuple, layout.varobject_ob_size?)?;
    if len > MAX_SLOTS {
        return None;
    }
    read_words(mem, tuple.wrapping_add(layout.tuple_ob_item? as u64), len as usize)
}

/// `n` little-endian 64-bit words at `addr`.
fn read_words(mem: &dyn Memory, addr: u64, n: usize) -> Option<Vec<u64>> {
    let mut raw = vec![0u8; n.checked_mul(8)?];
    if !mem.read(addr, &mut raw) {
        return None;
    }
    Some(raw.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())).collect())
}

/// The contents of `obj` if it is a cell (`PyCellObject.ob_ref`), else `obj` itself (a
/// 3.11+ cell variable holds its plain value until the frame's MAKE_CELL has run). Cells
/// are told by their type's name: the cell type is not exported.
fn cell_contents(mem: &dyn Memory, layout: &Layout, obj: u64) -> u64 {
    let is_cell = || -> Option<bool> {
        let ty = mem.ptr_at(obj, layout.object_ob_type?)?;
        let name = mem.ptr_at(ty, layout.type_tp_name?)?;
        Some(read_c_string(mem, name, 8)? == "cell")
    };
    if obj == 0 || is_cell() != Some(true) {
        return obj;
    }
    layout.cell_ob_ref.and_then(|off| mem.ptr_at(obj, off)).unwrap_or(0)
}

/// ≤3.10: locals, then cell variables, then free variables.
fn frame_object_locals(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    frame: u64,
) -> Option<Vec<Local>> {
    let code = mem.ptr_at(frame, layout.frame_code?)?;
    let nlocals = mem.read_i32(code.wrapping_add(layout.code_nlocals? as u64))?;
    let nlocals = u64::try_from(nlocals).ok().filter(|&n| n <= MAX_SLOTS)? as usize;
    let varnames = tuple_items(mem, layout, types, mem.ptr_at(code, layout.code_varnames?)?)?;
    let cellvars = tuple_items(mem, layout, types, mem.ptr_at(code, layout.code_cellvars?)?)?;
    let freevars = tuple_items(mem, layout, types, mem.ptr_at(code, layout.code_freevars?)?)?;
    let total = nlocals + cellvars.len() + freevars.len();
    let slots = read_words(mem, frame.wrapping_add(layout.frame_localsplus? as u64), total)?;
    let mut locals: Vec<Local> = Vec::with_capacity(total);
    for (i, &value) in slots.iter().enumerate() {
        let (name, kind) = if i < nlocals {
            (varnames.get(i).copied().unwrap_or(0), LocalKind::Local)
        } else if i < nlocals + cellvars.len() {
            (cellvars[i - nlocals], LocalKind::Cell)
        } else {
            (freevars[i - nlocals - cellvars.len()], LocalKind::Free)
        };
        let name = name_of(mem, layout, types, name);
        if kind == LocalKind::Local {
            locals.push(Local { name, value, kind });
            continue;
        }
        let value = cell_contents(mem, layout, value);
        // An argument captured by a closure moves into its cell and its local slot is
        // cleared: show it once, as the cell.
        match locals.iter_mut().find(|l| l.name == name && l.kind == LocalKind::Local && l.value == 0) {
            Some(arg) => {
                arg.value = value;
                arg.kind = kind;
            }
            None => locals.push(Local { name, value, kind }),
        }
    }
    Some(locals)
}

/// 3.11+: every slot of `localsplus` that is a variable (hidden comprehension variables
/// only while bound, as `locals()` shows them).
fn localsplus_locals(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    frame: u64,
) -> Option<Vec<Local>> {
    let raw_code = mem.ptr_at(frame, layout.iframe_executable?)?;
    let code = raw_code & !(layout.iframe_executable_tag_mask.unwrap_or(0) as u64);
    let n = mem.read_i32(code.wrapping_add(layout.code_nlocalsplus? as u64))?;
    let n = u64::try_from(n).ok().filter(|&n| n <= MAX_SLOTS)? as usize;
    let names = tuple_items(mem, layout, types, mem.ptr_at(code, layout.code_localsplusnames?)?)?;
    let kinds = kind_bytes(mem, layout, types, mem.ptr_at(code, layout.code_localspluskinds?)?, n)?;
    if names.len() < n {
        return None;
    }
    let slots = read_words(mem, frame.wrapping_add(layout.iframe_localsplus? as u64), n)?;
    let tag_mask = layout.iframe_localsplus_tag_mask.unwrap_or(0) as u64;
    let (cell, free) = (layout.code_fast_cell?, layout.code_fast_free?);
    let hidden = layout.code_fast_hidden.unwrap_or(0);
    let mut locals = Vec::with_capacity(n);
    for ((&name, &kind), &raw) in names.iter().zip(&kinds).zip(&slots) {
        // A stack ref whose tag says "tagged int" or "invalid" is no object pointer.
        let value = if raw & tag_mask > 1 { 0 } else { raw & !tag_mask };
        let kind = kind as u32;
        if kind & hidden != 0 && value == 0 {
            continue;
        }
        let (value, kind) = if kind & free != 0 {
            (cell_contents(mem, layout, value), LocalKind::Free)
        } else if kind & cell != 0 {
            (cell_contents(mem, layout, value), LocalKind::Cell)
        } else {
            (value, LocalKind::Local)
        };
        locals.push(Local { name: name_of(mem, layout, types, name), value, kind });
    }
    Some(locals)
}

/// The first `n` bytes of the bytes object at `obj` (`co_localspluskinds`).
fn kind_bytes(mem: &dyn Memory, layout: &Layout, types: &ObjectTypes, obj: u64, n: usize) -> Option<Vec<u8>> {
    if types.bytes != 0 && mem.ptr_at(obj, layout.object_ob_type?)? != types.bytes {
        return None;
    }
    if mem.ptr_at(obj, layout.varobject_ob_size?)? < n as u64 {
        return None;
    }
    let mut kinds = vec![0u8; n];
    mem.read(obj.wrapping_add(layout.bytes_ob_sval? as u64), &mut kinds).then_some(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::tests::{fake_for, Fake, T};

    const FRAME: u64 = 0x50_0000;
    const INT: u64 = 0x70_0000;
    const CELL: u64 = 0x61_0000;

    /// An object of `size` bytes with the given 64-bit fields.
    fn put_fields(m: &mut Fake, addr: u64, size: usize, fields: &[(Option<u32>, u64)]) {
        let mut bytes = vec![0u8; size];
        for (off, value) in fields {
            let off = off.unwrap() as usize;
            bytes[off..off + 8].copy_from_slice(&value.to_le_bytes());
        }
        m.regions.push((addr, bytes));
    }

    /// A 3.11+ frame running a code object with locals `a` (local), `c` (cell), `f` (free),
    /// `nlocalsplus` as given and `slots` in its localsplus; an int at INT and a cell at
    /// CELL holding it.
    fn target(minor: u8, nlocalsplus: u64, slots: &[u64]) -> (Fake, Layout) {
        let (mut m, l) = fake_for(minor);
        let (names, kinds, code) = (0x40_0000, 0x42_0000, 0x43_0000);
        let mut tuple = vec![(l.object_ob_type, T.tuple), (l.varobject_ob_size, 3)];
        for (i, name) in ["a", "c", "f"].iter().enumerate() {
            let at = 0x41_0000 + 0x100 * i as u64;
            m.put_ascii(&l, at, name);
            tuple.push((Some(l.tuple_ob_item.unwrap() + 8 * i as u32), at));
        }
        put_fields(&mut m, names, 64, &tuple);
        let sval = u64::from_le_bytes([0x20, 0x40, 0x80, 0, 0, 0, 0, 0]);
        put_fields(
            &mut m,
            kinds,
            64,
            &[(l.object_ob_type, T.bytes), (l.varobject_ob_size, 3), (l.bytes_ob_sval, sval)],
        );
        let code_fields = [
            (l.code_nlocalsplus, nlocalsplus),
            (l.code_localsplusnames, names),
            (l.code_localspluskinds, kinds),
        ];
        put_fields(&mut m, code, 512, &code_fields);
        let mut frame = vec![(l.iframe_executable, code | l.iframe_executable_tag_mask.unwrap_or(0) as u64)];
        for (i, &slot) in slots.iter().enumerate() {
            frame.push((Some(l.iframe_localsplus.unwrap() + 8 * i as u32), slot));
        }
        put_fields(&mut m, FRAME, 256, &frame);
        m.put_int(INT, 42);
        m.put_cstr(0x60_1000, "cell");
        m.put_type(&l, 0x60_0000, 0x60_1000, 0, 0);
        put_fields(&mut m, CELL, 32, &[(l.object_ob_type, 0x60_0000), (l.cell_ob_ref, INT)]);
        (m, l)
    }

    fn local(name: &str, value: u64, kind: LocalKind) -> Local {
        Local { name: name.into(), value, kind }
    }

    #[test]
    fn locals_cells_and_free_variables() {
        let (m, l) = target(12, 3, &[INT, CELL, 0]);
        let expected = vec![
            local("a", INT, LocalKind::Local),
            local("c", INT, LocalKind::Cell),
            local("f", 0, LocalKind::Free),
        ];
        assert_eq!(frame_locals(&m, &l, &T, FRAME), Some(expected));
        // Before MAKE_CELL has run, a cell variable holds its value itself.
        let (m, l) = target(12, 3, &[INT, INT, CELL]);
        let got = frame_locals(&m, &l, &T, FRAME).unwrap();
        assert_eq!((got[1].value, got[2].value), (INT, INT));
    }

    #[test]
    fn stack_refs_are_untagged() {
        // 3.14+: a reference-count tag on a pointer, a tagged NULL, a tagged int.
        let (m, l) = target(14, 3, &[INT | 1, 1, INT << 2 | 3]);
        let values: Vec<u64> = frame_locals(&m, &l, &T, FRAME).unwrap().iter().map(|l| l.value).collect();
        assert_eq!(values, [INT, 0, 0]);
    }

    #[test]
    fn corrupt_counts_give_none() {
        // -1, i32::MIN, more than the names and kinds, more than any code has.
        for count in [u32::MAX as u64, 0x8000_0000, 4, 1 << 20] {
            let (m, l) = target(13, count, &[INT, CELL, 0]);
            assert_eq!(frame_locals(&m, &l, &T, FRAME), None, "nlocalsplus {count:#x}");
        }
        let (m, l) = target(13, 3, &[INT, CELL, 0]);
        assert_eq!(frame_locals(&m, &l, &T, 0xdead_0000), None);
    }
}
