//! Python values of a frame (py-locals, py-print), with pylayout's object decoder.

use super::protocol::Gdb;
use super::target::Target;
use pylayout::locals::{frame_global_scope, frame_locals, Scope};
use pylayout::objects::{decode, Limits, ObjectTypes};
use pylayout::Memory;

/// The builtin objects' addresses, asked of gdb by their exported symbols.
pub(super) fn types(gdb: &Gdb) -> ObjectTypes {
    types_from(&|name| gdb.symbol(name))
}

/// The builtin objects' addresses from a symbol lookup.
pub(crate) fn types_from(symbol: super::target::Symbols) -> ObjectTypes {
    let mut types = ObjectTypes::default();
    for (field, name) in ObjectTypes::SYMBOLS {
        types.set(field, symbol(name).unwrap_or(0));
    }
    types
}

fn shown(mem: &dyn Memory, target: &Target, types: &ObjectTypes, addr: u64) -> String {
    decode(mem, &target.layout, types, addr, &Limits::default()).to_string()
}

/// `(name, value text)` of each bound local variable of the Python frame at `frame`.
pub fn locals(
    gdb: &Gdb,
    mem: &dyn Memory,
    target: &Target,
    frame: u64,
) -> Result<Vec<(String, String)>, String> {
    let types = types(gdb);
    let found = frame_locals(mem, &target.layout, &types, frame)
        .ok_or_else(|| unreadable_locals(mem, target, frame))?;
    Ok(found
        .into_iter()
        .filter(|l| l.value != 0)
        .map(|l| {
            let text = shown(mem, target, &types, l.value);
            (l.name, text)
        })
        .collect())
}

/// Why `frame_locals` found nothing. A frame whose code object reads (py-bt shows it) but
/// whose locals do not is what a core converted from a crashcatch minidump looks like
/// unless the program asked for the locals: say how to get them.
fn unreadable_locals(mem: &dyn Memory, target: &Target, frame: u64) -> String {
    let shown = pylayout::walk::frame_step(mem, &target.layout, frame, 0).and_then(|(shown, _)| shown);
    if shown.is_some_and(|f| f.code != 0) {
        "the frame's local variables are not in memory: a crashcatch minidump (and the core \
         `crashcatch core` makes of it) holds them only if the program called \
         crashcatch.enable(dump_locals=True) (off by default: local variables can hold secrets)"
            .into()
    } else {
        "the frame's local variables cannot be read (its frame or code object is unreadable)".into()
    }
}

/// The value of `name` in the frame at `frame`: a local, else a global or builtin; with
/// where it was found ("local", "global").
pub fn lookup(
    gdb: &Gdb,
    mem: &dyn Memory,
    target: &Target,
    frame: u64,
    name: &str,
) -> Result<(&'static str, String), String> {
    let types = types(gdb);
    let local = frame_locals(mem, &target.layout, &types, frame)
        .unwrap_or_default()
        .into_iter()
        .find(|l| l.name == name && l.value != 0);
    if let Some(l) = local {
        return Ok(("local", shown(mem, target, &types, l.value)));
    }
    match frame_global_scope(mem, &target.layout, &types, frame, name) {
        Some((addr, Scope::Global)) => Ok(("global", shown(mem, target, &types, addr))),
        Some((addr, Scope::Builtin)) => Ok(("builtin", shown(mem, target, &types, addr))),
        None => Err(format!("{name:?} is not a local, global or builtin name of the selected Python frame")),
    }
}
