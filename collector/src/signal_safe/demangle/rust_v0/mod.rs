//! Rust's v0 mangling (`_R…`, RFC 2603), printed as rustc-demangle's `{:#}` does: no crate
//! disambiguators, no integer-constant type suffixes. Printed while parsing, like the
//! grammar invites; back-references re-read earlier input. The symbol is first walked
//! without output to check it, so a malformed one prints nothing.
//!
//! Types and constants are in `types.rs`.
//!
//! Not supported (left mangled): punycode identifiers, and constants other than integers,
//! `bool`, plain ASCII `char`s and `_`.

mod types;

use super::sink::Sink;

/// Deepest nesting of paths, types and back-references.
const MAX_DEPTH: u16 = 128;

/// Strips a ThinLTO `.llvm.<HEX>` suffix, as rustc-demangle does before anything else.
pub fn strip_llvm_suffix(s: &[u8]) -> &[u8] {
    const LLVM: &[u8] = b".llvm.";
    let Some(i) = s.windows(LLVM.len()).position(|w| w == LLVM) else {
        return s;
    };
    let tail = s.get(i + LLVM.len()..).unwrap_or(&[]);
    if tail.iter().all(|b| matches!(b, b'A'..=b'F' | b'0'..=b'9' | b'@')) {
        s.get(..i).unwrap_or(s)
    } else {
        s
    }
}

/// What may follow a Rust symbol and is kept: nothing, or `.`-words (`.cold`).
pub fn suffix_ok(suffix: &[u8]) -> bool {
    suffix.is_empty() || (suffix.first() == Some(&b'.') && suffix.iter().all(|b| b.is_ascii_graphic()))
}

pub fn demangle(s: &[u8], out: &mut Sink) -> bool {
    let s = strip_llvm_suffix(s);
    let Some(inner) = s.strip_prefix(b"_R").filter(|i| i.first().is_some_and(|b| b.is_ascii_uppercase()))
    else {
        return false;
    };
    let mut check = V0 { s: inner, pos: 0, depth: 0, bound_lifetimes: 0, out: None };
    if check.path(false).is_none() {
        return false;
    }
    if check.peek().is_ascii_uppercase() && check.path(false).is_none() {
        return false; // the instantiating crate
    }
    let suffix = inner.get(check.pos..).unwrap_or(&[]);
    if !suffix_ok(suffix) {
        return false;
    }
    let mut print = V0 { s: inner, pos: 0, depth: 0, bound_lifetimes: 0, out: Some(out) };
    if print.path(true).is_none() {
        return false;
    }
    if let Some(out) = print.out {
        out.bytes(suffix);
    }
    true
}

struct V0<'s, 'a, 'o> {
    s: &'s [u8],
    pos: usize,
    depth: u16,
    /// Lifetimes bound by enclosing `for<…>`.
    bound_lifetimes: u64,
    /// None while only checking (or skipping what is not shown).
    out: Option<&'a mut Sink<'o>>,
}

/// An identifier: its bytes.
type Ident<'s> = &'s [u8];

impl<'s> V0<'s, '_, '_> {
    fn peek(&self) -> u8 {
        self.s.get(self.pos).copied().unwrap_or(0)
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.s.get(self.pos).copied()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == b;
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn print(&mut self, text: &[u8]) {
        if let Some(out) = self.out.as_deref_mut() {
            out.bytes(text);
        }
    }

    fn print_dec(&mut self, v: u64) {
        if let Some(out) = self.out.as_deref_mut() {
            out.dec(v);
        }
    }

    fn printing(&self) -> bool {
        self.out.is_some()
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.depth >= MAX_DEPTH || self.out.as_deref().is_some_and(|o| o.failed()) {
            return None;
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// `{0-9a-zA-Z} _`: `_` is 0, otherwise the base-62 number plus one.
    fn base62(&mut self) -> Option<u64> {
        if self.eat(b'_') {
            return Some(0);
        }
        let mut x: u64 = 0;
        loop {
            let d = match self.next()? {
                b'_' => return x.checked_add(1),
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'z' => c - b'a' + 10,
                c @ b'A'..=b'Z' => c - b'A' + 36,
                _ => return None,
            };
            x = x.checked_mul(62)?.checked_add(d as u64)?;
        }
    }

    /// `[tag <base-62>]`: 0 when absent, else the number plus one.
    fn opt_base62(&mut self, tag: u8) -> Option<u64> {
        if !self.eat(tag) {
            return Some(0);
        }
        self.base62()?.checked_add(1)
    }

    fn decimal(&mut self) -> Option<usize> {
        let first = self.next().filter(u8::is_ascii_digit)?;
        if first == b'0' {
            return Some(0);
        }
        let mut v = (first - b'0') as usize;
        while self.peek().is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add((self.peek() - b'0') as usize)?;
            self.pos += 1;
        }
        Some(v)
    }

    /// `[s <base-62>] [u] <decimal> [_] <bytes>`; punycode (`u`) is not supported.
    fn ident(&mut self) -> Option<(u64, Ident<'s>)> {
        let dis = self.opt_base62(b's')?;
        if self.peek() == b'u' {
            return None;
        }
        let len = self.decimal()?;
        self.eat(b'_');
        let ident = self.s.get(self.pos..self.pos.checked_add(len)?)?;
        self.pos += len;
        Some((dis, ident))
    }

    /// Runs `f` at an earlier position (`B <base-62>`), when printing.
    fn backref(&mut self, f: impl FnOnce(&mut Self) -> Option<()>) -> Option<()> {
        let start = self.pos.checked_sub(1)?; // the `B`
        let target = usize::try_from(self.base62()?).ok().filter(|&t| t < start)?;
        if !self.printing() {
            return Some(());
        }
        let hold = self.pos;
        self.pos = target;
        let r = self.nested(f);
        self.pos = hold;
        r
    }

    fn path(&mut self, in_value: bool) -> Option<()> {
        self.nested(|v| v.path_inner(in_value))
    }

    fn path_inner(&mut self, in_value: bool) -> Option<()> {
        match self.next()? {
            b'C' => {
                let (_, name) = self.ident()?;
                self.print(name);
            }
            b'N' => {
                let ns = self.next().filter(u8::is_ascii_alphabetic)?;
                self.path(in_value)?;
                let (dis, name) = self.ident()?;
                if ns.is_ascii_uppercase() {
                    self.print(b"::{");
                    self.print(match ns {
                        b'C' => b"closure",
                        b'S' => b"shim",
                        _ => core::slice::from_ref(&ns),
                    });
                    if !name.is_empty() {
                        self.print(b":");
                        self.print(name);
                    }
                    self.print(b"#");
                    self.print_dec(dis);
                    self.print(b"}");
                } else if !name.is_empty() {
                    self.print(b"::");
                    self.print(name);
                }
            }
            tag @ (b'M' | b'X' | b'Y') => {
                if tag != b'Y' {
                    // The impl's own path is not shown.
                    self.opt_base62(b's')?;
                    let out = self.out.take();
                    let r = self.path(false);
                    self.out = out;
                    r?;
                }
                self.print(b"<");
                self.type_()?;
                if tag != b'M' {
                    self.print(b" as ");
                    self.path(false)?;
                }
                self.print(b">");
            }
            b'I' => {
                self.path(in_value)?;
                if in_value {
                    self.print(b"::");
                }
                self.print(b"<");
                self.list(b", ", Self::generic_arg)?;
                self.print(b">");
            }
            b'B' => self.backref(|v| v.path_inner(in_value))?,
            _ => return None,
        }
        Some(())
    }

    /// Items up to `E`, separated by `sep`; how many.
    fn list(&mut self, sep: &[u8], mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<usize> {
        let mut n = 0;
        while !self.eat(b'E') {
            if n > 0 {
                self.print(sep);
            }
            item(self)?;
            n += 1;
        }
        Some(n)
    }

    fn generic_arg(&mut self) -> Option<()> {
        if self.eat(b'L') {
            let lt = self.base62()?;
            self.lifetime(lt)
        } else if self.eat(b'K') {
            self.constant()
        } else {
            self.type_()
        }
    }

    /// `'_`, or `'a`… counted outwards from the innermost binder.
    fn lifetime(&mut self, index: u64) -> Option<()> {
        if !self.printing() {
            return Some(());
        }
        self.print(b"'");
        if index == 0 {
            self.print(b"_");
            return Some(());
        }
        let depth = self.bound_lifetimes.checked_sub(index)?;
        if depth < 26 {
            self.print(&[b'a' + depth as u8]);
        } else {
            self.print(b"_");
            self.print_dec(depth);
        }
        Some(())
    }

    /// `G <base-62>` lifetimes bound around `f`: `for<'a, 'b> `.
    fn binder(&mut self, f: impl FnOnce(&mut Self) -> Option<()>) -> Option<()> {
        let bound = self.opt_base62(b'G')?;
        if !self.printing() {
            return f(self);
        }
        if bound > 0 {
            self.print(b"for<");
            for i in 0..bound {
                if i > 0 {
                    self.print(b", ");
                }
                self.bound_lifetimes = self.bound_lifetimes.checked_add(1)?;
                self.lifetime(1)?;
            }
            self.print(b"> ");
        }
        let r = f(self);
        self.bound_lifetimes = self.bound_lifetimes.checked_sub(bound)?;
        r
    }
}
