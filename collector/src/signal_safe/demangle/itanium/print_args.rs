//! Printing what template arguments stand for: template parameters (looked up in the
//! templates being printed, or in the scope a reference to one was first printed in),
//! parameter pack expansions, and literals.

use super::print::{Printer, NONE};
use super::tables::{LiteralStyle, BUILTINS};
use super::{Id, Node, MAX_DEPTH, MAX_NODES, NIL};

/// Most template scopes saved for references to template parameters, and their templates.
pub const MAX_SAVED: usize = 32;
pub const MAX_SAVED_DECLS: usize = 256;

impl Printer<'_, '_> {
    /// Whether node `id` is being printed (at least `times` times over).
    pub fn on_stack(&self, id: Id, times: u8) -> bool {
        self.printing.get(id as usize).is_some_and(|&c| c >= times)
    }

    /// A reference to template parameter `param` takes its argument from the scope it was
    /// first printed in, when reached again from elsewhere through a substitution (c++filt's
    /// rule). Returns the scope to restore afterwards, if it switched.
    pub fn saved_scope(&mut self, param: Id, reference: Id) -> Option<(u8, usize)> {
        let saved = self.saved.get(..self.nsaved).and_then(|s| s.iter().find(|e| e.0 == param)).copied();
        let Some((_, start, len)) = saved else {
            // First time: remember the current chain.
            let start = self.nsaved_decls;
            let mut t = self.templates;
            while let Some(scope) = self.scopes.get(t as usize).copied() {
                match self.saved_decls.get_mut(self.nsaved_decls) {
                    Some(slot) => *slot = scope.decl,
                    None => {
                        self.fail();
                        return None;
                    }
                }
                self.nsaved_decls += 1;
                t = scope.next;
            }
            match self.saved.get_mut(self.nsaved) {
                Some(slot) => *slot = (param, start as u16, (self.nsaved_decls - start) as u16),
                None => self.fail(),
            }
            self.nsaved += 1;
            return None;
        };
        if self.on_stack(param, 1) || self.on_stack(reference, 2) {
            return None;
        }
        // Rebuild the saved chain on the scope stack, outermost first.
        let hold = (self.templates, self.nscopes);
        self.templates = NONE;
        for i in (start as usize..start as usize + len as usize).rev() {
            let decl = self.saved_decls.get(i).copied().unwrap_or(NIL);
            self.push_scope(decl);
        }
        Some(hold)
    }

    /// The argument template parameter `index` of the innermost template scope stands for.
    pub fn lookup(&mut self, index: u16) -> Option<Id> {
        let scope = self.scopes.get(self.templates as usize).copied();
        let Some(Node::Template { args, .. }) = scope.and_then(|s| self.node(s.decl)) else {
            self.fail();
            return None;
        };
        self.nth_arg(args, index as usize)
    }

    /// Item `i` of an argument list; None if there is none (or it is an empty pack's).
    fn nth_arg(&self, mut cell: Id, i: usize) -> Option<Id> {
        for _ in 0..i {
            let Node::List { tail, .. } = self.node(cell)? else { return None };
            cell = tail;
        }
        match self.node(cell)? {
            Node::List { head, .. } if head != NIL => Some(head),
            _ => None,
        }
    }

    /// `arg` or, if it is a parameter pack, its element being expanded.
    pub fn pack_element(&self, arg: Id) -> Option<Id> {
        match self.node(arg)? {
            Node::List { .. } => self.nth_arg(arg, self.pack_index),
            _ => Some(arg),
        }
    }

    pub(super) fn template_param(&mut self, index: u16) {
        if self.lambda_args > 0 {
            self.out.str("auto:");
            self.out.dec(index as u64 + 1);
            return;
        }
        let Some(arg) = self.lookup(index).and_then(|a| self.pack_element(a)) else {
            return self.fail();
        };
        // The argument is printed in the scope outside the template it belongs to.
        let hold = self.templates;
        self.templates = self.scopes.get(hold as usize).map_or(NONE, |s| s.next);
        self.comp(arg);
        self.templates = hold;
    }

    pub(super) fn pack_expansion(&mut self, pattern: Id) {
        let Some(pack) = self.find_pack(pattern, 0) else {
            if self.failed() {
                return;
            }
            let simple = matches!(self.node(pattern), Some(Node::Ident { .. } | Node::Qual { .. }));
            if !simple {
                self.out.byte(b'(');
            }
            self.comp(pattern);
            if !simple {
                self.out.byte(b')');
            }
            return self.out.str("...");
        };
        let len = self.pack_length(pack);
        for i in 0..len {
            self.pack_index = i;
            self.comp(pattern);
            if i + 1 < len {
                self.out.str(", ");
            }
        }
    }

    fn pack_length(&self, mut cell: Id) -> usize {
        let mut n = 0;
        while let Some(Node::List { head, tail }) = self.node(cell) {
            if head == NIL || n > MAX_NODES {
                break;
            }
            n += 1;
            cell = tail;
        }
        n
    }

    /// The first template parameter pack `id` refers to.
    fn find_pack(&mut self, id: Id, depth: u16) -> Option<Id> {
        if depth >= MAX_DEPTH {
            self.fail();
            return None;
        }
        let (left, right) = match self.node(id)? {
            Node::TemplateParam(index) => {
                let arg = self.lookup(index)?;
                return matches!(self.node(arg)?, Node::List { .. }).then_some(arg);
            }
            Node::Qual { scope: l, name: r }
            | Node::Local { function: l, entity: r }
            | Node::Template { name: l, args: r }
            | Node::List { head: l, tail: r }
            | Node::PtrMem { class: l, member: r }
            | Node::Function { ret: l, params: r }
            | Node::Array { dim: l, elem: r }
            | Node::Typed { name: l, ty: r }
            | Node::Literal { ty: l, value: r, .. }
            | Node::ConstructionVtable { base: l, derived: r }
            | Node::Clone { name: l, suffix: r } => (l, r),
            Node::Ctor { name: l }
            | Node::Dtor { name: l }
            | Node::Conversion(l)
            | Node::LiteralOperator(l)
            | Node::Qualified { base: l, .. }
            | Node::Wrapped { base: l, .. }
            | Node::Special { child: l, .. } => (l, NIL),
            _ => return None,
        };
        if left != NIL {
            if let Some(pack) = self.find_pack(left, depth + 1) {
                return Some(pack);
            }
        }
        if right != NIL {
            return self.find_pack(right, depth + 1);
        }
        None
    }

    pub(super) fn literal(&mut self, ty: Id, value: Id, negative: bool) {
        let style = match self.node(ty) {
            Some(Node::Builtin(b)) => BUILTINS.get(b as usize).map_or(LiteralStyle::Cast, |b| b.2),
            _ => LiteralStyle::Cast,
        };
        let digits = match self.node(value) {
            Some(Node::Ident { at, len }) => self.src.get(at as usize..at as usize + len as usize),
            _ => None,
        };
        match (style, digits) {
            (LiteralStyle::Suffix(suffix), Some(_)) => {
                if negative {
                    self.out.byte(b'-');
                }
                self.comp(value);
                return self.out.str(suffix);
            }
            (LiteralStyle::Bool, Some(b"0")) if !negative => return self.out.str("false"),
            (LiteralStyle::Bool, Some(b"1")) if !negative => return self.out.str("true"),
            _ => {}
        }
        self.out.byte(b'(');
        self.comp(ty);
        self.out.byte(b')');
        if negative {
            self.out.byte(b'-');
        }
        let float = style == LiteralStyle::Float;
        if float {
            self.out.byte(b'[');
        }
        self.comp(value);
        if float {
            self.out.byte(b']');
        }
    }
}
