//! Parsing names: nested and local names, unqualified names (source names, operators,
//! constructors, lambdas), substitutions, template parameters and argument lists.

use super::parse::{ListBuilder, Parser};
use super::tables::{self, ANONYMOUS_NAMESPACE, STD, STD_SUBS};
use super::{Id, Node, Qual, MAX_SUBS, NIL};

impl Parser<'_, '_> {
    pub fn name(&mut self) -> Option<Id> {
        self.nested(|p| p.name_inner())
    }

    fn name_inner(&mut self) -> Option<Id> {
        match (self.peek(), self.peek_at(1)) {
            (b'N', _) => self.nested_name(),
            (b'Z', _) => self.local_name(),
            (b'S', b't') => {
                self.advance(2);
                let scope = self.add(Node::Text(STD))?;
                let name = self.unqualified_name()?;
                let name = self.add(Node::Qual { scope, name })?;
                self.template_args_after(name, true)
            }
            (b'S', _) => {
                let sub = self.substitution(false)?;
                self.template_args_after(sub, false)
            }
            _ => {
                let name = self.unqualified_name()?;
                self.template_args_after(name, true)
            }
        }
    }

    /// `name` or, when template arguments follow, `name<args>` (`name` then being a
    /// substitution candidate if `candidate`).
    fn template_args_after(&mut self, name: Id, candidate: bool) -> Option<Id> {
        if self.peek() != b'I' {
            return Some(name);
        }
        if candidate {
            self.add_sub(name)?;
        }
        let args = self.template_args()?;
        self.add(Node::Template { name, args })
    }

    fn nested_name(&mut self) -> Option<Id> {
        self.expect(b'N')?;
        let mut quals = [Qual::Const; 4];
        let mut n = 0;
        for (code, qual) in [(b'r', Qual::Restrict), (b'V', Qual::Volatile), (b'K', Qual::Const)] {
            if self.eat(code) {
                quals[n] = qual;
                n += 1;
            }
        }
        let ref_qual = if self.eat(b'R') {
            Some(Qual::LRef)
        } else if self.eat(b'O') {
            Some(Qual::RRef)
        } else {
            None
        };
        let mut name = self.prefix()?;
        self.expect(b'E')?;
        // The first qualifier is the outermost wrapper, the ref-qualifier outside them all.
        for &qual in quals[..n].iter().rev() {
            name = self.add(Node::Qualified { base: name, qual, this_: true })?;
        }
        if let Some(qual) = ref_qual {
            name = self.add(Node::Qualified { base: name, qual, this_: true })?;
        }
        Some(name)
    }

    /// The components of a nested name up to (not including) its `E`.
    fn prefix(&mut self) -> Option<Id> {
        let mut ret = NIL;
        loop {
            let peek = self.peek();
            let mut template = false;
            let component = match peek {
                b'E' if ret != NIL => return Some(ret),
                b'D' if matches!(self.peek_at(1), b'T' | b't') => return None, // decltype
                b'0'..=b'9' | b'a'..=b'z' | b'C' | b'D' | b'U' | b'L' => self.unqualified_name()?,
                b'S' => self.substitution(true)?,
                b'I' if ret != NIL => {
                    template = true;
                    self.template_args()?
                }
                b'T' => self.template_param()?,
                b'M' if ret != NIL => {
                    self.advance(1); // a lambda's initializer scope: not shown
                    continue;
                }
                _ => return None,
            };
            ret = if ret == NIL {
                component
            } else if template {
                self.add(Node::Template { name: ret, args: component })?
            } else {
                self.add(Node::Qual { scope: ret, name: component })?
            };
            if peek != b'S' && self.peek() != b'E' {
                self.add_sub(ret)?;
            }
        }
    }

    pub fn unqualified_name(&mut self) -> Option<Id> {
        let name = match (self.peek(), self.peek_at(1)) {
            (b'0'..=b'9', _) => self.source_name()?,
            (b'a'..=b'z', _) => self.operator_name()?,
            (b'C' | b'D', _) => self.ctor_dtor_name()?,
            (b'L', _) => {
                self.advance(1);
                let name = self.source_name()?;
                self.discriminator()?;
                name
            }
            (b'U', b'l') => self.lambda()?,
            (b'U', b't') => {
                self.advance(2);
                let num = self.compact_number()?;
                let id = self.add(Node::Unnamed { num })?;
                self.add_sub(id)?;
                id
            }
            _ => return None,
        };
        self.abi_tags(name)
    }

    fn abi_tags(&mut self, mut name: Id) -> Option<Id> {
        let hold = self.last_name;
        while self.eat(b'B') {
            let tag = self.source_name()?;
            name = self.add(Node::AbiTag { name, tag })?;
        }
        self.last_name = hold;
        Some(name)
    }

    pub fn source_name(&mut self) -> Option<Id> {
        let len = self.number()?;
        let len = usize::try_from(len).ok().filter(|&l| l > 0)?;
        let ident = self.s.get(self.pos..self.pos.checked_add(len)?)?;
        let anonymous = ident.len() >= 10
            && ident.starts_with(b"_GLOBAL_")
            && matches!(ident[8], b'.' | b'_' | b'$')
            && ident[9] == b'N';
        let start = self.pos;
        self.pos += len;
        let id = if anonymous { self.add(Node::Text(ANONYMOUS_NAMESPACE))? } else { self.span_node(start)? };
        self.last_name = id;
        Some(id)
    }

    fn operator_name(&mut self) -> Option<Id> {
        let code = [self.peek(), self.peek_at(1)];
        self.advance(2);
        match &code {
            b"cv" => {
                let was = self.in_conversion;
                self.in_conversion = true;
                let ty = self.type_();
                self.in_conversion = was;
                self.add(Node::Conversion(ty?))
            }
            b"li" => {
                let name = self.source_name()?;
                self.add(Node::LiteralOperator(name))
            }
            _ => {
                let op = tables::operator(&code)?;
                self.add(Node::Operator(op))
            }
        }
    }

    fn ctor_dtor_name(&mut self) -> Option<Id> {
        let name = self.last_name;
        if name == NIL {
            return None;
        }
        if self.eat(b'C') {
            let inheriting = self.eat(b'I');
            if !matches!(self.peek(), b'1'..=b'5') {
                return None;
            }
            self.advance(1);
            if inheriting {
                self.type_()?;
            }
            self.add(Node::Ctor { name })
        } else {
            self.expect(b'D')?;
            if !matches!(self.peek(), b'0' | b'1' | b'2' | b'4' | b'5') {
                return None;
            }
            self.advance(1);
            self.add(Node::Dtor { name })
        }
    }

    fn lambda(&mut self) -> Option<Id> {
        self.advance(2);
        let params = self.parameters()?;
        self.expect(b'E')?;
        let num = self.compact_number()?;
        self.add(Node::Lambda { params, num })
    }

    /// `_ <digit>…` or `__ <number> _`, ignored.
    fn discriminator(&mut self) -> Option<()> {
        if !self.eat(b'_') {
            return Some(());
        }
        let double = self.eat(b'_');
        let n = self.number()?;
        if n < 0 {
            return None;
        }
        if double && n >= 10 {
            self.expect(b'_')?;
        }
        Some(())
    }

    fn local_name(&mut self) -> Option<Id> {
        self.expect(b'Z')?;
        let function = self.encoding(false)?;
        self.expect(b'E')?;
        let entity = if self.eat(b's') {
            self.discriminator()?;
            self.add(Node::Text(tables::STRING_LITERAL))?
        } else {
            let default_arg = if self.eat(b'd') { Some(self.compact_number()?) } else { None };
            let mut name = self.name()?;
            if !matches!(self.node(name)?, Node::Lambda { .. } | Node::Unnamed { .. }) {
                self.discriminator()?;
            }
            if let Some(num) = default_arg {
                name = self.add(Node::DefaultArg { num, name })?;
            }
            name
        };
        // Only the outermost function's return type is shown.
        if let Node::Typed { ty, .. } = self.node(function)? {
            self.drop_return_type(ty)?;
        }
        self.add(Node::Local { function, entity })
    }

    /// `S_`, `S<seq-id>_` or a standard abbreviation; `in_prefix`: inside a nested name.
    pub fn substitution(&mut self, in_prefix: bool) -> Option<Id> {
        self.expect(b'S')?;
        let c = self.peek();
        self.advance(1);
        if c == b'_' || c.is_ascii_digit() || c.is_ascii_uppercase() {
            let mut id: usize = 0;
            if c != b'_' {
                let mut d = c;
                loop {
                    let digit = match d {
                        b'0'..=b'9' => d - b'0',
                        b'A'..=b'Z' => d - b'A' + 10,
                        _ => return None,
                    };
                    id = id.checked_mul(36)?.checked_add(digit as usize)?;
                    if id >= MAX_SUBS {
                        return None;
                    }
                    d = self.peek();
                    self.advance(1);
                    if d == b'_' {
                        break;
                    }
                }
                id += 1;
            }
            return self.subs.get(..self.nsubs)?.get(id).copied();
        }
        if c == b't' {
            // `St` inside a nested name: the `std` scope.
            return if in_prefix { self.add(Node::Text(STD)) } else { None };
        }
        let &(_, text, last) = STD_SUBS.iter().find(|(code, _, _)| *code == c)?;
        self.last_name = self.add(Node::Text(last))?;
        let id = self.add(Node::Text(text))?;
        if self.peek() == b'B' {
            let tagged = self.abi_tags(id)?;
            self.add_sub(tagged)?;
            return Some(tagged);
        }
        Some(id)
    }

    pub fn template_param(&mut self) -> Option<Id> {
        self.expect(b'T')?;
        let index = self.compact_number()?;
        self.add(Node::TemplateParam(index))
    }

    /// `I <arg>+ E` or `J <arg>* E`, keeping the constructor name from before.
    pub fn template_args(&mut self) -> Option<Id> {
        self.nested(|p| {
            let hold = p.last_name;
            if !(p.eat(b'I') || p.eat(b'J')) {
                return None;
            }
            if p.eat(b'E') {
                return p.add(Node::List { head: NIL, tail: NIL });
            }
            let mut list = ListBuilder::new();
            while !p.eat(b'E') {
                let arg = p.template_arg()?;
                list.push(p, arg)?;
            }
            p.last_name = hold;
            Some(list.first)
        })
    }
}
