//! Itanium C++ ABI names (`_Z…`), printed exactly as GNU c++filt (libiberty's
//! cp-demangle, with its default `DMGL_PARAMS | DMGL_ANSI | DMGL_VERBOSE`) prints them.
//!
//! The name is parsed into a tree of [`Node`]s held in a fixed array (substitutions and
//! template parameters refer to earlier nodes by index), then printed. Printing follows
//! c++filt's model, which decides where parentheses and qualifiers go: types that wrap
//! others (pointers, cv-qualifiers, function and array types, the function's own name) are
//! "modifiers" kept on a stack and written where the innermost type says; template
//! parameters are looked up in the templates being printed.
//!
//! Not supported (the name is then left mangled): expressions other than literals,
//! template parameters and names (so no `decltype(…)` return types), vendor qualifiers, vector and fixed-point types, C++20 template heads in lambdas,
//! modules, and anything beyond the fixed tables below.

mod names;
mod parse;
mod print;
mod print_args;
mod print_types;
mod tables;
mod types;

use super::sink::Sink;

/// Index of a node; [`NIL`] for none.
pub type Id = u16;
pub const NIL: Id = u16::MAX;

/// Most nodes per name: a mangled name of [`super::MAX_MANGLED`] bytes makes fewer.
pub const MAX_NODES: usize = 2048;
/// Most substitution candidates.
pub const MAX_SUBS: usize = 256;
/// Deepest nesting while parsing and while printing.
pub const MAX_DEPTH: u16 = 192;

/// Cv- and ref-qualifiers, of a type or of the function a method name denotes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Qual {
    Const,
    Volatile,
    Restrict,
    /// Only on functions: `&`, `&&`, `noexcept`, `transaction_safe`.
    LRef,
    RRef,
    Noexcept,
    TransactionSafe,
}

/// Types made of one other type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wrap {
    Pointer,
    LRef,
    RRef,
    Complex,
    Imaginary,
}

#[derive(Clone, Copy, Debug)]
pub enum Node {
    /// An identifier: `len` bytes of the mangled name at `at`.
    Ident {
        at: u16,
        len: u16,
    },
    /// Fixed text, [`tables::TEXTS`].
    Text(u8),
    /// A builtin type, [`tables::BUILTINS`].
    Builtin(u8),
    /// `scope::name`.
    Qual {
        scope: Id,
        name: Id,
    },
    /// `function::entity`: a name local to a function.
    Local {
        function: Id,
        entity: Id,
    },
    /// `{default arg#N}::name`, N counted from 1.
    DefaultArg {
        num: u16,
        name: Id,
    },
    /// `name<args>`.
    Template {
        name: Id,
        args: Id,
    },
    /// One cell of an argument or parameter list; an empty list (or pack) is a cell
    /// without head.
    List {
        head: Id,
        tail: Id,
    },
    /// `name[abi:tag]`.
    AbiTag {
        name: Id,
        tag: Id,
    },
    Ctor {
        name: Id,
    },
    Dtor {
        name: Id,
    },
    /// `operator+` etc., [`tables::OPERATORS`].
    Operator(u8),
    /// `operator type`.
    Conversion(Id),
    /// `operator"" name`.
    LiteralOperator(Id),
    /// A template parameter, by index.
    TemplateParam(u16),
    /// A type or function with one qualifier. `this_`: on a method or function type.
    Qualified {
        base: Id,
        qual: Qual,
        this_: bool,
    },
    Wrapped {
        base: Id,
        wrap: Wrap,
    },
    /// `member class::*`.
    PtrMem {
        class: Id,
        member: Id,
    },
    /// A function type: return type (or NIL) and parameter list.
    Function {
        ret: Id,
        params: Id,
    },
    /// `elem [dim]`; `dim` an identifier (digits) or NIL.
    Array {
        dim: Id,
        elem: Id,
    },
    /// A function: its name and type.
    Typed {
        name: Id,
        ty: Id,
    },
    /// `{lambda(params)#N}`, N counted from 1.
    Lambda {
        params: Id,
        num: u16,
    },
    /// `{unnamed type#N}`.
    Unnamed {
        num: u16,
    },
    /// `pattern...` expanded over a template parameter pack.
    PackExpansion(Id),
    /// A literal template argument: its type and digits (an identifier).
    Literal {
        ty: Id,
        value: Id,
        negative: bool,
    },
    /// `<text> child`: vtables, typeinfo, thunks, guard variables.
    Special {
        text: u8,
        child: Id,
    },
    /// `construction vtable for base-in-derived`.
    ConstructionVtable {
        base: Id,
        derived: Id,
    },
    /// `name [clone .suffix]`; `suffix` an identifier.
    Clone {
        name: Id,
        suffix: Id,
    },
}

/// Demangles `mangled` (`_Z…`) into `out`; false if it is not supported or malformed.
pub fn demangle(mangled: &[u8], out: &mut Sink) -> bool {
    let mut nodes = [Node::Text(0); MAX_NODES];
    let Some((root, count)) = parse::parse(mangled, &mut nodes) else {
        return false;
    };
    let nodes = nodes.get(..count).unwrap_or(&[]);
    print::print(mangled, nodes, root, out)
}
