//! Fixed words of the Itanium mangling: builtin types, operators, abbreviations.

/// How a literal of a builtin type is written (`5u`, `true`, `(char)65`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LiteralStyle {
    /// `(type)value`.
    Cast,
    /// The number, then this suffix.
    Suffix(&'static str),
    Bool,
    /// `(type)[hex]`.
    Float,
    /// `void`: a lone `v` parameter means "no parameters".
    Void,
}

/// Builtin types: mangled code (one letter, or two after `D`), name, literal style.
pub const BUILTINS: &[(&[u8], &str, LiteralStyle)] = &[
    (b"a", "signed char", LiteralStyle::Cast),
    (b"b", "bool", LiteralStyle::Bool),
    (b"c", "char", LiteralStyle::Cast),
    (b"d", "double", LiteralStyle::Float),
    (b"e", "long double", LiteralStyle::Float),
    (b"f", "float", LiteralStyle::Float),
    (b"g", "__float128", LiteralStyle::Float),
    (b"h", "unsigned char", LiteralStyle::Cast),
    (b"i", "int", LiteralStyle::Suffix("")),
    (b"j", "unsigned int", LiteralStyle::Suffix("u")),
    (b"l", "long", LiteralStyle::Suffix("l")),
    (b"m", "unsigned long", LiteralStyle::Suffix("ul")),
    (b"n", "__int128", LiteralStyle::Cast),
    (b"o", "unsigned __int128", LiteralStyle::Cast),
    (b"s", "short", LiteralStyle::Cast),
    (b"t", "unsigned short", LiteralStyle::Cast),
    (b"v", "void", LiteralStyle::Void),
    (b"w", "wchar_t", LiteralStyle::Cast),
    (b"x", "long long", LiteralStyle::Suffix("ll")),
    (b"y", "unsigned long long", LiteralStyle::Suffix("ull")),
    (b"z", "...", LiteralStyle::Cast),
    (b"Dd", "decimal64", LiteralStyle::Cast),
    (b"De", "decimal128", LiteralStyle::Cast),
    (b"Df", "decimal32", LiteralStyle::Cast),
    (b"Dh", "half", LiteralStyle::Float),
    (b"Di", "char32_t", LiteralStyle::Cast),
    (b"Ds", "char16_t", LiteralStyle::Cast),
    (b"Du", "char8_t", LiteralStyle::Cast),
    (b"Dn", "decltype(nullptr)", LiteralStyle::Cast),
];

/// Index of `decltype(nullptr)` in [`BUILTINS`] (`LDnE` is the type alone).
pub const NULLPTR: u8 = 28;

pub fn builtin(code: &[u8]) -> Option<u8> {
    BUILTINS.iter().position(|(c, _, _)| *c == code).map(|i| i as u8)
}

/// Operator function names: code and the text after `operator` (a space before words).
pub const OPERATORS: &[(&[u8; 2], &str)] = &[
    (b"nw", " new"),
    (b"na", " new[]"),
    (b"dl", " delete"),
    (b"da", " delete[]"),
    (b"aw", " co_await"),
    (b"ps", "+"),
    (b"ng", "-"),
    (b"ad", "&"),
    (b"de", "*"),
    (b"co", "~"),
    (b"pl", "+"),
    (b"mi", "-"),
    (b"ml", "*"),
    (b"dv", "/"),
    (b"rm", "%"),
    (b"an", "&"),
    (b"or", "|"),
    (b"eo", "^"),
    (b"aS", "="),
    (b"pL", "+="),
    (b"mI", "-="),
    (b"mL", "*="),
    (b"dV", "/="),
    (b"rM", "%="),
    (b"aN", "&="),
    (b"oR", "|="),
    (b"eO", "^="),
    (b"ls", "<<"),
    (b"rs", ">>"),
    (b"lS", "<<="),
    (b"rS", ">>="),
    (b"eq", "=="),
    (b"ne", "!="),
    (b"lt", "<"),
    (b"gt", ">"),
    (b"le", "<="),
    (b"ge", ">="),
    (b"ss", "<=>"),
    (b"nt", "!"),
    (b"aa", "&&"),
    (b"oo", "||"),
    (b"pp", "++"),
    (b"mm", "--"),
    (b"cm", ","),
    (b"pm", "->*"),
    (b"pt", "->"),
    (b"cl", "()"),
    (b"ix", "[]"),
    (b"qu", "?"),
];

pub fn operator(code: &[u8]) -> Option<u8> {
    OPERATORS.iter().position(|(c, _)| c.as_slice() == code).map(|i| i as u8)
}

/// Fixed words printed as they are ([`super::Node::Text`]).
pub const TEXTS: &[&str] = &[
    "std",
    "std::allocator",
    "std::basic_string",
    "std::basic_string<char, std::char_traits<char>, std::allocator<char> >",
    "std::basic_istream<char, std::char_traits<char> >",
    "std::basic_ostream<char, std::char_traits<char> >",
    "std::basic_iostream<char, std::char_traits<char> >",
    "allocator",
    "basic_string",
    "basic_istream",
    "basic_ostream",
    "basic_iostream",
    "(anonymous namespace)",
    "string literal",
    "auto",
    "decltype(auto)",
    "vtable for ",
    "VTT for ",
    "typeinfo for ",
    "typeinfo name for ",
    "typeinfo fn for ",
    "non-virtual thunk to ",
    "virtual thunk to ",
    "covariant return thunk to ",
    "guard variable for ",
    "TLS init function for ",
    "TLS wrapper function for ",
    "hidden alias for ",
    "transaction clone for ",
    "non-transaction clone for ",
];

pub const STD: u8 = 0;
pub const ANONYMOUS_NAMESPACE: u8 = 12;
pub const STRING_LITERAL: u8 = 13;
pub const AUTO: u8 = 14;
pub const DECLTYPE_AUTO: u8 = 15;

/// The standard abbreviations `Sa`, `Sb`, `Ss`, `Si`, `So`, `Sd` (c++filt writes them out in
/// full): code, text, and the name a constructor or destructor after them takes.
pub const STD_SUBS: &[(u8, u8, u8)] =
    &[(b'a', 1, 7), (b'b', 2, 8), (b's', 3, 8), (b'i', 4, 9), (b'o', 5, 10), (b'd', 6, 11)];

/// Special names after `T` or `G`: the two letters and their text.
pub const SPECIALS: &[(&[u8; 2], u8)] = &[
    (b"TV", 16),
    (b"TT", 17),
    (b"TI", 18),
    (b"TS", 19),
    (b"TF", 20),
    (b"Th", 21),
    (b"Tv", 22),
    (b"Tc", 23),
    (b"GV", 24),
    (b"TH", 25),
    (b"TW", 26),
    (b"GA", 27),
    (b"GT", 28),
];

/// Text of `non-transaction clone for ` (`GTn`).
pub const NONTRANSACTION_CLONE: u8 = 29;
