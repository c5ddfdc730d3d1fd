//! The parser's state, and the top of the grammar: mangled names, encodings, special
//! names, clone suffixes. Names are in `names.rs`, types and template arguments in
//! `types.rs`. Every function returns `None` when
//! the input is malformed, unsupported, or would overflow a fixed table.

use super::tables;
use super::{Id, Node, MAX_DEPTH, MAX_SUBS, NIL};

pub struct Parser<'s, 'n> {
    pub(super) s: &'s [u8],
    pub(super) pos: usize,
    pub(super) nodes: &'n mut [Node],
    pub(super) count: usize,
    pub(super) subs: [Id; MAX_SUBS],
    pub(super) nsubs: usize,
    /// The last source name seen: what a constructor or destructor is called.
    pub(super) last_name: Id,
    pub(super) depth: u16,
    /// Parsing the type of a conversion operator (`cv <type>`).
    pub in_conversion: bool,
}

#[derive(Clone, Copy)]
pub struct Checkpoint {
    pub(super) pos: usize,
    pub(super) count: usize,
    pub(super) nsubs: usize,
    pub(super) last_name: Id,
}

/// Parses a whole mangled name: the root node and how many nodes were made.
pub fn parse(s: &[u8], nodes: &mut [Node]) -> Option<(Id, usize)> {
    let mut p = Parser {
        s,
        pos: 0,
        nodes,
        count: 0,
        subs: [NIL; MAX_SUBS],
        nsubs: 0,
        last_name: NIL,
        depth: 0,
        in_conversion: false,
    };
    if !(p.eat(b'_') && p.eat(b'Z')) {
        return None;
    }
    let mut root = p.encoding(true)?;
    while p.peek() == b'.' && is_clone_char(p.peek_at(1)) {
        root = p.clone_suffix(root)?;
    }
    (p.pos == s.len()).then_some((root, p.count))
}

fn is_clone_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

impl Parser<'_, '_> {
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Where parsing is, to come back to it.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { pos: self.pos, count: self.count, nsubs: self.nsubs, last_name: self.last_name }
    }

    pub fn restore(&mut self, c: Checkpoint) {
        (self.pos, self.count, self.nsubs, self.last_name) = (c.pos, c.count, c.nsubs, c.last_name);
    }

    pub fn peek(&self) -> u8 {
        self.peek_at(0)
    }

    pub fn peek_at(&self, k: usize) -> u8 {
        self.s.get(self.pos + k).copied().unwrap_or(0)
    }

    pub fn advance(&mut self, k: usize) {
        self.pos = (self.pos + k).min(self.s.len());
    }

    pub fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == b && b != 0;
        if hit {
            self.pos += 1;
        }
        hit
    }

    pub fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    pub fn add(&mut self, n: Node) -> Option<Id> {
        let slot = self.nodes.get_mut(self.count)?;
        *slot = n;
        self.count += 1;
        Some((self.count - 1) as Id)
    }

    pub fn node(&self, id: Id) -> Option<Node> {
        self.nodes.get(id as usize).copied()
    }

    pub fn add_sub(&mut self, id: Id) -> Option<()> {
        *self.subs.get_mut(self.nsubs)? = id;
        self.nsubs += 1;
        Some(())
    }

    /// Runs `f` one level deeper, failing past [`MAX_DEPTH`].
    pub fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// An optionally negative (`n`) decimal number; no digits reads as 0.
    pub fn number(&mut self) -> Option<i64> {
        let negative = self.eat(b'n');
        let mut v: i64 = 0;
        while self.peek().is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add((self.peek() - b'0') as i64)?;
            if v > i32::MAX as i64 {
                return None;
            }
            self.pos += 1;
        }
        Some(if negative { -v } else { v })
    }

    /// `_` is 0, `<n>_` is n + 1.
    pub fn compact_number(&mut self) -> Option<u16> {
        if self.eat(b'_') {
            return Some(0);
        }
        if self.peek() == b'n' {
            return None;
        }
        let n = self.number()?;
        self.expect(b'_')?;
        u16::try_from(n + 1).ok()
    }

    /// Digits as an identifier node (literal values, array bounds).
    pub fn span_node(&mut self, start: usize) -> Option<Id> {
        let (at, len) = (u16::try_from(start).ok()?, u16::try_from(self.pos - start).ok()?);
        self.add(Node::Ident { at, len })
    }

    pub fn encoding(&mut self, top: bool) -> Option<Id> {
        self.nested(|p| p.encoding_inner(top))
    }

    fn encoding_inner(&mut self, top: bool) -> Option<Id> {
        if matches!(self.peek(), b'G' | b'T') {
            return self.special_name();
        }
        let name = self.name()?;
        if matches!(self.peek(), 0 | b'E') {
            return Some(name); // data
        }
        let ty = self.bare_function_type(self.has_return_type(name))?;
        if !top && matches!(self.node(name)?, Node::Local { .. }) {
            self.drop_return_type(ty)?;
        }
        self.add(Node::Typed { name, ty })
    }

    pub(super) fn drop_return_type(&mut self, ty: Id) -> Option<()> {
        if let Node::Function { params, .. } = self.node(ty)? {
            *self.nodes.get_mut(ty as usize)? = Node::Function { ret: NIL, params };
        }
        Some(())
    }

    /// Template functions other than constructors, destructors and conversions mangle their
    /// return type.
    fn has_return_type(&self, id: Id) -> bool {
        match self.node(id) {
            Some(Node::Local { entity, .. }) => self.has_return_type(entity),
            Some(Node::Template { name, .. }) => !self.is_ctor_dtor_conversion(name),
            Some(Node::Qualified { base, this_: true, .. }) => self.has_return_type(base),
            _ => false,
        }
    }

    fn is_ctor_dtor_conversion(&self, id: Id) -> bool {
        match self.node(id) {
            Some(Node::Qual { name, .. }) => self.is_ctor_dtor_conversion(name),
            Some(Node::Local { entity, .. }) => self.is_ctor_dtor_conversion(entity),
            Some(Node::Ctor { .. } | Node::Dtor { .. } | Node::Conversion(_)) => true,
            _ => false,
        }
    }

    fn clone_suffix(&mut self, name: Id) -> Option<Id> {
        let start = self.pos;
        self.advance(2);
        while is_clone_char(self.peek()) {
            self.pos += 1;
        }
        while self.peek() == b'.' && self.peek_at(1).is_ascii_digit() {
            self.advance(2);
            while self.peek().is_ascii_digit() {
                self.pos += 1;
            }
        }
        let suffix = self.span_node(start)?;
        self.add(Node::Clone { name, suffix })
    }

    fn special_name(&mut self) -> Option<Id> {
        let code = [self.peek(), self.peek_at(1)];
        self.advance(2);
        if code == *b"TC" {
            let derived = self.type_()?;
            if self.number()? < 0 {
                return None;
            }
            self.expect(b'_')?;
            let base = self.type_()?;
            return self.add(Node::ConstructionVtable { base, derived });
        }
        let &(_, mut text) = tables::SPECIALS.iter().find(|(c, _)| **c == code)?;
        let child = match code[1] {
            b'V' | b'T' | b'I' | b'S' | b'F' if code[0] == b'T' => self.type_()?,
            b'V' | b'H' | b'W' => self.name()?,
            b'h' | b'v' => {
                self.call_offset(code[1])?;
                self.encoding(false)?
            }
            b'c' => {
                let first = self.peek();
                self.advance(1);
                self.call_offset(first)?;
                let second = self.peek();
                self.advance(1);
                self.call_offset(second)?;
                self.encoding(false)?
            }
            b'T' => {
                // GTt / GTn: transaction clones.
                if self.eat(b'n') {
                    text = tables::NONTRANSACTION_CLONE;
                } else {
                    self.advance(1);
                }
                self.encoding(false)?
            }
            _ => self.encoding(false)?, // GA: hidden alias
        };
        self.add(Node::Special { text, child })
    }

    /// The rest of an `h <offset> _` or `v <offset> _ <virtual offset> _` call offset.
    fn call_offset(&mut self, kind: u8) -> Option<()> {
        match kind {
            b'h' => {
                self.number()?;
            }
            b'v' => {
                self.number()?;
                self.expect(b'_')?;
                self.number()?;
            }
            _ => return None,
        }
        self.expect(b'_')
    }

    /// Replaces node `id` (used to link list cells as they are made).
    pub fn set(&mut self, id: Id, n: Node) -> Option<()> {
        *self.nodes.get_mut(id as usize)? = n;
        Some(())
    }
}

/// Builds a `List` in order, linking each new cell from the previous one.
pub struct ListBuilder {
    pub first: Id,
    last: Id,
}

impl ListBuilder {
    pub fn new() -> ListBuilder {
        ListBuilder { first: NIL, last: NIL }
    }

    pub fn push(&mut self, p: &mut Parser, head: Id) -> Option<()> {
        let cell = p.add(Node::List { head, tail: NIL })?;
        if self.last == NIL {
            self.first = cell;
        } else if let Node::List { head: prev, .. } = p.node(self.last)? {
            p.set(self.last, Node::List { head: prev, tail: cell })?;
        }
        self.last = cell;
        Some(())
    }
}
