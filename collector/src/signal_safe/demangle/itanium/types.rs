//! Parsing types, function types, template arguments, literals and simple expressions.

use super::parse::{ListBuilder, Parser};
use super::tables::{self, LiteralStyle, AUTO, BUILTINS, DECLTYPE_AUTO, NULLPTR};
use super::{Id, Node, Qual, Wrap, NIL};

impl Parser<'_, '_> {
    pub fn type_(&mut self) -> Option<Id> {
        self.nested(|p| p.type_inner())
    }

    fn type_inner(&mut self) -> Option<Id> {
        if self.at_type_qualifier() {
            return self.qualified_type();
        }
        let peek = self.peek();
        let id = match peek {
            b'a'..=b'z' if peek != b'u' && peek != b'k' && peek != b'p' && peek != b'q' && peek != b'r' => {
                self.advance(1);
                let b = tables::builtin(&[peek])?;
                return self.add(Node::Builtin(b)); // builtins are never substituted
            }
            b'D' => return self.d_type(),
            b'F' => self.function_type()?,
            b'A' => self.array_type()?,
            b'M' => {
                self.advance(1);
                let class = self.type_()?;
                let member = self.type_()?;
                self.add(Node::PtrMem { class, member })?
            }
            b'T' => {
                let param = self.template_param()?;
                if self.peek() != b'I' {
                    param
                } else if !self.in_conversion {
                    // A template template parameter with its arguments.
                    self.add_sub(param)?;
                    let args = self.template_args()?;
                    self.add(Node::Template { name: param, args })?
                } else {
                    // In a conversion operator's type, arguments after the parameter are
                    // its own only if the operator's follow them.
                    let before = self.checkpoint();
                    let args = self.template_args()?;
                    if self.peek() == b'I' {
                        self.add_sub(param)?;
                        self.add(Node::Template { name: param, args })?
                    } else {
                        self.restore(before);
                        param
                    }
                }
            }
            b'P' | b'R' | b'O' | b'C' | b'G' => {
                self.advance(1);
                let base = self.type_()?;
                let wrap = match peek {
                    b'P' => Wrap::Pointer,
                    b'R' => Wrap::LRef,
                    b'O' => Wrap::RRef,
                    b'C' => Wrap::Complex,
                    _ => Wrap::Imaginary,
                };
                self.add(Node::Wrapped { base, wrap })?
            }
            b'S' if matches!(self.peek_at(1), b'_' | b'0'..=b'9' | b'A'..=b'Z') => {
                let sub = self.substitution(false)?;
                if self.peek() != b'I' {
                    return Some(sub); // a substitution is not a new candidate
                }
                let args = self.template_args()?;
                self.add(Node::Template { name: sub, args })?
            }
            b'S' => {
                let name = self.name()?;
                if matches!(self.node(name)?, Node::Text(_)) {
                    return Some(name); // a standard abbreviation alone
                }
                name
            }
            b'0'..=b'9' | b'N' | b'Z' => self.name()?,
            _ => return None,
        };
        self.add_sub(id)?;
        Some(id)
    }

    fn at_type_qualifier(&self) -> bool {
        self.type_qualifier().is_some()
    }

    /// The qualifier the input starts with, and its length.
    fn type_qualifier(&self) -> Option<(usize, Qual)> {
        match (self.peek(), self.peek_at(1)) {
            (b'r', _) => Some((1, Qual::Restrict)),
            (b'V', _) => Some((1, Qual::Volatile)),
            (b'K', _) => Some((1, Qual::Const)),
            (b'D', b'x') => Some((2, Qual::TransactionSafe)),
            (b'D', b'o') => Some((2, Qual::Noexcept)),
            _ => None,
        }
    }

    /// `<qualifiers> <type>`: only the type with all its qualifiers is a new
    /// substitution candidate. Before a function type they qualify its `this`.
    fn qualified_type(&mut self) -> Option<Id> {
        let mut quals = [Qual::Const; 5];
        let mut n = 0;
        while let Some((len, qual)) = self.type_qualifier() {
            *quals.get_mut(n)? = qual;
            n += 1;
            self.advance(len);
        }
        let function = self.peek() == b'F';
        let mut id = if function { self.function_type()? } else { self.type_()? };
        let mut ref_qual = None;
        if let (true, Node::Qualified { base, qual, this_: true }) = (function, self.node(id)?) {
            // Keep the function's ref-qualifier outside its cv-qualifiers.
            if matches!(qual, Qual::LRef | Qual::RRef) {
                ref_qual = Some(qual);
                id = base;
            }
        }
        for &qual in quals[..n].iter().rev() {
            if !function && matches!(qual, Qual::TransactionSafe | Qual::Noexcept) {
                return None;
            }
            id = self.add(Node::Qualified { base: id, qual, this_: function })?;
        }
        if let Some(qual) = ref_qual {
            id = self.add(Node::Qualified { base: id, qual, this_: true })?;
        }
        self.add_sub(id)?;
        Some(id)
    }

    /// Types starting with `D`.
    fn d_type(&mut self) -> Option<Id> {
        let code = [self.peek(), self.peek_at(1)];
        self.advance(2);
        match code[1] {
            b'p' => {
                let pattern = self.type_()?;
                let id = self.add(Node::PackExpansion(pattern))?;
                self.add_sub(id)?;
                Some(id)
            }
            b'a' => self.add(Node::Text(AUTO)),
            b'c' => self.add(Node::Text(DECLTYPE_AUTO)),
            _ => {
                let b = tables::builtin(&code)?;
                self.add(Node::Builtin(b))
            }
        }
    }

    /// `F [Y] <return type> <parameters> [R|O] E`.
    fn function_type(&mut self) -> Option<Id> {
        self.expect(b'F')?;
        self.eat(b'Y'); // extern "C": not shown
        let mut id = self.bare_function_type(true)?;
        for (code, qual) in [(b'R', Qual::LRef), (b'O', Qual::RRef)] {
            if self.peek() == code && self.peek_at(1) == b'E' {
                self.advance(1);
                id = self.add(Node::Qualified { base: id, qual, this_: true })?;
            }
        }
        self.expect(b'E')?;
        Some(id)
    }

    /// `[J] [<return type>] <parameter types>`.
    pub fn bare_function_type(&mut self, mut has_return: bool) -> Option<Id> {
        if self.eat(b'J') {
            has_return = true;
        }
        let ret = if has_return { self.type_()? } else { NIL };
        let params = self.parameters()?;
        self.add(Node::Function { ret, params })
    }

    /// At least one parameter type; a lone `void` means none (an empty list).
    pub fn parameters(&mut self) -> Option<Id> {
        let mut list = ListBuilder::new();
        let mut count = 0;
        loop {
            let peek = self.peek();
            if matches!(peek, 0 | b'E' | b'.' | b'Q')
                || (matches!(peek, b'R' | b'O') && self.peek_at(1) == b'E')
            {
                break;
            }
            let ty = self.type_()?;
            list.push(self, ty)?;
            count += 1;
        }
        if count == 0 {
            return None;
        }
        if let Node::List { head, tail: NIL } = self.node(list.first)? {
            if matches!(self.node(head)?, Node::Builtin(b) if BUILTINS.get(b as usize)?.2 == LiteralStyle::Void)
            {
                self.set(list.first, Node::List { head: NIL, tail: NIL })?;
            }
        }
        Some(list.first)
    }

    /// `A <number> _ <type>` or `A _ <type>`.
    fn array_type(&mut self) -> Option<Id> {
        self.expect(b'A')?;
        let dim = if self.peek().is_ascii_digit() {
            let start = self.position();
            while self.peek().is_ascii_digit() {
                self.advance(1);
            }
            self.span_node(start)?
        } else if self.peek() == b'_' {
            NIL
        } else {
            return None; // a dimension given by an expression
        };
        self.expect(b'_')?;
        let elem = self.type_()?;
        self.add(Node::Array { dim, elem })
    }

    pub fn template_arg(&mut self) -> Option<Id> {
        match self.peek() {
            b'L' => self.literal(),
            b'I' | b'J' => self.template_args(),
            b'X' => {
                self.advance(1);
                let e = self.expression()?;
                self.expect(b'E')?;
                Some(e)
            }
            _ => self.type_(),
        }
    }

    /// The expressions c++filt prints as they are: literals, template parameters and
    /// (template) names, as in `enable_if<is_invocable_r_v<T, Args...>, T>`. Operators,
    /// calls, casts and the like are not supported.
    fn expression(&mut self) -> Option<Id> {
        self.nested(|p| match p.peek() {
            b'L' => p.literal(),
            b'T' => p.template_param(),
            b'0'..=b'9' => {
                let name = p.unqualified_name()?;
                if p.peek() != b'I' {
                    return Some(name);
                }
                let args = p.template_args()?;
                p.add(Node::Template { name, args })
            }
            _ => None,
        })
    }

    /// `L <type> [n] <value> E`, `L <mangled name> E`, or `LDnE`.
    fn literal(&mut self) -> Option<Id> {
        self.expect(b'L')?;
        if matches!(self.peek(), b'_' | b'Z') {
            self.eat(b'_');
            self.expect(b'Z')?;
            let id = self.encoding(false)?;
            self.expect(b'E')?;
            return Some(id);
        }
        let ty = self.type_()?;
        if matches!(self.node(ty)?, Node::Builtin(NULLPTR)) && self.eat(b'E') {
            return Some(ty);
        }
        let negative = self.eat(b'n');
        let start = self.position();
        while self.peek() != b'E' {
            if self.peek() == 0 {
                return None;
            }
            self.advance(1);
        }
        let value = self.span_node(start)?;
        self.expect(b'E')?;
        self.add(Node::Literal { ty, value, negative })
    }
}
