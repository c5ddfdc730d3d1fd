//! Python thread names (`threading.Thread.name`) read from the target's `threading`
//! module, for debuggers (cc-threads). Allocates; bounded by the dict walks' limits.

use crate::objects::attrs::{dict_lookup_hashed, instance_attr_cached, KeyCache};
use crate::objects::{decode, instance_attr, Limits, ObjectTypes, Value};
use crate::{dict, Layout, Memory};
use std::collections::HashSet;

/// Threads listed at most (a corrupt table ends here).
const MAX_THREADS: usize = 4096;
/// Characters of a name shown at most.
const MAX_NAME_CHARS: usize = 256;

/// `(ident, name)` of each thread the `threading` module of the interpreter at `interp`
/// knows: `_active` (ident → Thread) and `_limbo` (started, not yet running; those with an
/// ident). `ident` is `threading.get_ident()`, i.e. `pthread_self()`: a thread state's
/// `thread_id`. Empty when `threading` was never imported or its memory does not read.
pub fn python_thread_names(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    interp: u64,
) -> Vec<(u64, String)> {
    python_threads(mem, layout, types, interp).into_iter().map(|t| (t.ident, t.name)).collect()
}

/// A thread the `threading` module knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonThread {
    /// `threading.get_ident()`: `pthread_self()`.
    pub ident: u64,
    /// `Thread.native_id` (the OS thread id) once the thread runs.
    pub native_id: Option<u64>,
    pub name: String,
}

/// As [`python_thread_names`], with each thread's OS thread id where it has one (which
/// thread states of 3.9/3.10 do not record).
pub fn python_threads(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    interp: u64,
) -> Vec<PythonThread> {
    python_threads_hashed(mem, layout, types, interp, None)
}

/// As [`python_threads`], finding `sys.modules["threading"]` by its hash when the process
/// gave `hash("threading")` (`threading_hash`): a few reads instead of every module's name.
pub fn python_threads_hashed(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    interp: u64,
    threading_hash: Option<i64>,
) -> Vec<PythonThread> {
    let mut names: Vec<PythonThread> = Vec::new();
    // The idents listed: a thread in both tables is listed once (a set: a scan of `names`
    // per thread was quadratic, 12% of the dump helper's instructions at 1000 threads).
    let mut listed: HashSet<u64> = HashSet::new();
    let Some(module) = threading_module(mem, layout, types, interp, threading_hash) else {
        return names;
    };
    let small = Limits { depth: 1, items: 1, chars: MAX_NAME_CHARS };
    let int_of = |addr: u64| match decode(mem, layout, types, addr, &small) {
        Value::Int(text) => text.parse::<u64>().ok(),
        _ => None,
    };
    // The threads' attributes, looked up in the keys table they share.
    let keys = std::cell::RefCell::new(KeyCache::default());
    let attr = |thread: u64, name: &'static str| {
        instance_attr_cached(mem, layout, types, thread, name, &mut keys.borrow_mut())
    };
    let name_of = |thread: u64| match decode(mem, layout, types, attr(thread, "_name")?, &small) {
        Value::Str { text, .. } => Some(text),
        _ => None,
    };
    let mut each = |table: &str, key_is_ident: bool| {
        let Some(d) = instance_attr(mem, layout, types, module, table) else {
            return;
        };
        dict::for_each_item(mem, layout, d, &mut |key, thread| {
            let ident = if key_is_ident { int_of(key) } else { attr(thread, "_ident").and_then(int_of) };
            if let Some((ident, name)) = ident.zip(name_of(thread)) {
                if listed.insert(ident) {
                    let native_id = attr(thread, "_native_id").and_then(int_of);
                    names.push(PythonThread { ident, native_id, name });
                }
            }
            names.len() < MAX_THREADS
        });
    };
    each("_active", true);
    each("_limbo", false);
    names
}

/// `sys.modules['threading']` of the interpreter at `interp`.
fn threading_module(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    interp: u64,
    hash: Option<i64>,
) -> Option<u64> {
    let modules = mem.ptr_at(interp, layout.interp_modules?).filter(|&m| m != 0)?;
    dict_lookup_hashed(mem, layout, types, modules, "threading", hash)
}
