//! A module's symbols, looked up the first time one of its frames is to be named: DWARF
//! from its own file, else from a separate debug file (`debuginfo`), else the symbol table
//! of whichever file there is. And the line that tells the user what went wrong.

use crate::debuginfo::{self, Search};
use crate::demangle::demangle;
use crate::dwarf::{LazyDwarf, Named};
use crate::elf::{ElfFile, LazySymbols};
use std::cell::RefCell;
use std::collections::HashMap;

/// The outcome of looking for a module's symbols.
pub struct Lookup {
    pub symbolizer: Option<Symbolizer>,
    /// Debug files not used, and why (refused, or a server's answer).
    pub refused: Vec<String>,
}

pub struct Symbolizer {
    /// See `NativeFrame::symbol_source`.
    pub source: &'static str,
    /// The file's lowest segment address: 0 for shared objects and PIE, 0x400000 for a
    /// classic executable (Debian's python3.11). File address = runtime - base + base_svma.
    pub base_svma: u64,
    dwarf: Option<LazyDwarf>,
    /// The symbol table, made the first time a frame needs it.
    symtab: LazySymbols,
    /// Names already looked up, by file address: every thread returns to the same places
    /// (and a recursion to one place thousands of times), and a DWARF lookup walks a unit.
    named: RefCell<HashMap<u64, Vec<Named>>>,
}

impl Symbolizer {
    /// The frames at file address `probe`: inlined calls first, then the function that
    /// contains them; one frame from the symbol table when DWARF does not cover it.
    pub fn names(&self, probe: u64) -> Vec<Named> {
        if let Some(known) = self.named.borrow().get(&probe) {
            return known.clone();
        }
        let found = self.look_up(probe);
        self.named.borrow_mut().insert(probe, found.clone());
        found
    }

    fn look_up(&self, probe: u64) -> Vec<Named> {
        let symbol = || self.symtab.get().containing(probe);
        let mut frames = self.dwarf.as_ref().map(|d| d.frames(probe)).unwrap_or_default();
        if let Some(function) = frames.last_mut() {
            // DWARF gives some C++ functions only their own name (`_FUN`, `operator()`, a
            // local class's `add`): their symbol has the whole of it, as c++filt shows it.
            // A C symbol is no better than DWARF's name (and may be an alias), so only a
            // mangled one is used, and only if it has a size (it really covers `probe`).
            if !function.qualified && self.symtab.has_mangled() {
                if let Some((_, name)) = symbol().filter(|(s, name)| s.size > 0 && name.starts_with("_Z")) {
                    function.function = Some(demangle(name));
                    function.qualified = true;
                }
            }
            return frames;
        }
        let function = symbol().map(|(_, name)| demangle(name));
        vec![Named { function, file: None, line: None, inlined: false, qualified: false }]
    }
}

/// The symbols of a module whose file (`binary`, with how it was found) may be missing,
/// and whose build id per the dump is `build_id`.
pub fn lookup(search: &Search, binary: Option<(&ElfFile, &'static str)>, build_id: Option<&str>) -> Lookup {
    let mut refused = Vec::new();
    let file = binary.map(|(b, _)| b);
    let found = match (binary, build_id) {
        (Some((b, how)), _) if b.has_dwarf => Some((None, how)),
        (_, Some(id)) => search.debug_file(id, file, &mut refused).map(|f| (Some(f.file), f.source)),
        (_, None) => None,
    };
    let symbolizer = match found {
        Some((Some(debug), source)) => Some(symbolizer(search, file, Some(&debug), source, &mut refused)),
        Some((None, source)) => Some(symbolizer(search, file, file, source, &mut refused)),
        None => file.map(|b| symbolizer(search, Some(b), None, debuginfo::SYMBOL_TABLE_ONLY, &mut refused)),
    };
    Lookup { symbolizer, refused }
}

/// DWARF from `debug` (with its dwz supplement), symbols from its .symtab if it has one
/// (a debug file keeps the full table), else from the module file's.
fn symbolizer(
    search: &Search,
    binary: Option<&ElfFile>,
    debug: Option<&ElfFile>,
    source: &'static str,
    refused: &mut Vec<String>,
) -> Symbolizer {
    let dwarf = debug.and_then(|d| {
        let mut dwarf = d.dwarf().map_err(|e| refused.push(e)).ok()?;
        if let Some(sup) = search.supplementary(d, refused) {
            if let Err(e) = sup.load_as_sup(&mut dwarf) {
                refused.push(e);
            }
        }
        Some(LazyDwarf::new(dwarf))
    });
    let table = debug.filter(|d| d.has_symtab).or(binary);
    Symbolizer {
        // Unreadable DWARF leaves the symbol table.
        source: if dwarf.is_some() { source } else { debuginfo::SYMBOL_TABLE_ONLY },
        base_svma: binary.or(debug).and_then(|f| f.base_svma).unwrap_or(0),
        dwarf,
        symtab: table.map_or_else(LazySymbols::none, ElfFile::lazy_symbols),
        named: RefCell::new(HashMap::new()),
    }
}

/// The line for `Modules::problems` about a module (recorded at `recorded`), if it needs
/// one: nothing usable at all (`refused`: why each module file was not used), or only a
/// symbol table where debug files were refused. Ends with what to try.
pub fn problem(
    recorded: &str,
    has_binary: bool,
    refused: &[String],
    lookup: Option<&Lookup>,
    search: &Search,
) -> Option<String> {
    let found = lookup.and_then(|l| l.symbolizer.as_ref());
    let lazy = lookup.map(|l| l.refused.as_slice()).unwrap_or_default();
    let debuginfod = if search.debuginfod.is_some() { "" } else { ", or set DEBUGINFOD_URLS" };
    if !has_binary && found.is_none() {
        let all: Vec<&str> = refused.iter().chain(lazy).map(String::as_str).collect();
        // The vDSO has no file: no advice can help it.
        let hint = if recorded.starts_with('/') {
            format!(
                " (to symbolize it, give --sysroot DIR where the process's own files are (/proc/PID/root \
                 while it runs, for a container or chroot), or --symbols-path DIR holding a copy of it or \
                 a .build-id tree of debug files{debuginfod})"
            )
        } else {
            String::new()
        };
        return Some(format!("{}{hint}", all.join("; ")));
    }
    match found {
        Some(s) if s.dwarf.is_none() && !lazy.is_empty() => Some(format!(
            "{recorded}: symbol table only (no DWARF): {} (to get file:line, install its debug file under \
             {}/.build-id, or give --symbols-path DIR{debuginfod})",
            lazy.join("; "),
            debuginfo::DEFAULT_DEBUG_ROOT,
        )),
        _ => None,
    }
}
