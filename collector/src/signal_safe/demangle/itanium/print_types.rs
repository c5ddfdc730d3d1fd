//! Where c++filt puts a type's pieces. A type that wraps another (pointer, reference,
//! qualifier, pointer to member) is pushed as a modifier and printed after the type it
//! wraps — unless that type is a function or array, which prints pending modifiers inside
//! its own parentheses: `void (*)(int)`, `int (&) [3]`, `void (A::*)() const`. A function's
//! name is a modifier too, so it lands between its return type and its parameters.

use super::print::{Mod, Printer, NONE};
use super::{Id, Node, Qual, Wrap, NIL};

/// c++filt keeps at most this many modifiers for a function's name and its qualifiers,
/// or for an array and the qualifiers moved onto it.
const MAX_LOCAL_MODS: usize = 4;

fn is_fn_qual(node: Option<Node>) -> bool {
    matches!(node, Some(Node::Qualified { this_: true, .. }))
}

fn is_cv(node: Option<Node>) -> bool {
    matches!(
        node,
        Some(Node::Qualified { this_: false, qual: Qual::Const | Qual::Volatile | Qual::Restrict, .. })
    )
}

impl Printer<'_, '_> {
    /// Pointers, references, qualifiers, pointers to members.
    pub fn modified(&mut self, id: Id, node: Node) {
        let (mut dc, mut inner) = (id, NIL);
        let mut restore = None;
        match node {
            Node::Qualified { base, qual, this_: false } => {
                // A qualifier already pending (an array moves its qualifiers onto itself,
                // a template argument may carry one) is printed once.
                let mut m = self.modifiers;
                while m != NONE {
                    let md = self.modifier(m);
                    if !md.printed {
                        let pending = self.node(md.node);
                        if !is_cv(pending) {
                            break;
                        }
                        if matches!(pending, Some(Node::Qualified { qual: q, .. }) if q == qual) {
                            return self.comp(base);
                        }
                    }
                    m = md.next;
                }
            }
            Node::Wrapped { base, wrap: wrap @ (Wrap::LRef | Wrap::RRef) } => {
                // Reference collapsing through a template argument: `T&` with T = `int&&`.
                let mut sub = base;
                if let (0, Some(Node::TemplateParam(index))) = (self.lambda_args_depth(), self.node(sub)) {
                    restore = self.saved_scope(sub, id);
                    match self.lookup(index).and_then(|a| self.pack_element(a)) {
                        Some(arg) => sub = arg,
                        None => return self.fail(),
                    }
                }
                match self.node(sub) {
                    Some(Node::Wrapped { wrap: Wrap::LRef, .. }) => dc = sub,
                    Some(Node::Wrapped { wrap: w, .. }) if w == wrap => dc = sub,
                    Some(Node::Wrapped { wrap: Wrap::RRef, base }) => inner = base,
                    _ => {}
                }
            }
            _ => {}
        }
        if inner == NIL {
            inner = match self.node(dc) {
                Some(Node::Qualified { base, .. } | Node::Wrapped { base, .. }) => base,
                Some(Node::PtrMem { member, .. }) => member,
                _ => return self.fail(),
            };
        }
        let mark = self.nmods;
        let m =
            self.push_mod(Mod { node: dc, printed: false, next: self.modifiers, templates: self.templates });
        self.modifiers = m;
        self.comp(inner);
        let md = self.modifier(m);
        if !md.printed {
            self.print_mod(dc);
        }
        self.modifiers = md.next;
        self.nmods = mark;
        if let Some((templates, nscopes)) = restore {
            (self.templates, self.nscopes) = (templates, nscopes);
        }
    }

    /// The text a modifier adds after the type it wraps.
    fn print_mod(&mut self, id: Id) {
        match self.node(id) {
            Some(Node::Qualified { qual, .. }) => self.out.str(match qual {
                Qual::Const => " const",
                Qual::Volatile => " volatile",
                Qual::Restrict => " restrict",
                Qual::LRef => " &",
                Qual::RRef => " &&",
                Qual::Noexcept => " noexcept",
                Qual::TransactionSafe => " transaction_safe",
            }),
            Some(Node::Wrapped { wrap, .. }) => self.out.str(match wrap {
                Wrap::Pointer => "*",
                Wrap::LRef => "&",
                Wrap::RRef => "&&",
                Wrap::Complex => " _Complex",
                Wrap::Imaginary => " _Imaginary",
            }),
            Some(Node::PtrMem { class, .. }) => {
                if self.out.last() != b'(' {
                    self.out.byte(b' ');
                }
                self.comp(class);
                self.out.str("::*");
            }
            _ => self.comp(id), // a function's name
        }
    }

    /// Prints the modifiers of list `m` not printed yet: all but function qualifiers, or
    /// (`suffix`) whatever is left, which is those.
    fn mod_list(&mut self, mut m: u8, suffix: bool) {
        while m != NONE && !self.failed() {
            let md = self.modifier(m);
            let node = self.node(md.node);
            if md.printed || (!suffix && is_fn_qual(node)) {
                m = md.next;
                continue;
            }
            self.set_printed(m);
            let hold = self.templates;
            self.templates = md.templates;
            match node {
                Some(Node::Function { params, .. }) => {
                    self.function_type(params, md.next);
                    self.templates = hold;
                    return;
                }
                Some(Node::Array { dim, .. }) => {
                    self.array_type(dim, md.next);
                    self.templates = hold;
                    return;
                }
                Some(Node::Local { function, entity }) => {
                    self.local_name_mod(function, entity);
                    self.templates = hold;
                    return;
                }
                _ => self.print_mod(md.node),
            }
            self.templates = hold;
            m = md.next;
        }
    }

    /// A function's local name as the function's modifier: its qualifiers were taken off.
    fn local_name_mod(&mut self, function: Id, entity: Id) {
        let hold = self.modifiers;
        self.modifiers = NONE;
        self.comp(function);
        self.modifiers = hold;
        self.out.str("::");
        let mut entity = entity;
        if let Some(Node::DefaultArg { num, name }) = self.node(entity) {
            self.out.str("{default arg#");
            self.out.dec(num as u64 + 1);
            self.out.str("}::");
            entity = name;
        }
        while let Some(Node::Qualified { base, this_: true, .. }) = self.node(entity) {
            entity = base;
        }
        self.comp(entity);
    }

    /// A function type: `ret` then, where the modifiers say, its parameters.
    pub fn function(&mut self, id: Id, node: Node) {
        let Node::Function { ret, params } = node else { return self.fail() };
        if ret != NIL {
            // The return type is printed with the function as its modifier, so that a
            // function returning a function pointer nests: `void (*f())(int)`.
            let mark = self.nmods;
            let m = self.push_mod(Mod {
                node: id,
                printed: false,
                next: self.modifiers,
                templates: self.templates,
            });
            self.modifiers = m;
            self.comp(ret);
            let md = self.modifier(m);
            self.modifiers = md.next;
            self.nmods = mark;
            if md.printed {
                return;
            }
            self.out.byte(b' ');
        }
        self.function_type(params, self.modifiers);
    }

    /// `(modifiers)(params) qualifiers`.
    fn function_type(&mut self, params: Id, mods: u8) {
        let (mut need_paren, mut need_space) = (false, false);
        let mut m = mods;
        while m != NONE {
            let md = self.modifier(m);
            if md.printed {
                break;
            }
            match self.node(md.node) {
                Some(Node::Wrapped { wrap: Wrap::Pointer | Wrap::LRef | Wrap::RRef, .. }) => {
                    need_paren = true
                }
                Some(Node::Qualified { this_: false, .. } | Node::Wrapped { .. } | Node::PtrMem { .. }) => {
                    need_paren = true;
                    need_space = true;
                }
                _ => {}
            }
            if need_paren {
                break;
            }
            m = md.next;
        }
        if need_paren {
            let last = self.out.last();
            if !need_space && last != b'(' && last != b'*' {
                need_space = true;
            }
            if need_space && last != b' ' {
                self.out.byte(b' ');
            }
            self.out.byte(b'(');
        }
        let hold = self.modifiers;
        self.modifiers = NONE;
        self.mod_list(mods, false);
        if need_paren {
            self.out.byte(b')');
        }
        self.out.byte(b'(');
        if params != NIL {
            self.comp(params);
        }
        self.out.byte(b')');
        self.mod_list(mods, true);
        self.modifiers = hold;
    }

    /// An array type: element type, pending modifiers, ` [dim]`.
    pub fn array(&mut self, id: Id, node: Node) {
        let Node::Array { elem, .. } = node else { return self.fail() };
        let hold = self.modifiers;
        let mark = self.nmods;
        let mut slots = [NONE; MAX_LOCAL_MODS];
        slots[0] =
            self.push_mod(Mod { node: id, printed: false, next: self.modifiers, templates: self.templates });
        self.modifiers = slots[0];
        // Qualifiers of the array apply to its elements: print them right after those.
        let mut n = 1;
        let mut m = hold;
        while m != NONE && is_cv(self.node(self.modifier(m).node)) {
            let md = self.modifier(m);
            if !md.printed {
                let Some(slot) = slots.get_mut(n) else { return self.fail() };
                *slot = self.push_mod(Mod { next: self.modifiers, ..md });
                self.modifiers = *slot;
                self.set_printed(m);
                n += 1;
            }
            m = md.next;
        }
        self.comp(elem);
        self.modifiers = hold;
        if !self.modifier(slots[0]).printed {
            for &slot in slots[1..n].iter().rev() {
                self.print_mod(self.modifier(slot).node);
            }
            if let Some(Node::Array { dim, .. }) = self.node(id) {
                self.array_type(dim, self.modifiers);
            }
        }
        self.nmods = mark;
    }

    /// ` (modifiers) [dim]`.
    fn array_type(&mut self, dim: Id, mods: u8) {
        let mut need_space = true;
        if mods != NONE {
            let mut need_paren = false;
            let mut m = mods;
            while m != NONE {
                let md = self.modifier(m);
                if !md.printed {
                    if matches!(self.node(md.node), Some(Node::Array { .. })) {
                        need_space = false;
                    } else {
                        need_paren = true;
                        need_space = true;
                    }
                    break;
                }
                m = md.next;
            }
            if need_paren {
                self.out.str(" (");
            }
            self.mod_list(mods, false);
            if need_paren {
                self.out.byte(b')');
            }
        }
        if need_space {
            self.out.byte(b' ');
        }
        self.out.byte(b'[');
        if dim != NIL {
            self.comp(dim);
        }
        self.out.byte(b']');
    }

    /// A function: its name and qualifiers become modifiers of its type, and a template
    /// function's arguments are the scope of the template parameters in its type.
    pub fn typed_name(&mut self, name: Id, ty: Id) {
        let hold = self.modifiers;
        self.modifiers = NONE;
        let mark = self.nmods;
        let mut slots = [NONE; MAX_LOCAL_MODS];
        let mut n = 0;
        let mut typed = name;
        loop {
            let Some(slot) = slots.get_mut(n) else { return self.fail() };
            *slot = self.push_mod(Mod {
                node: typed,
                printed: false,
                next: self.modifiers,
                templates: self.templates,
            });
            self.modifiers = *slot;
            n += 1;
            match self.node(typed) {
                Some(Node::Qualified { base, this_: true, .. }) => typed = base,
                _ => break,
            }
        }
        if let Some(Node::Local { entity, .. }) = self.node(typed) {
            // The qualifiers of a local function apply here: they go just below the name.
            typed = entity;
            if let Some(Node::DefaultArg { name, .. }) = self.node(typed) {
                typed = name;
            }
            while let Some(Node::Qualified { base, this_: true, .. }) = self.node(typed) {
                if n >= MAX_LOCAL_MODS {
                    return self.fail();
                }
                let top = self.modifier(slots[n - 1]);
                slots[n] = self.push_mod(Mod { next: slots[n - 1], ..top });
                self.modifiers = slots[n];
                if let Some(entry) = self.mods.get_mut(slots[n - 1] as usize) {
                    *entry = Mod { node: typed, printed: false, next: top.next, templates: self.templates };
                }
                n += 1;
                typed = base;
            }
        }
        let template = matches!(self.node(typed), Some(Node::Template { .. }));
        let scope = if template { self.push_scope(typed) } else { self.templates };
        self.comp(ty);
        self.pop_scope(scope);
        for &slot in slots[..n].iter().rev() {
            let md = self.modifier(slot);
            if !md.printed {
                self.out.byte(b' ');
                self.print_mod(md.node);
            }
        }
        self.modifiers = hold;
        self.nmods = mark;
    }
}
