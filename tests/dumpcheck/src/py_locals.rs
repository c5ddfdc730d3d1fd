//! `dumpcheck --py-locals PID INFO`: the locals of a stopped Python process's frame, read
//! from /proc/PID/mem with pylayout's objects and locals decoders, as JSON.
//!
//! INFO (JSON, written by the test script itself) gives the interpreter's minor version,
//! the thread state to walk, `_PyRuntime`'s address (0 if unknown; 3.13+ then reads the
//! runtime's own debug offsets), the builtin objects' addresses (`id(None)`, `id(int)` …),
//! the name of the function whose innermost frame to show, and names to look up as py-print
//! does. Printed: every local (name, kind, value address, repr) and each name's repr.

use pylayout::locals::{frame_global, frame_locals, LocalKind};
use pylayout::objects::{decode, Limits, ObjectTypes};
use pylayout::text::{for_each_char, StrRead};
use pylayout::walk::for_each_frame;
use pylayout::{debug_offsets, layout::LAYOUTS_JSON, Layout, Memory};
use serde_json::{json, Value};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Another process's memory through /proc/PID/mem (the process is stopped).
struct ProcMem(File);

impl Memory for ProcMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.0.read_exact_at(buf, addr).is_ok()
    }
}

pub fn main(pid: &str, info_path: &str) -> Result<(), String> {
    let info: Value = std::fs::read_to_string(info_path)
        .map_err(|e| format!("{info_path}: {e}"))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{info_path}: {e}")))?;
    let mem = ProcMem(File::open(format!("/proc/{pid}/mem")).map_err(|e| format!("/proc/{pid}/mem: {e}"))?);
    let minor = info["minor"].as_u64().ok_or("INFO lacks minor")? as u8;
    let mut layout = Layout::for_version(3, minor).map_err(|e| e.to_string())?;
    let runtime = info["runtime"].as_u64().unwrap_or(0);
    let offsets = if minor >= 13 && runtime != 0 {
        match debug_offsets::apply(&mem, &mut layout, runtime, LAYOUTS_JSON) {
            Ok(checked) => json!({"read": checked.fields_read, "differences": checked.differences}),
            Err(e) => json!({"error": e.to_string()}),
        }
    } else {
        Value::Null
    };
    let mut types = ObjectTypes::default();
    for (field, _) in ObjectTypes::SYMBOLS {
        types.set(field, info["types"][field].as_u64().ok_or(format!("INFO lacks types.{field}"))?);
    }
    let tstate = info["tstate"].as_u64().ok_or("INFO lacks tstate")?;
    let function = info["function"].as_str().ok_or("INFO lacks function")?;
    let mut frame = None;
    for_each_frame(&mem, &layout, tstate, 0, &mut |f| {
        if code_name(&mem, &layout, types.str_, f.code).as_deref() == Some(function) {
            frame = Some(f.frame);
        }
        frame.is_none()
    });
    let frame = frame.ok_or(format!("no frame of {function} on thread state {tstate:#x}"))?;
    let limits = Limits::default();
    let show = |addr: u64| decode(&mem, &layout, &types, addr, &limits).to_string();
    let locals: Vec<Value> = frame_locals(&mem, &layout, &types, frame)
        .ok_or("frame_locals failed")?
        .iter()
        .map(|l| {
            let kind = match l.kind {
                LocalKind::Local => "local",
                LocalKind::Cell => "cell",
                LocalKind::Free => "free",
            };
            let repr = (l.value != 0).then(|| show(l.value));
            json!({"name": l.name, "kind": kind, "value": l.value, "repr": repr})
        })
        .collect();
    let mut globals = serde_json::Map::new();
    for name in info["globals"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let value = frame_global(&mem, &layout, &types, frame, name).map(show);
        globals.insert(name.into(), value.into());
    }
    println!("{}", json!({"locals": locals, "globals": globals, "debug_offsets": offsets}));
    Ok(())
}

fn code_name(mem: &dyn Memory, layout: &Layout, str_type: u64, code: u64) -> Option<String> {
    let name = mem.ptr_at(code, layout.code_name?)?;
    let mut text = String::new();
    let mut push = |c: u32| text.extend(char::from_u32(c));
    matches!(for_each_char(mem, layout, str_type, name, 256, &mut push), StrRead::Done { .. }).then_some(text)
}
