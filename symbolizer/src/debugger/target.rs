//! What the helper needs to know of a target before decoding it: the CPython version, its
//! layout, `_PyRuntime`, the interpreters and the `str` type. Found anew at each request
//! (the target may have run, been restarted, or be another core).

use super::dumpfile::DumpThread;
use crate::python::{layout_for, LayoutNote, PyTarget};
use pylayout::{Layout, Memory};
use std::collections::HashMap;

/// Interpreters listed at most (a corrupt or cyclic list ends here).
const MAX_INTERPRETERS: usize = 1024;

pub struct Target {
    /// "3.X".
    pub version: String,
    pub layout: Layout,
    pub note: LayoutNote,
    pub py: PyTarget,
    /// The threads of the crashcatch minidump the debugger opened, by thread id
    /// (`dumpfile`); empty otherwise.
    pub dump_threads: HashMap<u64, DumpThread>,
}

/// A symbol's address in the target.
pub type Symbols<'a> = &'a dyn Fn(&str) -> Option<u64>;

/// `object_file`: the file defining `_PyRuntime` (python3.X or libpython3.X…), whose name
/// tells the version when the target does not record it (≤3.10). `table`: a layout table
/// to use instead of the built-in one.
pub fn discover(
    symbol: Symbols,
    mem: &dyn Memory,
    object_file: Option<&str>,
    table: Option<&str>,
) -> Result<Target, String> {
    let runtime = symbol("_PyRuntime").ok_or(
        "not a Python process: the debugger knows no `_PyRuntime` symbol (CPython 3.9+ exports it; for a \
         core, give the debugger the program that wrote it: `gdb /usr/bin/python3.X core`, \
         `lldb -c core /usr/bin/python3.X`)",
    )?;
    let version = version(symbol, mem, runtime, object_file).ok_or_else(|| {
        format!(
            "cannot tell the CPython version: no Py_Version, no debug offsets, and the file defining \
             _PyRuntime ({}) is not named python3.X",
            object_file.unwrap_or("unknown")
        )
    })?;
    let (layout, note) = layout_for(mem, runtime, &version, table)?;
    let main = layout
        .runtime_interpreters_main
        .and_then(|o| mem.ptr_at(runtime, o))
        .filter(|&i| i != 0)
        .or_else(|| mem.ptr_at(runtime, layout.runtime_interpreters_head?))
        .ok_or("cannot read _PyRuntime: the target's memory is not readable there")?;
    if main == 0 {
        return Err(format!(
            "Python {version} has no interpreter: it is not initialised yet (continue past \
             Py_Initialize) or already finalised"
        ));
    }
    let mut interpreters = vec![main];
    let mut next = layout.runtime_interpreters_head.and_then(|o| mem.ptr_at(runtime, o)).unwrap_or(0);
    while next != 0 && interpreters.len() < MAX_INTERPRETERS {
        if !interpreters.contains(&next) {
            interpreters.push(next);
        }
        next = layout.interp_next.and_then(|o| mem.ptr_at(next, o)).unwrap_or(0);
    }
    let str_type = symbol("PyUnicode_Type").unwrap_or(0);
    let py = PyTarget { runtime, interpreters, str_type };
    Ok(Target { version, layout, note, py, dump_threads: HashMap::new() })
}

/// "3.X": `Py_Version` (3.11+), the 3.13+ debug offsets' version, else the file name.
fn version(symbol: Symbols, mem: &dyn Memory, runtime: u64, object_file: Option<&str>) -> Option<String> {
    let hex = symbol("Py_Version").and_then(|a| mem.read_u32(a)).map(u64::from).or_else(|| {
        let mut cookie = [0u8; 8];
        (mem.read(runtime, &mut cookie) && &cookie == b"xdebugpy").then(|| mem.read_u64(runtime + 8))?
    });
    let minor = match hex.and_then(pylayout::version::from_hex) {
        Some([_, minor, _]) => minor,
        None => pylayout::version::minor_in_file_name(object_file?)?,
    };
    Some(format!("3.{minor}"))
}
