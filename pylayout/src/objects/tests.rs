//! The renderer against Python's own `repr()` text, and the decoder's bounds on a fake
//! memory holding corrupt objects.

use super::repr::float_repr;
use super::*;
use crate::Layout;

fn s(text: &str) -> Value {
    Value::Str { text: text.into(), truncated: false }
}

fn int(v: i64) -> Value {
    Value::Int(v.to_string())
}

#[test]
fn str_repr_escapes_like_python() {
    // Expected texts are Python 3's repr() of the same strings.
    let cases: &[(&str, &str)] = &[
        ("hello", "'hello'"),
        ("it's", "\"it's\""),
        ("say \"hi\"", "'say \"hi\"'"),
        ("both ' and \"", "'both \\' and \"'"),
        ("a\nb\tc\rd\\", "'a\\nb\\tc\\rd\\\\'"),
        ("\0\x01\x1f\x7f", "'\\x00\\x01\\x1f\\x7f'"),
        ("\u{80}\u{a0}\u{ad}é\u{ff}", "'\\x80\\xa0\\xadé\u{ff}'"),
        ("Ω日本\u{200b}\u{2028}\u{feff}", "'Ω日本\\u200b\\u2028\\ufeff'"),
        ("😀\u{e0001}\u{10ffff}", "'😀\\U000e0001\\U0010ffff'"),
        ("", "''"),
    ];
    for (text, expected) in cases {
        assert_eq!(s(text).to_string(), *expected, "repr of {text:?}");
    }
    assert_eq!(Value::Str { text: "abc".into(), truncated: true }.to_string(), "'abc'...");
}

#[test]
fn bytes_repr_escapes_like_python() {
    let b = |bytes: &[u8]| Value::Bytes { bytes: bytes.to_vec(), truncated: false }.to_string();
    assert_eq!(b(b"a\x00b"), "b'a\\x00b'");
    assert_eq!(b(b"it's"), "b\"it's\"");
    assert_eq!(b(b"'\""), "b'\\'\"'");
    assert_eq!(b(b"\t\n\r\\\x7f\x80\xff~ "), "b'\\t\\n\\r\\\\\\x7f\\x80\\xff~ '");
    assert_eq!(b(b""), "b''");
}

#[test]
fn float_repr_is_pythons() {
    let cases: &[(f64, &str)] = &[
        (0.1, "0.1"),
        (1.0, "1.0"),
        (-2.5, "-2.5"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (123456789012345678.0, "1.2345678901234568e+17"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-300, "1.5e-300"),
        (std::f64::consts::PI, "3.141592653589793"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (f64::NAN, "nan"),
        (f64::MAX, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
    ];
    for (x, expected) in cases {
        assert_eq!(float_repr(*x), *expected, "repr of {x:e}");
    }
}

#[test]
fn containers_render_like_python() {
    let tuple = |items: Vec<Value>, more| Value::Tuple { items, more };
    assert_eq!(tuple(vec![], 0).to_string(), "()");
    assert_eq!(tuple(vec![int(1)], 0).to_string(), "(1,)");
    assert_eq!(tuple(vec![int(1), s("a")], 0).to_string(), "(1, 'a')");
    assert_eq!(tuple(vec![int(1)], 4).to_string(), "(1, ...(4 more))");
    let list = Value::List { items: vec![int(1), Value::None, Value::Bool(true)], more: 29 };
    assert_eq!(list.to_string(), "[1, None, True, ...(29 more)]");
    assert_eq!(Value::List { items: vec![], more: 3 }.to_string(), "[...(3 more)]");
    let inner = Value::List { items: vec![int(2), int(3)], more: 0 };
    let d = Value::Dict { items: vec![(int(1), inner), (s("k"), Value::TooDeep { addr: 8 })], more: 0 };
    assert_eq!(d.to_string(), "{1: [2, 3], 'k': ...}");
    assert_eq!(Value::Dict { items: vec![], more: 0 }.to_string(), "{}");
    assert_eq!(Value::Set { items: vec![], more: 0 }.to_string(), "set()");
    assert_eq!(Value::Set { items: vec![int(1), int(2)], more: 0 }.to_string(), "{1, 2}");
    assert_eq!(Value::FrozenSet { items: vec![], more: 0 }.to_string(), "frozenset()");
    assert_eq!(
        Value::FrozenSet { items: vec![s("x")], more: 2 }.to_string(),
        "frozenset({'x', ...(2 more)})"
    );
    let other = Value::Other { type_name: Some("Foo".into()), addr: 0x7f00_1234 };
    assert_eq!(other.to_string(), "<Foo object at 0x7f001234>");
    let bad = Value::Unreadable { addr: 0x10, why: "object not readable" };
    assert_eq!(bad.to_string(), "<unreadable object at 0x10: object not readable>");
}

#[test]
fn symbols_name_every_field() {
    let mut types = ObjectTypes::default();
    for (i, (field, symbol)) in ObjectTypes::SYMBOLS.iter().enumerate() {
        assert!(symbol.starts_with("Py") || symbol.starts_with("_Py"));
        assert!(types.set(field, 0x1000 + i as u64), "{field}");
    }
    assert!(!types.set("code", 1));
    assert_eq!((types.none, types.frozenset), (0x1000, 0x100a));
}

/// A sparse fake address space: objects are written at chosen addresses.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) regions: Vec<(u64, Vec<u8>)>,
}

impl Memory for Fake {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        // The latest region written wins where regions overlap.
        self.regions.iter().rev().any(|(base, bytes)| {
            let Some(off) = addr.checked_sub(*base) else { return false };
            let Some(src) = bytes.get(off as usize..off as usize + buf.len()) else { return false };
            buf.copy_from_slice(src);
            true
        })
    }
}

/// Builtin types live at these addresses in the fake target.
pub(crate) const T: ObjectTypes = ObjectTypes {
    none: 0x100,
    bool_: 0x1_0000,
    int: 0x1_1000,
    float: 0x1_2000,
    str_: 0x1_3000,
    bytes: 0x1_4000,
    tuple: 0x1_5000,
    list: 0x1_6000,
    dict: 0x1_7000,
    set: 0x1_8000,
    frozenset: 0x1_9000,
};

impl Fake {
    pub(crate) fn put(&mut self, addr: u64, words: &[u64]) {
        self.regions.push((addr, words.iter().flat_map(|w| w.to_le_bytes()).collect()));
    }
    /// A type object: its tp_name, tp_base and tp_repr.
    pub(crate) fn put_type(&mut self, l: &Layout, addr: u64, name_at: u64, base: u64, repr: u64) {
        let mut words = vec![0u64; 64];
        words[(l.type_tp_name.unwrap() / 8) as usize] = name_at;
        words[(l.type_tp_base.unwrap() / 8) as usize] = base;
        words[(l.type_tp_repr.unwrap() / 8) as usize] = repr;
        self.put(addr, &words);
    }
    pub(crate) fn put_cstr(&mut self, addr: u64, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        self.regions.push((addr, bytes));
    }
    /// A 3.12+ int (compact or not) with 30-bit digits.
    pub(crate) fn put_int(&mut self, addr: u64, value: i64) {
        let mag = value.unsigned_abs();
        let mut digits: Vec<u32> = (0..3).map(|i| ((mag >> (30 * i)) & 0x3fff_ffff) as u32).collect();
        while digits.last() == Some(&0) {
            digits.pop();
        }
        let sign = if value < 0 {
            2
        } else if value == 0 {
            1
        } else {
            0
        };
        let mut bytes: Vec<u8> =
            [1, T.int, ((digits.len() as u64) << 3) | sign].iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.extend(digits.iter().flat_map(|d| d.to_le_bytes()));
        bytes.extend([0u8; 4]); // ob_digit[0] always exists
        self.regions.push((addr, bytes));
    }
    /// A compact ASCII str.
    pub(crate) fn put_ascii(&mut self, l: &Layout, addr: u64, text: &str) {
        let state = l.unicode_state_compact_mask.unwrap() | l.unicode_state_ascii_mask.unwrap();
        let kind1 = 1 << l.unicode_state_kind_mask.unwrap().trailing_zeros();
        let mut bytes = vec![0u8; l.unicode_ascii_size.unwrap() as usize];
        let mut set = |off: u32, value: u64| {
            bytes[off as usize..off as usize + 8].copy_from_slice(&value.to_le_bytes())
        };
        set(l.object_ob_type.unwrap(), T.str_);
        set(l.unicode_length.unwrap(), text.len() as u64);
        set(l.unicode_state.unwrap(), (state | kind1) as u64);
        bytes.extend(text.as_bytes());
        bytes.push(0);
        self.regions.push((addr, bytes));
    }
    /// A list object whose items array is at `items_at`.
    fn put_list(&mut self, addr: u64, len: u64, items_at: u64, items: &[u64]) {
        self.put(addr, &[1, T.list, len, items_at]);
        self.put(items_at, items);
    }
}

fn fake() -> (Fake, Layout) {
    fake_for(12)
}

/// A fake target of CPython 3.`minor` holding the builtin types.
pub(crate) fn fake_for(minor: u8) -> (Fake, Layout) {
    let l = Layout::for_version(3, minor).unwrap();
    let mut m = Fake::default();
    for (i, name) in ["bool", "int", "float", "str", "bytes", "tuple", "list", "dict", "set", "frozenset"]
        .iter()
        .enumerate()
    {
        let ty = 0x1_0000 + 0x1000 * i as u64;
        m.put_cstr(0x9000 + 0x20 * i as u64, name);
        let base = if *name == "bool" { T.int } else { 0 };
        m.put_type(&l, ty, 0x9000 + 0x20 * i as u64, base, 0xbeef_0000 + i as u64);
    }
    (m, l)
}

fn show(m: &Fake, l: &Layout, addr: u64, limits: &Limits) -> String {
    decode(m, l, &T, addr, limits).to_string()
}

#[test]
fn ints_of_any_sign_and_size() {
    let (mut m, l) = fake();
    for (i, v) in [0i64, 1, -1, 1 << 30, -(1 << 40) - 7, 999_999_999_999].iter().enumerate() {
        let at = 0x10_0000 + 0x100 * i as u64;
        m.put_int(at, *v);
        assert_eq!(show(&m, &l, at, &Limits::default()), v.to_string());
    }
    // A corrupt digit count: more digits than anyone would read, or than are mapped.
    m.put(0x11_0000, &[1, T.int, (1 << 40) << 3, 5]);
    assert!(matches!(decode(&m, &l, &T, 0x11_0000, &Limits::default()), Value::Unreadable { .. }));
    m.put(0x11_1000, &[1, T.int, 1000 << 3, 5]);
    assert!(matches!(decode(&m, &l, &T, 0x11_1000, &Limits::default()), Value::Unreadable { .. }));
    // A digit with bits above the 30-bit shift, and an impossible sign.
    m.put(0x11_2000, &[1, T.int, 1 << 3, 1 << 31]);
    assert!(matches!(decode(&m, &l, &T, 0x11_2000, &Limits::default()), Value::Unreadable { .. }));
    m.put(0x11_3000, &[1, T.int, (1 << 3) | 3, 1]);
    assert!(matches!(decode(&m, &l, &T, 0x11_3000, &Limits::default()), Value::Unreadable { .. }));
}

#[test]
fn cyclic_list_is_cut() {
    let (mut m, l) = fake();
    m.put_int(0x20_0000, 5);
    // l = [5, l]
    m.put_list(0x21_0000, 2, 0x21_1000, &[0x20_0000, 0x21_0000]);
    assert_eq!(show(&m, &l, 0x21_0000, &Limits::default()), "[5, ...]");
    // a = [b], b = [a]: each shows the other once, then the cycle.
    m.put_list(0x22_0000, 1, 0x22_1000, &[0x23_0000]);
    m.put_list(0x23_0000, 1, 0x23_1000, &[0x22_0000]);
    assert_eq!(show(&m, &l, 0x22_0000, &Limits::default()), "[[...]]");
}

#[test]
fn huge_and_negative_sizes_stay_bounded() {
    let (mut m, l) = fake();
    m.put_int(0x30_0000, 7);
    let items = [0x30_0000u64; 4];
    // ob_size says 2**60 items but only four pointers are mapped.
    m.put_list(0x31_0000, 1 << 60, 0x31_1000, &items);
    let limits = Limits { items: 10, ..Limits::default() };
    let more = (1u64 << 60) - 4;
    assert_eq!(show(&m, &l, 0x31_0000, &limits), format!("[7, 7, 7, 7, ...({more} more)]"));
    // A negative size.
    m.put_list(0x32_0000, u64::MAX, 0x32_1000, &items);
    assert!(matches!(decode(&m, &l, &T, 0x32_0000, &limits), Value::Unreadable { .. }));
    // bytes claiming an exabyte, of which two are mapped: only `chars` are read.
    m.put(0x33_0000, &[1, T.bytes, 1 << 60, 0, 0x6261]);
    let v = decode(&m, &l, &T, 0x33_0000, &Limits { chars: 2, ..Limits::default() });
    assert_eq!(v.to_string(), "b'ab'...");
}

#[test]
fn unreadable_and_odd_types() {
    let (mut m, l) = fake();
    // The type pointer leads nowhere.
    m.put(0x40_0000, &[1, 0xdead_0000]);
    let v = decode(&m, &l, &T, 0x40_0000, &Limits::default());
    assert_eq!(v, Value::Unreadable { addr: 0x40_0000, why: "its type is not readable" });
    // No type at all, no object at all, NULL.
    m.put(0x40_1000, &[1, 0]);
    assert!(matches!(decode(&m, &l, &T, 0x40_1000, &Limits::default()), Value::Unreadable { .. }));
    assert!(matches!(decode(&m, &l, &T, 0x7777_0000, &Limits::default()), Value::Unreadable { .. }));
    assert!(matches!(decode(&m, &l, &T, 0, &Limits::default()), Value::Unreadable { .. }));
    // A user class, and a type whose tp_base is itself (a cycle in the base chain).
    m.put_cstr(0x41_0000, "Foo");
    m.put_type(&l, 0x41_1000, 0x41_0000, 0x41_1000, 0x55);
    m.put(0x41_2000, &[1, 0x41_1000]);
    assert_eq!(show(&m, &l, 0x41_2000, &Limits::default()), "<Foo object at 0x412000>");
    // A type name that never ends.
    m.regions.push((0x42_0000, vec![b'x'; 4096]));
    m.put_type(&l, 0x42_1000, 0x42_0000, 0, 0x55);
    m.put(0x42_2000, &[1, 0x42_1000]);
    assert_eq!(show(&m, &l, 0x42_2000, &Limits::default()), "<object at 0x422000>");
    // None, and True (a bool is an int underneath).
    assert_eq!(show(&m, &l, T.none, &Limits::default()), "None");
    m.put(0x43_0000, &[1, T.bool_, 1 << 3, 1]);
    assert_eq!(show(&m, &l, 0x43_0000, &Limits::default()), "True");
}

#[test]
fn subclasses_show_their_base_value_only_with_its_repr() {
    let (mut m, l) = fake();
    m.put_int(0x50_0000, 3);
    m.put_cstr(0x50_1000, "Row");
    let list_repr = 0xbeef_0000 + 6;
    m.put_type(&l, 0x50_2000, 0x50_1000, T.list, list_repr); // class Row(list): inherits repr
    m.put_type(&l, 0x50_3000, 0x50_1000, T.list, 0x1234); // with its own __repr__
    m.put(0x50_4000, &[1, 0x50_2000, 1, 0x50_5000]);
    m.put(0x50_5000, &[0x50_0000]);
    assert_eq!(show(&m, &l, 0x50_4000, &Limits::default()), "[3]");
    m.put(0x50_6000, &[1, 0x50_3000, 1, 0x50_5000]);
    assert_eq!(show(&m, &l, 0x50_6000, &Limits::default()), "<Row object at 0x506000>");
}

#[test]
fn depth_and_budget_bound_the_walk() {
    let (mut m, l) = fake();
    m.put_int(0x60_0000, 1);
    // [[[[[1]]]]]: five nested lists.
    for i in 0..5u64 {
        let next = if i == 4 { 0x60_0000 } else { 0x61_0000 + (i + 1) * 0x1000 };
        m.put_list(0x61_0000 + i * 0x1000, 1, 0x62_0000 + i * 0x1000, &[next]);
    }
    assert_eq!(show(&m, &l, 0x61_0000, &Limits::default()), "[[[...]]]");
    assert_eq!(show(&m, &l, 0x61_0000, &Limits { depth: 10, ..Limits::default() }), "[[[[[1]]]]]");
    // Ten distinct lists, each holding the next one 4000 times: 4000**10 values unbounded.
    for i in 0..10u64 {
        let next = if i == 9 { 0x60_0000 } else { 0x70_0000 + (i + 1) * 0x10_0000 };
        m.put_list(0x70_0000 + i * 0x10_0000, 4000, 0x70_8000 + i * 0x10_0000, &[next; 4000]);
    }
    let huge = Limits { depth: 100, items: 100_000, chars: 1 << 20 };
    let text = show(&m, &l, 0x70_0000, &huge);
    assert!(text.len() < 1 << 20, "{} bytes", text.len());
    assert!(text.contains("more)"));
}

#[test]
fn strings_are_cut_at_the_limit() {
    let (mut m, l) = fake();
    m.put_ascii(&l, 0x80_0000, "abcdefgh");
    let v = decode(&m, &l, &T, 0x80_0000, &Limits { chars: 5, ..Limits::default() });
    assert_eq!(v, Value::Str { text: "abcde".into(), truncated: true });
    // A length of 2**40 characters: still only `chars` are read.
    m.put(0x80_0000 + l.unicode_length.unwrap() as u64, &[1 << 40]);
    let v = decode(&m, &l, &T, 0x80_0000, &Limits { chars: 8, ..Limits::default() });
    assert_eq!(v, Value::Str { text: "abcdefgh".into(), truncated: true });
}

/// A unicode-keyed keys object at `keys` (3.11+ layout): 8 index bytes, then `(key, value)`
/// entries; `kind` 1 = combined, 2 = split (the values live apart).
fn put_unicode_keys(m: &mut Fake, l: &Layout, keys: u64, kind: u8, entries: &[(u64, u64)]) {
    let start = l.dictkeys_indices.unwrap() as usize + 8;
    let mut bytes = vec![0u8; start + entries.len() * 16];
    bytes[l.dictkeys_log2_index_bytes.unwrap() as usize] = 3;
    bytes[l.dictkeys_kind.unwrap() as usize] = kind;
    bytes[l.dictkeys_nentries.unwrap() as usize] = entries.len() as u8;
    for (i, (k, v)) in entries.iter().enumerate() {
        bytes[start + 16 * i..start + 16 * i + 8].copy_from_slice(&k.to_le_bytes());
        bytes[start + 16 * i + 8..start + 16 * i + 16].copy_from_slice(&v.to_le_bytes());
    }
    m.regions.push((keys, bytes));
}

/// A split table's values at `at` (a `PyDictValues`), with its insertion order (3.11+)
/// where the version keeps it; 3.13+ values are marked valid.
fn put_values(m: &mut Fake, l: &Layout, at: u64, values: &[u64], order: &[u8]) {
    let array = at + l.dictvalues_values.unwrap_or(0) as u64;
    m.put(array, values);
    if let (Some(cap), Some(size)) = (l.dictvalues_capacity, l.dictvalues_size) {
        let mut head = vec![0u8; (array - at) as usize];
        head[cap as usize] = values.len() as u8;
        head[size as usize] = order.len() as u8;
        head[l.dictvalues_valid.unwrap() as usize] = 1;
        m.regions.push((at, head));
        m.regions.push((array + 8 * values.len() as u64, order.to_vec()));
    } else if let Some(size_before) = l.dictvalues_order_size_before {
        // The indices go down from just below the count: one region, lowest byte first.
        assert_eq!(l.dictvalues_order_before, Some(size_before + 1));
        let mut bytes: Vec<u8> = order.iter().rev().copied().collect();
        bytes.push(order.len() as u8);
        m.regions.push((at - size_before as u64 - order.len() as u64, bytes));
    }
}

/// A dict object at `dict` over `keys` (and a split table's `values`).
fn put_dict(m: &mut Fake, l: &Layout, dict: u64, used: u64, keys: u64, values: u64) {
    let mut words = vec![0u64; 6];
    words[1] = T.dict;
    words[(l.dict_ma_used.unwrap() / 8) as usize] = used;
    words[(l.dict_ma_keys.unwrap() / 8) as usize] = keys;
    words[(l.dict_ma_values.unwrap() / 8) as usize] = values;
    m.put(dict, &words);
}

#[test]
fn dicts_combined_and_split() {
    let (mut m, l) = fake();
    let (dict, keys, a, one, b, two) = (0x90_0000, 0x91_0000, 0x92_0000, 0x93_0000, 0x94_0000, 0x95_0000);
    m.put_ascii(&l, a, "a");
    m.put_ascii(&l, b, "b'");
    m.put_int(one, 1);
    m.put_int(two, -2);
    // A combined table, one entry deleted.
    put_unicode_keys(&mut m, &l, keys, 1, &[(a, one), (0, 0), (b, two)]);
    put_dict(&mut m, &l, dict, 2, keys, 0);
    assert_eq!(show(&m, &l, dict, &Limits::default()), "{'a': 1, \"b'\": -2}");
    let one_item = Limits { items: 1, ..Limits::default() };
    assert_eq!(show(&m, &l, dict, &one_item), "{'a': 1, ...(1 more)}");
    // A split table (an instance's __dict__): shared keys, the values in their own array
    // (the entries' own values are NULL), a NULL value for an attribute this one lacks,
    // shown in this instance's insertion order (b was set before a).
    let (split_keys, values) = (0x97_0000, 0x96_0000);
    put_unicode_keys(&mut m, &l, split_keys, 2, &[(a, 0), (0x98_0000, 0), (b, 0)]);
    put_values(&mut m, &l, values, &[one, 0, two], &[2, 0]);
    put_dict(&mut m, &l, dict, 2, split_keys, values);
    assert_eq!(show(&m, &l, dict, &Limits::default()), "{\"b'\": -2, 'a': 1}");
    // A corrupt order (an index past the entries) skips that index.
    put_values(&mut m, &l, values, &[one, 0, two], &[9, 0]);
    assert_eq!(show(&m, &l, dict, &Limits::default()), "{'a': 1, ...(1 more)}");
    // Unreadable values: the dict says so rather than guessing.
    put_dict(&mut m, &l, dict, 2, split_keys, 0xdead_0000);
    assert!(matches!(decode(&m, &l, &T, dict, &Limits::default()), Value::Unreadable { .. }));
}

/// A heap type at `addr` with the given flags, basic size, dict offset and cached keys.
fn put_heap_type(
    m: &mut Fake,
    l: &Layout,
    addr: u64,
    flags: u64,
    basicsize: u64,
    dictoffset: u64,
    keys: u64,
) {
    let mut words = vec![0u64; 160];
    words[(l.type_tp_flags.unwrap() / 8) as usize] = flags;
    words[(l.type_tp_basicsize.unwrap() / 8) as usize] = basicsize;
    words[(l.type_tp_dictoffset.unwrap() / 8) as usize] = dictoffset;
    words[(l.heaptype_ht_cached_keys.unwrap() / 8) as usize] = keys;
    m.put(addr, &words);
}

#[test]
fn instance_attributes_on_every_layout() {
    const TYPE: u64 = 0xa0_0000;
    const KEYS: u64 = 0xa1_0000;
    const OBJ: u64 = 0xa2_1000; // room before it for the pre-header
    const VALUES: u64 = 0xa3_0000;
    const DICT: u64 = 0xa4_0000;
    const NAME: u64 = 0xa5_0000;
    const OTHER: u64 = 0xa5_1000;
    const NAME_VALUE: u64 = 0xa6_0000;
    const OTHER_VALUE: u64 = 0xa7_0000;
    for minor in 11..=15 {
        let (mut m, l) = fake_for(minor);
        m.put_ascii(&l, NAME, "_name");
        m.put_ascii(&l, OTHER, "_ident");
        put_unicode_keys(&mut m, &l, KEYS, 2, &[(OTHER, 0), (NAME, 0)]);
        let get = |m: &Fake| instance_attr(m, &l, &T, OBJ, "_name");
        let before = OBJ - l.object_managed_dict_before.unwrap() as u64;
        if let Some(inline) = l.type_inline_values_flag {
            // 3.13+: the values follow the object; `valid` cleared once a dict took them.
            put_heap_type(
                &mut m,
                &l,
                TYPE,
                inline as u64 | l.type_managed_dict_flag.unwrap() as u64,
                16,
                0,
                KEYS,
            );
            m.put(OBJ, &[1, TYPE]);
            m.put(before, &[0]);
            put_values(&mut m, &l, OBJ + 16, &[OTHER_VALUE, NAME_VALUE], &[0, 1]);
            assert_eq!(get(&m), Some(NAME_VALUE), "3.{minor} inline values");
            m.regions.push((OBJ + 16, vec![0u8; 8]));
            assert_eq!(get(&m), None, "3.{minor} values no longer valid, no dict");
        } else {
            put_heap_type(&mut m, &l, TYPE, l.type_managed_dict_flag.unwrap() as u64, 16, 0, KEYS);
            m.put(OBJ, &[1, TYPE]);
            put_values(&mut m, &l, VALUES, &[OTHER_VALUE, NAME_VALUE], &[0, 1]);
            if l.object_tagged_values_add.is_some() {
                m.put(before, &[VALUES - 1]); // 3.12: one tagged word, odd for values
            } else {
                m.put(before, &[0]);
                m.put(OBJ - l.object_values_before.unwrap() as u64, &[VALUES]); // 3.11
            }
            assert_eq!(get(&m), Some(NAME_VALUE), "3.{minor} pre-header values");
        }
        // A dict object (materialised __dict__), split over the same values.
        put_dict(&mut m, &l, DICT, 2, KEYS, VALUES);
        put_values(&mut m, &l, VALUES, &[OTHER_VALUE, NAME_VALUE], &[1, 0]);
        m.put(before, &[DICT]);
        assert_eq!(get(&m), Some(NAME_VALUE), "3.{minor} managed dict");
        // Garbage: no attribute, no panic.
        m.put(before, &[0xdead_beef_0000]);
        assert_eq!(get(&m), None, "3.{minor} garbage dict pointer");
        assert_eq!(instance_attr(&m, &l, &T, 0xdead_0000, "_name"), None);
    }
}

#[test]
fn instance_attributes_through_tp_dictoffset() {
    // A combined-table __dict__ at tp_dictoffset (3.11+ types without managed dicts, and
    // modules, whose md_dict tp_dictoffset names).
    let (mut m, l) = fake_for(12);
    let (ty, keys, obj, dict, name, value) =
        (0xb0_0000, 0xb1_0000, 0xb2_0000, 0xb3_0000, 0xb4_0000, 0xb5_0000);
    m.put_ascii(&l, name, "_active");
    put_unicode_keys(&mut m, &l, keys, 1, &[(name, value)]);
    put_dict(&mut m, &l, dict, 1, keys, 0);
    put_heap_type(&mut m, &l, ty, 0, 32, 16, 0);
    m.put(obj, &[1, ty, dict, 0]);
    assert_eq!(instance_attr(&m, &l, &T, obj, "_active"), Some(value));
    assert_eq!(instance_attr(&m, &l, &T, obj, "_limbo"), None);
    // An absurd offset is not followed.
    for off in [1 << 40, (-(1i64 << 40)) as u64] {
        put_heap_type(&mut m, &l, ty, 0, 32, off, 0);
        assert_eq!(instance_attr(&m, &l, &T, obj, "_active"), None);
    }
}

#[test]
fn instance_attributes_counted_from_the_end() {
    // Subclasses of tuple, int, bytes up to 3.11 (checked against real interpreters):
    // tp_dictoffset -8, the dict in the last word of basicsize + |ob_size| * itemsize,
    // rounded up to a word (a negative int's ob_size counts its digits too).
    for (items, itemsize) in [(3u64, 8u64), (0, 8), (5, 4), ((-2i64) as u64, 4), (10, 1)] {
        let (mut m, l) = fake_for(11);
        let (ty, keys, obj, dict, name, value) =
            (0xb0_0000, 0xb1_0000, 0xb2_0000, 0xb3_0000, 0xb4_0000, 0xb5_0000);
        m.put_ascii(&l, name, "_active");
        put_unicode_keys(&mut m, &l, keys, 1, &[(name, value)]);
        put_dict(&mut m, &l, dict, 1, keys, 0);
        put_heap_type(&mut m, &l, ty, 0, 32, (-8i64) as u64, 0);
        m.put(ty + l.type_tp_itemsize.unwrap() as u64, &[itemsize]);
        let size = (32 + (items as i64).unsigned_abs() * itemsize + 7) & !7;
        let mut words = vec![0u64; (size / 8) as usize];
        words[1] = ty;
        words[(l.varobject_ob_size.unwrap() / 8) as usize] = items;
        *words.last_mut().unwrap() = dict;
        m.put(obj, &words);
        assert_eq!(instance_attr(&m, &l, &T, obj, "_active"), Some(value), "{items} items of {itemsize}");
    }
}

#[test]
fn sets_skip_deleted_slots() {
    let (mut m, l) = fake();
    let (set, table, one, dummy) = (0xa0_0000, 0xa1_0000, 0xa2_0000, 0xa3_0000);
    m.put_int(one, 1);
    m.put(dummy, &[1, T.none]);
    // Eight slots: 1, a deleted one (dummy key, hash -1), empty ones.
    let mut slots = vec![0u64; 16];
    slots[..4].copy_from_slice(&[one, 1, dummy, u64::MAX]);
    m.put(table, &slots);
    let mut words = vec![0u64; 32];
    words[1] = T.frozenset;
    words[(l.set_mask.unwrap() / 8) as usize] = 7;
    words[(l.set_table.unwrap() / 8) as usize] = table;
    words[(l.set_used.unwrap() / 8) as usize] = 1;
    m.put(set, &words);
    assert_eq!(show(&m, &l, set, &Limits::default()), "frozenset({1})");
}

/// xorshift64: a fixed pseudo-random sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_memory_never_panics_and_stays_bounded() {
    // 64 KiB of words that are pointers into the same memory, builtin type addresses, small
    // numbers or noise: every object header, size and item pointer is arbitrary.
    const BASE: u64 = 0x100_0000;
    const WORDS: u64 = 8192;
    for minor in [9, 10, 11, 12, 13, 14, 15] {
        let (mut m, l) = fake_for(minor);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ minor as u64);
        let types = [T.none, T.bool_, T.int, T.float, T.str_, T.bytes, T.tuple, T.list, T.dict, T.set];
        let words: Vec<u64> = (0..WORDS)
            .map(|_| match rng.next() % 4 {
                0 => BASE + (rng.next() % WORDS) * 8,
                1 => types[(rng.next() % types.len() as u64) as usize],
                2 => rng.next() % 64,
                _ => rng.next(),
            })
            .collect();
        m.put(BASE, &words);
        let limits = Limits { depth: 4, items: 16, chars: 64 };
        for i in (0..WORDS).step_by(7) {
            let text = decode(&m, &l, &T, BASE + i * 8, &limits).to_string();
            assert!(text.len() < 1 << 20, "3.{minor} at word {i}: {} bytes", text.len());
            let _ = crate::locals::frame_locals(&m, &l, &T, BASE + i * 8);
            let _ = crate::locals::frame_global(&m, &l, &T, BASE + i * 8, "name");
            let _ = instance_attr(&m, &l, &T, BASE + i * 8, "_name");
            let names = crate::thread_names::python_thread_names(&m, &l, &T, BASE + i * 8);
            assert!(names.len() <= 4096, "3.{minor} at word {i}");
        }
    }
}

#[test]
fn cached_attribute_lookups_agree_with_uncached_ones_across_instances_sharing_keys() {
    use super::attrs::{instance_attr_cached, KeyCache};
    let (ty, keys, name, other, renamed) =
        (0xc0_0000u64, 0xc1_0000u64, 0xc2_0000u64, 0xc2_1000u64, 0xc2_2000u64);
    let (mut m, l) = fake_for(12);
    m.put_ascii(&l, name, "_name");
    m.put_ascii(&l, other, "_ident");
    m.put_ascii(&l, renamed, "_name");
    put_unicode_keys(&mut m, &l, keys, 2, &[(other, 0), (name, 0)]);
    put_heap_type(&mut m, &l, ty, l.type_managed_dict_flag.unwrap() as u64, 16, 0, keys);
    // Two instances of the type, each with its own values over the shared keys (3.12: the
    // pre-header word is the values' address - 1).
    let instances = [(0xc3_1000u64, 0xc4_0000u64, 0xc5_0000u64), (0xc3_3000, 0xc6_0000, 0xc7_0000)];
    for &(obj, values, value) in &instances {
        m.put(obj, &[1, ty]);
        m.put(obj - l.object_managed_dict_before.unwrap() as u64, &[values - 1]);
        put_values(&mut m, &l, values, &[0xdead, value], &[0, 1]);
    }
    let mut cache = KeyCache::default();
    for &(obj, _, value) in &instances {
        assert_eq!(instance_attr(&m, &l, &T, obj, "_name"), Some(value));
        assert_eq!(instance_attr_cached(&m, &l, &T, obj, "_name", &mut cache), Some(value));
        assert_eq!(instance_attr_cached(&m, &l, &T, obj, "_missing", &mut cache), None);
    }
    // The key object replaced by another with the same text: the remembered address is not
    // found, the text is.
    put_unicode_keys(&mut m, &l, keys, 2, &[(other, 0), (renamed, 0)]);
    let (obj, _, value) = instances[1];
    assert_eq!(instance_attr_cached(&m, &l, &T, obj, "_name", &mut cache), Some(value));
}

/// A combined keys table at `keys` with 8 slots (`slots`: each an entry's index, -1 empty,
/// -2 deleted) and `entries` (key, value): 3.11+'s unicode-keyed layout, or ≤3.10's
/// (hash, key, value) entries.
fn put_probe_table(m: &mut Fake, l: &Layout, keys: u64, slots: [i8; 8], entries: &[(u64, u64)]) {
    let indices = l.dictkeys_indices.unwrap() as usize;
    let (size, key_off, value_off) = match l.dictkeys_log2_size {
        Some(_) => {
            (l.dictkeys_unicode_entry_size, l.dictkeys_unicode_entry_key, l.dictkeys_unicode_entry_value)
        }
        None => (l.dictkeys_entry_size, l.dictkeys_entry_key, l.dictkeys_entry_value),
    };
    let (size, key_off, value_off) =
        (size.unwrap() as usize, key_off.unwrap() as usize, value_off.unwrap() as usize);
    let mut bytes = vec![0u8; indices + 8 + entries.len() * size];
    match l.dictkeys_log2_size {
        Some(log2) => {
            bytes[log2 as usize] = 3;
            bytes[l.dictkeys_log2_index_bytes.unwrap() as usize] = 3;
            bytes[l.dictkeys_kind.unwrap() as usize] = 1;
        }
        None => bytes[l.dictkeys_size.unwrap() as usize] = 8,
    }
    bytes[l.dictkeys_nentries.unwrap() as usize] = entries.len() as u8;
    for (i, slot) in slots.iter().enumerate() {
        bytes[indices + i] = *slot as u8;
    }
    for (i, (k, v)) in entries.iter().enumerate() {
        let at = indices + 8 + size * i;
        bytes[at + key_off..at + key_off + 8].copy_from_slice(&k.to_le_bytes());
        bytes[at + value_off..at + value_off + 8].copy_from_slice(&v.to_le_bytes());
    }
    m.regions.push((keys, bytes));
}

#[test]
fn a_lookup_by_hash_follows_cpythons_probe_sequence() {
    use super::attrs::dict_lookup_hashed;
    for minor in [10, 12] {
        let (mut m, l) = fake_for(minor);
        let (dict, keys) = (0xa0_0000, 0xa1_0000);
        let strs = [0xa2_0000, 0xa2_0100, 0xa2_0200];
        for (&at, name) in strs.iter().zip(["os", "sys", "threading"]) {
            m.put_ascii(&l, at, name);
        }
        let values = [0xb0_0000, 0xb0_0100, 0xb0_0200];
        // "os" hashes to slot 3, "sys" to 5; "threading" (hash 0x23) also starts at slot 3,
        // then goes on to slot (3 * 5 + (0x23 >> 5) + 1) & 7 = 1.
        let entries: Vec<(u64, u64)> = strs.iter().copied().zip(values).collect();
        put_probe_table(&mut m, &l, keys, [-1, 2, -1, 0, -1, 1, -1, -1], &entries);
        put_dict(&mut m, &l, dict, 3, keys, 0);
        let find = |m: &Fake, name: &str, hash: Option<i64>| dict_lookup_hashed(m, &l, &T, dict, name, hash);
        assert_eq!(find(&m, "threading", Some(0x23)), Some(values[2]), "3.{minor}");
        assert_eq!(find(&m, "sys", Some(5)), Some(values[1]), "3.{minor}");
        // A hash leading to an empty slot: no such key, as CPython concludes (a scan would
        // have found it: the probe is what answered).
        assert_eq!(find(&m, "threading", Some(7)), None, "3.{minor}");
        assert_eq!(find(&m, "threading", None), Some(values[2]), "3.{minor}: without a hash, a scan");
        // A table whose probe never meets an empty slot (corrupt): scanned instead.
        put_probe_table(&mut m, &l, keys, [-2; 8], &entries);
        assert_eq!(find(&m, "threading", Some(7)), Some(values[2]), "3.{minor}");
    }
}
