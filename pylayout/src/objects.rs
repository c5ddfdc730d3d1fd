//! Decoding Python objects in another process's memory into [`Value`]s, shown as
//! `repr()`-like text by their `Display` (py-locals, py-print, locals in dumps).
//!
//! Unlike the rest of the crate this allocates (strings, vectors): it is for readers, never
//! for the collector's signal handler. Every walk is bounded — by [`Limits`] (depth, items,
//! characters), by a budget of values and of bytes read per [`decode`] call, and by a cycle
//! check — so a corrupt or hostile object gives [`Value::Unreadable`] or a cut container,
//! never a hang, a panic or a huge allocation.
//!
//! Types are recognised by address ([`ObjectTypes`]), walking `tp_base` for subclasses. An
//! instance of a subclass of a builtin type decodes as the builtin's value when its type
//! inherits the builtin's `tp_repr` (so the value shown is what `repr()` prints, e.g. a
//! `class Row(list)` shows as `[1, 2]`); a subclass with its own repr (IntEnum members,
//! named tuples, OrderedDict) shows as `<TypeName object at 0x…>`.

pub(crate) mod attrs;
mod int;
mod repr;

pub use attrs::{instance_attr, str_text};

use crate::text::{for_each_char, StrRead};
use crate::{dict, Layout, Memory};
use std::cell::Cell;

/// Addresses of the builtin objects and types in the target; 0 = unknown (never matches).
#[derive(Clone, Copy, Debug, Default)]
pub struct ObjectTypes {
    /// `&_Py_NoneStruct` (an object, not a type).
    pub none: u64,
    pub bool_: u64,
    pub int: u64,
    pub float: u64,
    pub str_: u64,
    pub bytes: u64,
    pub tuple: u64,
    pub list: u64,
    pub dict: u64,
    pub set: u64,
    pub frozenset: u64,
}

impl ObjectTypes {
    /// Each field's name and the exported symbol it is found by.
    pub const SYMBOLS: [(&'static str, &'static str); 11] = [
        ("none", "_Py_NoneStruct"),
        ("bool_", "PyBool_Type"),
        ("int", "PyLong_Type"),
        ("float", "PyFloat_Type"),
        ("str_", "PyUnicode_Type"),
        ("bytes", "PyBytes_Type"),
        ("tuple", "PyTuple_Type"),
        ("list", "PyList_Type"),
        ("dict", "PyDict_Type"),
        ("set", "PySet_Type"),
        ("frozenset", "PyFrozenSet_Type"),
    ];

    /// Sets the field named `field` (a name of [`Self::SYMBOLS`]); `false` if there is none.
    pub fn set(&mut self, field: &str, addr: u64) -> bool {
        let slot = match field {
            "none" => &mut self.none,
            "bool_" => &mut self.bool_,
            "int" => &mut self.int,
            "float" => &mut self.float,
            "str_" => &mut self.str_,
            "bytes" => &mut self.bytes,
            "tuple" => &mut self.tuple,
            "list" => &mut self.list,
            "dict" => &mut self.dict,
            "set" => &mut self.set,
            "frozenset" => &mut self.frozenset,
            _ => return false,
        };
        *slot = addr;
        true
    }
}

/// How much of an object graph [`decode`] shows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Containers nested deeper than this show as `...`.
    pub depth: usize,
    /// Items shown per container; the rest are counted.
    pub items: usize,
    /// Characters (bytes for `bytes`) shown per string.
    pub chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { depth: 3, items: 32, chars: 1024 }
    }
}

/// A decoded object. `more`: items of a cut container that are not shown.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// Decimal text, any size.
    Int(String),
    Float(f64),
    /// Lone surrogates (not representable in a `String`) are shown as U+FFFD.
    Str {
        text: String,
        truncated: bool,
    },
    Bytes {
        bytes: Vec<u8>,
        truncated: bool,
    },
    Tuple {
        items: Vec<Value>,
        more: u64,
    },
    List {
        items: Vec<Value>,
        more: u64,
    },
    Dict {
        items: Vec<(Value, Value)>,
        more: u64,
    },
    Set {
        items: Vec<Value>,
        more: u64,
    },
    FrozenSet {
        items: Vec<Value>,
        more: u64,
    },
    /// Any other object: `<TypeName object at 0x…>`.
    Other {
        type_name: Option<String>,
        addr: u64,
    },
    /// A container beyond [`Limits::depth`], one being shown already (a cycle), or past the
    /// decoder's budget: `...`.
    TooDeep {
        addr: u64,
    },
    Unreadable {
        addr: u64,
        why: &'static str,
    },
}

/// Values decoded per [`decode`] call at most (bounds time and output whatever the limits).
const MAX_VALUES: usize = 20_000;
/// Bytes read per [`decode`] call at most.
const MAX_READ_BYTES: u64 = 16 << 20;
/// `tp_base` links followed to find a builtin base type.
const MAX_BASES: usize = 64;
/// Bytes of a type's `tp_name` read at most.
const MAX_TYPE_NAME: usize = 200;
/// Item pointers of a tuple or list read per memory read.
const ITEM_CHUNK: usize = 256;

/// Decodes the object at `addr` within `limits`; never fails (see [`Value::Unreadable`]).
pub fn decode(mem: &dyn Memory, layout: &Layout, types: &ObjectTypes, addr: u64, limits: &Limits) -> Value {
    let mem = Budgeted { mem, left: Cell::new(MAX_READ_BYTES) };
    let mut d = Decoder { mem: &mem, layout, types, limits, values: 0, open: Vec::new() };
    d.value(addr, 0)
}

/// A [`Memory`] that refuses reads once a byte budget is spent.
struct Budgeted<'a> {
    mem: &'a dyn Memory,
    left: Cell<u64>,
}

impl Memory for Budgeted<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let n = buf.len() as u64;
        if n > self.left.get() {
            self.left.set(0);
            return false;
        }
        self.left.set(self.left.get() - n);
        self.mem.read(addr, buf)
    }
}

/// Which builtin an object's type is (or inherits its repr from).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    Tuple,
    List,
    Dict,
    Set,
    FrozenSet,
}

struct Decoder<'a> {
    mem: &'a Budgeted<'a>,
    layout: &'a Layout,
    types: &'a ObjectTypes,
    limits: &'a Limits,
    /// Values decoded so far.
    values: usize,
    /// Containers being decoded (outermost first): meeting one again is a cycle.
    open: Vec<u64>,
}

impl Decoder<'_> {
    fn value(&mut self, addr: u64, depth: usize) -> Value {
        self.values += 1;
        if addr == 0 {
            return Value::Unreadable { addr, why: "NULL pointer" };
        }
        if addr == self.types.none {
            return Value::None;
        }
        let Some(ob_type) = self.layout.object_ob_type.and_then(|off| self.mem.ptr_at(addr, off)) else {
            return self.unreadable(addr, "object not readable");
        };
        if ob_type == 0 {
            return Value::Unreadable { addr, why: "object has no type" };
        }
        let Some(kind) = self.kind_of(ob_type) else {
            return self.other(addr, ob_type);
        };
        let container = matches!(kind, Kind::Tuple | Kind::List | Kind::Dict | Kind::Set | Kind::FrozenSet);
        if container && (depth >= self.limits.depth || self.open.contains(&addr)) {
            return Value::TooDeep { addr };
        }
        let decoded = match kind {
            Kind::Bool => int::digits(self.mem, self.layout, addr).map(|d| Value::Bool(!d.is_zero())),
            Kind::Int => int::digits(self.mem, self.layout, addr).map(|d| Value::Int(d.to_decimal())),
            Kind::Float => self.float(addr),
            Kind::Str => self.str(addr, ob_type),
            Kind::Bytes => self.bytes(addr),
            _ => {
                self.open.push(addr);
                let v = self.container(kind, addr, depth + 1);
                self.open.pop();
                v
            }
        };
        decoded.unwrap_or_else(|why| self.unreadable(addr, why))
    }

    /// Unreadable, saying so when it is the read budget that ran out.
    fn unreadable(&self, addr: u64, why: &'static str) -> Value {
        let why = if self.mem.left.get() == 0 { "read budget exhausted" } else { why };
        Value::Unreadable { addr, why }
    }

    fn exhausted(&self) -> bool {
        self.values >= MAX_VALUES || self.mem.left.get() == 0
    }

    /// The builtin kind of objects of type `ob_type`: the type itself, or the first builtin
    /// base along `tp_base` when `ob_type` inherits that base's repr.
    fn kind_of(&self, ob_type: u64) -> Option<Kind> {
        let t = self.types;
        let table = [
            (t.bool_, Kind::Bool),
            (t.int, Kind::Int),
            (t.float, Kind::Float),
            (t.str_, Kind::Str),
            (t.bytes, Kind::Bytes),
            (t.tuple, Kind::Tuple),
            (t.list, Kind::List),
            (t.dict, Kind::Dict),
            (t.set, Kind::Set),
            (t.frozenset, Kind::FrozenSet),
        ];
        let find = |ty: u64| table.iter().find(|(addr, _)| *addr != 0 && *addr == ty).map(|&(_, k)| k);
        if let Some(kind) = find(ob_type) {
            return Some(kind);
        }
        let base_off = self.layout.type_tp_base?;
        let mut ty = ob_type;
        for _ in 0..MAX_BASES {
            ty = self.mem.ptr_at(ty, base_off).filter(|&b| b != 0)?;
            if let Some(kind) = find(ty) {
                let repr_off = self.layout.type_tp_repr?;
                let own = self.mem.ptr_at(ob_type, repr_off)?;
                return (own == self.mem.ptr_at(ty, repr_off)?).then_some(kind);
            }
        }
        None
    }

    /// An object of a type that is not decoded: `<TypeName object at 0x…>` with the type's
    /// `tp_name` (a C string, lossily decoded; None if it does not read), unreadable when
    /// the type object itself is (a garbage pointer, most likely).
    fn other(&self, addr: u64, ob_type: u64) -> Value {
        let Some(name_off) = self.layout.type_tp_name else {
            return Value::Other { type_name: None, addr };
        };
        match self.mem.ptr_at(ob_type, name_off) {
            Some(name) => Value::Other { type_name: read_c_string(self.mem, name, MAX_TYPE_NAME), addr },
            None => self.unreadable(addr, "its type is not readable"),
        }
    }

    fn float(&self, addr: u64) -> Result<Value, &'static str> {
        let off = self.layout.float_ob_fval.ok_or("no float layout")?;
        let bits = self.mem.read_u64(addr.wrapping_add(off as u64)).ok_or("float not readable")?;
        Ok(Value::Float(f64::from_bits(bits)))
    }

    fn str(&mut self, addr: u64, ob_type: u64) -> Result<Value, &'static str> {
        let mut text = String::new();
        let mut count = 0usize;
        let mut sink = |c: u32| {
            text.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
            count += 1;
        };
        // for_each_char checks the object's type against the one given: pass the object's own.
        match for_each_char(self.mem, self.layout, ob_type, addr, self.limits.chars, &mut sink) {
            StrRead::Done { truncated } => {
                self.values += count / 64;
                Ok(Value::Str { text, truncated })
            }
            StrRead::NotStr => Err("str header not readable"),
            StrRead::Unreadable => Err("str characters not readable"),
        }
    }

    fn bytes(&mut self, addr: u64) -> Result<Value, &'static str> {
        let (size_off, data_off) =
            self.layout.varobject_ob_size.zip(self.layout.bytes_ob_sval).ok_or("no bytes layout")?;
        let len = self.size(addr, size_off)?;
        let shown = len.min(self.limits.chars as u64) as usize;
        let mut bytes = vec![0u8; shown];
        if !self.mem.read(addr.wrapping_add(data_off as u64), &mut bytes) {
            return Err("bytes not readable");
        }
        self.values += shown / 64;
        Ok(Value::Bytes { bytes, truncated: len > shown as u64 })
    }

    /// A non-negative `Py_ssize_t` field (a length), or an error for corrupt ones.
    fn size(&self, addr: u64, off: u32) -> Result<u64, &'static str> {
        let size = self.mem.ptr_at(addr, off).ok_or("size not readable")?;
        if size > isize::MAX as u64 {
            return Err("negative size (corrupt object)");
        }
        Ok(size)
    }

    fn container(&mut self, kind: Kind, addr: u64, depth: usize) -> Result<Value, &'static str> {
        match kind {
            Kind::Tuple | Kind::List => self.sequence(kind, addr, depth),
            Kind::Dict => self.dict(addr, depth),
            _ => self.set(kind, addr, depth),
        }
    }

    fn sequence(&mut self, kind: Kind, addr: u64, depth: usize) -> Result<Value, &'static str> {
        let l = self.layout;
        let len = self.size(addr, l.varobject_ob_size.ok_or("no sequence layout")?)?;
        let array = if kind == Kind::Tuple {
            addr.wrapping_add(l.tuple_ob_item.ok_or("no tuple layout")? as u64)
        } else {
            let ptr = self.mem.ptr_at(addr, l.list_ob_item.ok_or("no list layout")?);
            ptr.ok_or("list not readable")?
        };
        let wanted = len.min(self.limits.items as u64) as usize;
        let mut items = Vec::with_capacity(wanted);
        let mut ptrs = [0u8; ITEM_CHUNK * 8];
        while items.len() < wanted && !self.exhausted() {
            let n = (wanted - items.len()).min(ITEM_CHUNK);
            let at = addr_of_item(array, items.len());
            // A chunk that does not read whole is read item by item up to the hole.
            let n = if self.mem.read(at, &mut ptrs[..n * 8]) {
                n
            } else {
                (0..n)
                    .take_while(|&i| self.mem.read(addr_of_item(at, i), &mut ptrs[i * 8..i * 8 + 8]))
                    .count()
            };
            if n == 0 {
                if items.is_empty() {
                    return Err("items not readable");
                }
                break;
            }
            for p in ptrs[..n * 8].chunks_exact(8) {
                let item = u64::from_le_bytes(p.try_into().unwrap_or_default());
                items.push(self.value(item, depth));
                if self.exhausted() {
                    break;
                }
            }
        }
        let more = len - items.len() as u64;
        Ok(if kind == Kind::Tuple { Value::Tuple { items, more } } else { Value::List { items, more } })
    }

    fn dict(&mut self, addr: u64, depth: usize) -> Result<Value, &'static str> {
        let l = self.layout;
        if self.mem.ptr_at(addr, l.dict_ma_values.ok_or("no dict layout")?).is_none() {
            return Err("dict not readable");
        }
        let used = l.dict_ma_used.and_then(|off| self.size(addr, off).ok());
        let mut pairs = Vec::new();
        let mut cut = false;
        let limit = self.limits.items;
        let ok = dict::for_each_item(self.mem, l, addr, &mut |k, v| {
            if pairs.len() >= limit || self.values >= MAX_VALUES {
                cut = true;
                return false;
            }
            pairs.push((k, v));
            true
        });
        if !ok && pairs.is_empty() {
            return Err("dict table not readable");
        }
        let mut items = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            if self.exhausted() {
                break;
            }
            items.push((self.value(k, depth), self.value(v, depth)));
        }
        let shown = items.len() as u64;
        let more = match used {
            Some(used) => used.saturating_sub(shown),
            None => u64::from(cut),
        };
        Ok(Value::Dict { items, more })
    }

    fn set(&mut self, kind: Kind, addr: u64, depth: usize) -> Result<Value, &'static str> {
        let used = self.layout.set_used.and_then(|off| self.size(addr, off).ok());
        let mut keys = Vec::new();
        let mut cut = false;
        let limit = self.limits.items;
        let ok = dict::for_each_set_entry(self.mem, self.layout, addr, &mut |key, hash| {
            // Deleted slots hold a dummy key with hash -1, which no real key has.
            if hash == -1 {
                return true;
            }
            if keys.len() >= limit {
                cut = true;
                return false;
            }
            keys.push(key);
            true
        });
        if !ok && keys.is_empty() {
            return Err("set table not readable");
        }
        let mut items = Vec::with_capacity(keys.len());
        for key in keys {
            if self.exhausted() {
                break;
            }
            items.push(self.value(key, depth));
        }
        let shown = items.len() as u64;
        let more = match used {
            Some(used) => used.saturating_sub(shown),
            None => u64::from(cut),
        };
        Ok(if kind == Kind::Set { Value::Set { items, more } } else { Value::FrozenSet { items, more } })
    }
}

fn addr_of_item(array: u64, index: usize) -> u64 {
    array.wrapping_add(index as u64 * 8)
}

/// A NUL-terminated string of at most `max` bytes at `addr`, read in small pieces that
/// never cross a page (the next page may be unmapped); a piece that does not read whole (a
/// dump's range may end with the string) is read byte by byte. `None` if unreadable or longer.
pub(crate) fn read_c_string(mem: &dyn Memory, addr: u64, max: usize) -> Option<String> {
    const PIECE: usize = 16;
    let mut out = Vec::new();
    while out.len() < max {
        let mut buf = [0u8; PIECE];
        let at = addr.checked_add(out.len() as u64)?;
        let want = PIECE.min((4096 - (at % 4096)) as usize);
        let got = if mem.read(at, &mut buf[..want]) {
            want
        } else {
            (0..want).take_while(|&i| mem.read(at.wrapping_add(i as u64), &mut buf[i..i + 1])).count()
        };
        if let Some(end) = buf[..got].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        if got < want {
            return None; // unreadable before the end of the string
        }
        out.extend_from_slice(&buf[..got]);
    }
    None
}

#[cfg(test)]
pub(crate) mod tests;
