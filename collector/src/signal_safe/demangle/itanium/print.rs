//! Printing a parsed name in c++filt's form: the printer's state and the plain nodes. The
//! modifier machinery (pointers, qualifiers, function and array types) is in
//! `print_types.rs`, template parameters, packs and literals in `print_args.rs`.

use super::super::sink::Sink;
use super::print_args::{MAX_SAVED, MAX_SAVED_DECLS};
use super::tables::{BUILTINS, OPERATORS, TEXTS};
use super::{Id, Node, MAX_DEPTH, MAX_NODES, NIL};

/// Most modifiers and template scopes pending at once.
const MAX_MODS: usize = 64;
const MAX_TEMPLATES: usize = 64;
/// Most nodes printed (a node reached through several substitutions counts each time).
const MAX_STEPS: u32 = 1 << 17;
/// "No entry" in the modifier and template stacks.
pub const NONE: u8 = u8::MAX;

/// A type waiting to be printed around the one being printed: a pointer, a qualifier, a
/// function type (its parameters go after), or the name of the function being printed.
#[derive(Clone, Copy)]
pub struct Mod {
    pub node: Id,
    pub printed: bool,
    pub next: u8,
    /// The template scope when it was pushed.
    pub templates: u8,
}

/// A template whose arguments template parameters refer to.
#[derive(Clone, Copy)]
pub struct Scope {
    pub decl: Id,
    pub next: u8,
}

pub struct Printer<'a, 'o> {
    pub(super) src: &'a [u8],
    pub(super) nodes: &'a [Node],
    pub out: &'a mut Sink<'o>,
    /// Modifier entries; a function releases the ones it pushed before returning.
    pub mods: [Mod; MAX_MODS],
    pub nmods: usize,
    /// Head of the current modifier list.
    pub modifiers: u8,
    pub scopes: [Scope; MAX_TEMPLATES],
    pub nscopes: usize,
    /// Innermost template scope.
    pub templates: u8,
    /// The template being printed (for a conversion operator inside it).
    pub(super) current_template: Id,
    /// Element of a parameter pack being expanded.
    pub(super) pack_index: usize,
    /// Inside a lambda's parameters, where template parameters are `auto:N`.
    pub(super) lambda_args: u16,
    /// How often each node is on the print stack (twice is a loop).
    pub(super) printing: [u8; MAX_NODES],
    /// For each `T&` first printed: the template parameter node and where its scope chain
    /// (innermost first) is in `saved_decls`.
    pub(super) saved: [(Id, u16, u16); MAX_SAVED],
    pub(super) nsaved: usize,
    pub(super) saved_decls: [Id; MAX_SAVED_DECLS],
    pub(super) nsaved_decls: usize,
    pub(super) depth: u16,
    pub(super) steps: u32,
    pub(super) failed: bool,
}

pub fn print(src: &[u8], nodes: &[Node], root: Id, out: &mut Sink) -> bool {
    let mut p = Printer {
        src,
        nodes,
        out,
        mods: [Mod { node: NIL, printed: false, next: NONE, templates: NONE }; MAX_MODS],
        nmods: 0,
        modifiers: NONE,
        scopes: [Scope { decl: NIL, next: NONE }; MAX_TEMPLATES],
        nscopes: 0,
        templates: NONE,
        current_template: NIL,
        pack_index: 0,
        lambda_args: 0,
        printing: [0; MAX_NODES],
        saved: [(NIL, 0, 0); MAX_SAVED],
        nsaved: 0,
        saved_decls: [NIL; MAX_SAVED_DECLS],
        nsaved_decls: 0,
        depth: 0,
        steps: 0,
        failed: false,
    };
    p.comp(root);
    !p.failed && !p.out.failed()
}

impl Printer<'_, '_> {
    pub fn fail(&mut self) {
        self.failed = true;
    }

    pub fn failed(&self) -> bool {
        self.failed || self.out.failed()
    }

    /// Non-zero inside a lambda's parameters.
    pub fn lambda_args_depth(&self) -> u16 {
        self.lambda_args
    }

    pub fn node(&self, id: Id) -> Option<Node> {
        self.nodes.get(id as usize).copied()
    }

    /// Pushes a modifier entry (released by resetting `nmods`).
    pub fn push_mod(&mut self, m: Mod) -> u8 {
        match self.mods.get_mut(self.nmods) {
            Some(slot) => {
                *slot = m;
                self.nmods += 1;
                (self.nmods - 1) as u8
            }
            None => {
                self.failed = true;
                NONE
            }
        }
    }

    pub fn modifier(&self, m: u8) -> Mod {
        self.mods.get(m as usize).copied().unwrap_or(Mod {
            node: NIL,
            printed: true,
            next: NONE,
            templates: NONE,
        })
    }

    pub fn set_printed(&mut self, m: u8) {
        if let Some(slot) = self.mods.get_mut(m as usize) {
            slot.printed = true;
        }
    }

    /// Makes `decl` the innermost template scope; returns the previous one.
    pub fn push_scope(&mut self, decl: Id) -> u8 {
        let hold = self.templates;
        match self.scopes.get_mut(self.nscopes) {
            Some(slot) => {
                *slot = Scope { decl, next: hold };
                self.templates = self.nscopes as u8;
                self.nscopes += 1;
            }
            None => self.failed = true,
        }
        hold
    }

    pub fn pop_scope(&mut self, hold: u8) {
        if self.templates != hold {
            self.nscopes = self.nscopes.saturating_sub(1);
        }
        self.templates = hold;
    }

    pub fn comp(&mut self, id: Id) {
        if self.failed() {
            return;
        }
        let (Some(node), Some(&count)) = (self.node(id), self.printing.get(id as usize)) else {
            return self.fail();
        };
        self.steps += 1;
        if count > 1 || self.depth >= MAX_DEPTH || self.steps > MAX_STEPS {
            return self.fail();
        }
        self.set_printing(id, count + 1);
        self.depth += 1;
        self.comp_inner(id, node);
        self.depth -= 1;
        self.set_printing(id, count);
    }

    fn set_printing(&mut self, id: Id, count: u8) {
        if let Some(slot) = self.printing.get_mut(id as usize) {
            *slot = count;
        }
    }

    fn comp_inner(&mut self, id: Id, node: Node) {
        match node {
            Node::Ident { at, len } => {
                let text = self.src.get(at as usize..at as usize + len as usize).unwrap_or(&[]);
                self.out.bytes(text);
            }
            Node::Text(t) => self.out.str(TEXTS.get(t as usize).copied().unwrap_or("")),
            Node::Builtin(b) => self.out.str(BUILTINS.get(b as usize).map_or("", |b| b.1)),
            Node::Qual { scope: left, name: right } | Node::Local { function: left, entity: right } => {
                self.comp(left);
                self.out.str("::");
                self.comp(right);
            }
            Node::DefaultArg { num, name } => {
                self.out.str("{default arg#");
                self.out.dec(num as u64 + 1);
                self.out.str("}::");
                self.comp(name);
            }
            Node::Template { name, args } => self.template(id, name, args),
            Node::List { .. } => self.list(id),
            Node::AbiTag { name, tag } => {
                self.comp(name);
                self.out.str("[abi:");
                self.comp(tag);
                self.out.byte(b']');
            }
            Node::Ctor { name } => self.comp(name),
            Node::Dtor { name } => {
                self.out.byte(b'~');
                self.comp(name);
            }
            Node::Operator(op) => {
                self.out.str("operator");
                self.out.str(OPERATORS.get(op as usize).map_or("", |o| o.1));
            }
            Node::Conversion(ty) => {
                self.out.str("operator ");
                // The type may use the parameters of the template the operator is in.
                let current = self.current_template;
                let hold = if current != NIL { self.push_scope(current) } else { self.templates };
                self.comp(ty);
                self.pop_scope(hold);
            }
            Node::LiteralOperator(name) => {
                self.out.str("operator\"\" ");
                self.comp(name);
            }
            Node::TemplateParam(index) => self.template_param(index),
            Node::Qualified { .. } | Node::Wrapped { .. } | Node::PtrMem { .. } => self.modified(id, node),
            Node::Function { .. } => self.function(id, node),
            Node::Array { .. } => self.array(id, node),
            Node::Typed { name, ty } => self.typed_name(name, ty),
            Node::Lambda { params, num } => {
                self.out.str("{lambda(");
                self.lambda_args += 1;
                self.comp(params);
                self.lambda_args -= 1;
                self.out.str(")#");
                self.out.dec(num as u64 + 1);
                self.out.byte(b'}');
            }
            Node::Unnamed { num } => {
                self.out.str("{unnamed type#");
                self.out.dec(num as u64 + 1);
                self.out.byte(b'}');
            }
            Node::PackExpansion(pattern) => self.pack_expansion(pattern),
            Node::Literal { ty, value, negative } => self.literal(ty, value, negative),
            Node::Special { text, child } => {
                self.out.str(TEXTS.get(text as usize).copied().unwrap_or(""));
                self.comp(child);
            }
            Node::ConstructionVtable { base, derived } => {
                self.out.str("construction vtable for ");
                self.comp(base);
                self.out.str("-in-");
                self.comp(derived);
            }
            Node::Clone { name, suffix } => {
                self.comp(name);
                self.out.str(" [clone ");
                self.comp(suffix);
                self.out.byte(b']');
            }
        }
    }

    fn template(&mut self, id: Id, name: Id, args: Id) {
        let hold_current = self.current_template;
        self.current_template = id;
        // Modifiers around the template do not apply inside its arguments.
        let hold_mods = self.modifiers;
        self.modifiers = NONE;
        self.comp(name);
        if self.out.last() == b'<' {
            self.out.byte(b' ');
        }
        self.out.byte(b'<');
        self.comp(args);
        if self.out.last() == b'>' {
            self.out.byte(b' '); // not `>>`
        }
        self.out.byte(b'>');
        self.modifiers = hold_mods;
        self.current_template = hold_current;
    }

    /// Items separated by `, `; the separators before a run of items that print nothing
    /// (empty packs) at the end are taken back.
    fn list(&mut self, mut cell: Id) {
        let mut first = true;
        let mut empty_run: Option<usize> = None;
        while cell != NIL && !self.failed() {
            let Some(Node::List { head, tail }) = self.node(cell) else {
                return self.fail();
            };
            if first {
                if head != NIL {
                    self.comp(head);
                }
            } else {
                let mark = self.out.len();
                self.out.str(", ");
                let after = self.out.len();
                if head != NIL {
                    self.comp(head);
                }
                if self.out.len() == after {
                    empty_run.get_or_insert(mark);
                } else {
                    empty_run = None;
                }
            }
            first = false;
            cell = tail;
        }
        if let Some(len) = empty_run {
            self.out.rewind(len);
        }
    }
}
