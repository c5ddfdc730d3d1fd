//! Symbols from module files: where a target without a debugger (a core file; later a
//! running process) has `_PyRuntime`, `Py_Version`, `PyUnicode_Type`…, read from the symbol
//! tables of the files its modules were loaded from. Stripped interpreters keep these in
//! `.dynsym` (CPython exports them), so no debug file is needed.

use crate::native::LoadedModule;
use object::{Object, ObjectSegment, ObjectSymbol};
use std::collections::HashMap;

/// The symbols read from the module defining `_PyRuntime`.
pub const PYTHON_SYMBOLS: [&str; 3] = ["_PyRuntime", "Py_Version", "PyUnicode_Type"];

/// The module that defines `_PyRuntime` (the interpreter, or libpython), with the loaded
/// address of each symbol of `wanted` that it defines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleSymbols {
    pub path: String,
    pub addresses: HashMap<String, u64>,
}

impl ModuleSymbols {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.addresses.get(name).copied()
    }
}

/// Files whose name says Python first (python3.X, libpython3.X…), then the others; the
/// first that defines `_PyRuntime` wins. `wanted`: the symbols to look up there besides
/// [`PYTHON_SYMBOLS`]. None when no module file defines it (not a Python process, or the
/// files are not on this machine).
pub fn python_module(modules: &[LoadedModule], wanted: &[&str]) -> Option<ModuleSymbols> {
    let named_python = |m: &&LoadedModule| m.path.rsplit('/').next().is_some_and(|n| n.contains("python"));
    let (first, rest): (Vec<&LoadedModule>, Vec<&LoadedModule>) = modules.iter().partition(named_python);
    first.into_iter().chain(rest).find_map(|m| {
        let names: Vec<&str> = PYTHON_SYMBOLS.iter().chain(wanted).copied().collect();
        let addresses = defined(m, &names)?;
        addresses.contains_key("_PyRuntime").then(|| ModuleSymbols { path: m.path.clone(), addresses })
    })
}

/// The loaded addresses of `names` that `m`'s file defines (dynamic symbols, then the
/// symbol table). None if the file cannot be read as ELF.
fn defined(m: &LoadedModule, names: &[&str]) -> Option<HashMap<String, u64>> {
    if !m.path.starts_with('/') {
        return None;
    }
    let file = std::fs::File::open(&m.path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // SAFETY: a read-only private mapping of a module file, as `elf::ElfFile::open` maps
    // them (a file truncated meanwhile could fault, as it would for gdb).
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let obj = object::File::parse(&map[..]).ok()?;
    // The module's lowest segment is loaded at `m.base` (page-aligned, as mapped).
    let first_vaddr = obj.segments().map(|s| s.address()).min()? & !0xfff;
    let bias = m.base.wrapping_sub(first_vaddr);
    let mut found = HashMap::new();
    for sym in obj.dynamic_symbols().chain(obj.symbols()) {
        if !sym.is_definition() {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if names.contains(&name) && !found.contains_key(name) {
            found.insert(name.to_string(), bias.wrapping_add(sym.address()));
        }
    }
    Some(found)
}
