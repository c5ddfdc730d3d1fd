//! The requests gdb's side makes, each answered from the target's memory.

use super::modules::{self, Program};
use super::protocol::Gdb;
use super::remote::RemoteMemory;
use super::target::{self, Target};
use super::values;
use crate::crash::{Crash, Thread};
use crate::merge::{merge, Entry, Plumbing};
use crate::native::{LoadedModule, Modules, NativeFrame};
use crate::python::{decode_python, PyThreadStack};
use crate::render;
use pylayout::objects::ObjectTypes;
use pylayout::thread_names::python_thread_names;
use pylayout::walk;
use serde::Deserialize;
use serde_json::{json, Value};

/// One native frame as gdb's unwinder found it, innermost first.
#[derive(Clone, Debug, Deserialize)]
pub struct GdbFrame {
    pub level: u32,
    pub pc: u64,
    /// The stack pointer while this frame runs.
    pub sp: u64,
    /// gdb rebuilt it from DWARF (an inlined call): shares its caller's registers.
    #[serde(default)]
    pub inline: bool,
    /// Its pc is a return address (not the innermost frame, nor one interrupted by a signal).
    #[serde(default)]
    pub caller: bool,
    pub name: Option<String>,
    /// The file name of the module holding `pc`, as gdb knows it.
    pub module: Option<String>,
}

/// A thread as gdb knows it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GdbThread {
    /// The OS thread id (LWP).
    pub tid: u64,
    /// `pthread_t` (fs_base on x86-64 glibc): how ≤3.10 thread states name their thread.
    pub pthread: Option<u64>,
    pub name: Option<String>,
    #[serde(default)]
    pub native: Vec<GdbFrame>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Request {
    pub op: String,
    #[serde(default)]
    pub thread: GdbThread,
    #[serde(default)]
    pub threads: Vec<GdbThread>,
    /// The file defining `_PyRuntime`.
    pub runtime_file: Option<String>,
    #[serde(default)]
    pub program_phdr: u64,
    #[serde(default)]
    pub program_phnum: u64,
    #[serde(default)]
    pub program_path: String,
    /// A Python frame's address (py-locals, py-print).
    #[serde(default)]
    pub frame: u64,
    #[serde(default)]
    pub name: String,
    /// cc-bt: also the interpreter's plumbing frames.
    #[serde(default)]
    pub full: bool,
}

/// The state kept between requests: the modules' parsed files (reused while the target's
/// module list stays the same).
#[derive(Default)]
pub struct Session {
    modules: Option<(Vec<LoadedModule>, Modules)>,
}

pub fn handle(gdb: &Gdb, session: &mut Session, req: &Request) -> Result<Value, String> {
    let mem = RemoteMemory::new(gdb);
    if req.op == "ping" {
        return Ok(json!({"version": env!("CARGO_PKG_VERSION")}));
    }
    let target = target::discover(gdb, &mem, req.runtime_file.as_deref())?;
    match req.op.as_str() {
        "stack" => stack(&mem, &target, &req.thread, &req.program_path),
        "cc_bt" => cc_bt(session, &mem, &target, req),
        "threads" => threads(&mem, &target, &values::types(gdb), &req.threads),
        "locals" => {
            let shown = values::locals(gdb, &mem, &target, req.frame)?;
            Ok(json!({"locals": shown}))
        }
        "print" => {
            let (scope, value) = values::lookup(gdb, &mem, &target, req.frame, &req.name)?;
            Ok(json!({"scope": scope, "value": value}))
        }
        other => Err(format!(
            "unknown request {other:?}: the gdb script and the helper are not from the same crashcatch"
        )),
    }
}

/// Every thread's Python stack. `threads`: the gdb threads whose native stacks are known:
/// their stack ranges tell the eval loop's entry frames (on the C stack, 3.12+) from the
/// interpreter's own.
fn decode(
    mem: &RemoteMemory,
    target: &Target,
    threads: &[&GdbThread],
) -> (Vec<PyThreadStack>, Option<String>) {
    let ranges: Vec<(u64, u64)> = threads
        .iter()
        .filter_map(|t| {
            let sp = t.native.iter().map(|f| f.sp);
            Some((sp.clone().min()?, sp.max()?))
        })
        .collect();
    let on_c_stack = |addr: u64| ranges.iter().any(|&(lo, hi)| addr >= lo && addr <= hi);
    let (stacks, problem, _) = decode_python(mem, &target.py, &target.version, &on_c_stack, None);
    (stacks, problem)
}

/// The Python stack of gdb's thread `t`.
fn stack_of<'s>(stacks: &'s [PyThreadStack], target: &Target, t: &GdbThread) -> Option<&'s PyThreadStack> {
    // 3.11+ records the OS thread id; before, only pthread_t.
    let by_tid = target.layout.tstate_native_thread_id.is_some();
    stacks.iter().find(|s| {
        if by_tid {
            s.native_thread_id == Some(t.tid)
        } else {
            t.pthread.is_some() && s.thread_id == t.pthread
        }
    })
}

/// A thread for `merge`, with gdb's frames (and gdb's names) as its native stack.
fn thread_for_merge(t: &GdbThread, py: PyThreadStack, native: Vec<NativeFrame>) -> Thread {
    Thread {
        tid: t.tid as u32,
        name: t.name.clone(),
        python_name: None,
        holds_gil: false,
        python: py.frames,
        python_problem: py.problem,
        python_calls: py.eval_calls,
        native,
        native_stopped: None,
        native_gap: None,
    }
}

fn named_by_gdb(frames: &[GdbFrame]) -> Vec<NativeFrame> {
    frames
        .iter()
        .map(|f| NativeFrame {
            address: f.pc,
            module: f.module.clone(),
            module_offset: 0,
            function: f.name.clone(),
            file: None,
            line: None,
            inlined: f.inline,
            trust: "gdb",
            sp: f.sp,
            symbol_source: None,
        })
        .collect()
}

/// `py-bt`, `py-up`… and the frame filter: the selected thread's Python frames, each with
/// the level of the gdb frame (the eval loop's) that runs it, where the stacks line up; and
/// the levels of the interpreter's plumbing frames, which `crashcatch symbolize` hides.
fn stack(mem: &RemoteMemory, target: &Target, t: &GdbThread, program_path: &str) -> Result<Value, String> {
    let (stacks, problem) = decode(mem, target, &[t]);
    let Some(py) = stack_of(&stacks, target, t).cloned() else {
        return Err(format!(
            "thread {} runs no Python code (Python {}: it has no thread state{})",
            t.tid,
            target.version,
            problem.map_or(String::new(), |p| format!("; {p}"))
        ));
    };
    let thread = thread_for_merge(t, py, named_by_gdb(&t.native));
    // The program is the interpreter (the eval loop's module is added by `merge`).
    let program = std::path::Path::new(program_path).file_name().map(|n| n.to_string_lossy().into_owned());
    let merged = merge(&thread, &Plumbing { interpreter: program.into_iter().collect(), collector: None });
    let mut level = vec![None; thread.python.len()];
    let mut pending = Vec::new();
    let mut plumbing = Vec::new();
    for e in &merged.entries {
        match e {
            Entry::Python { index, .. } => pending.push(*index),
            Entry::Native { frame, plumbing: glue } => {
                let at = thread.native.iter().position(|n| std::ptr::eq(n, *frame));
                let gdb_level = at.and_then(|i| t.native.get(i)).map(|f| f.level);
                for i in pending.drain(..) {
                    level[i] = gdb_level;
                }
                plumbing.extend(gdb_level.filter(|_| *glue));
            }
            Entry::Gap { .. } => {}
        }
    }
    let frames: Vec<Value> = thread
        .python
        .iter()
        .zip(level)
        .map(|(f, level)| {
            json!({
                "file": f.file.as_deref(),
                "function": f.function(),
                "name": f.name.as_deref(),
                "line": f.line,
                "address": f.address,
                "level": level,
            })
        })
        .collect();
    let status = match merged.status {
        crate::merge::Status::Separate(why) => Some(why),
        _ => None,
    };
    Ok(json!({
        "version": target.version,
        "frames": frames,
        "problem": thread.python_problem,
        "not_merged": status,
        "plumbing": plumbing,
    }))
}

/// The target's modules with their files parsed, kept while the list is unchanged.
fn modules<'s>(session: &'s mut Session, mem: &RemoteMemory, req: &Request) -> &'s Modules {
    let program =
        Program { phdr: req.program_phdr, phnum: req.program_phnum, path: req.program_path.clone() };
    let listed = modules::loaded(mem, &program);
    match &session.modules {
        Some((known, _)) if *known == listed => {}
        _ => session.modules = Some((listed.clone(), Modules::from_list(&listed, &[]))),
    }
    &session.modules.as_ref().expect("set above").1
}

/// `cc-bt`: the merged stack of each thread, as `crashcatch symbolize` prints it.
fn cc_bt(session: &mut Session, mem: &RemoteMemory, target: &Target, req: &Request) -> Result<Value, String> {
    let all: Vec<&GdbThread> = req.threads.iter().collect();
    let (stacks, problem) = decode(mem, target, &all);
    let gil = target
        .py
        .interpreters
        .first()
        .and_then(|&i| walk::gil_holder(mem, &target.layout, target.py.runtime, i));
    let modules = modules(session, mem, req);
    let mut threads = Vec::new();
    for t in &req.threads {
        let py = stack_of(&stacks, target, t).cloned();
        let tstate = py.as_ref().map(|p| p.tstate);
        let empty = PyThreadStack {
            tstate: 0,
            thread_id: None,
            native_thread_id: None,
            frames: Vec::new(),
            problem: None,
            eval_calls: Some(Vec::new()),
        };
        let mut thread = thread_for_merge(t, py.unwrap_or(empty), symbolized(modules, &t.native));
        thread.holds_gil = tstate.is_some() && tstate == gil;
        threads.push(thread);
    }
    let crash = Crash {
        path: Default::default(),
        metadata: Value::Null,
        kind: "debugger".into(),
        exits_after_dump: false,
        signal: 0,
        fault_address: 0,
        crashed_tid: None,
        python_version: target.version.clone(),
        threads,
        python_problem: problem,
        python_layout: target.note.clone(),
        modules_without_symbols: Vec::new(),
        plumbing: modules.plumbing(),
        left_out: Vec::new(),
    };
    let style = render::Style::new(false);
    let mut text = String::new();
    for (i, t) in crash.threads.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        render::thread_text(&mut text, &crash, t, &style, req.full);
    }
    Ok(json!({"text": text.replace("--native-all shows them", "`cc-bt full` shows them")}))
}

/// gdb's frames named with the symbolizer's own DWARF code: gdb's inlined frames are left
/// out, the symbolizer finds them again.
fn symbolized(modules: &Modules, frames: &[GdbFrame]) -> Vec<NativeFrame> {
    frames
        .iter()
        .filter(|f| !f.inline)
        .flat_map(|f| {
            let lookup = if f.caller { f.pc.wrapping_sub(1) } else { f.pc };
            let trust = if f.level == 0 { "context" } else { "cfi" };
            modules.symbolize(f.pc, lookup, trust, f.sp)
        })
        .collect()
}

/// `cc-threads`: each gdb thread with its thread state, GIL, innermost Python frame, and
/// Python thread name (`threading.Thread.name`, matched by ident = `pthread_self()`).
fn threads(
    mem: &RemoteMemory,
    target: &Target,
    types: &ObjectTypes,
    gdb_threads: &[GdbThread],
) -> Result<Value, String> {
    let (stacks, problem) = decode(mem, target, &[]);
    let names: Vec<(u64, String)> = target
        .py
        .interpreters
        .iter()
        .flat_map(|&i| python_thread_names(mem, &target.layout, types, i))
        .collect();
    let gil = target
        .py
        .interpreters
        .first()
        .and_then(|&i| walk::gil_holder(mem, &target.layout, target.py.runtime, i));
    let rows: Vec<Value> = gdb_threads
        .iter()
        .map(|t| {
            let py = stack_of(&stacks, target, t);
            let top = py.and_then(|p| p.frames.first());
            let ident = py.and_then(|p| p.thread_id).or(t.pthread);
            let python_name = ident.and_then(|id| names.iter().find(|(i, _)| *i == id)).map(|(_, n)| n);
            json!({
                "tid": t.tid,
                "python_name": python_name,
                "tstate": py.map(|p| p.tstate),
                "holds_gil": py.is_some_and(|p| Some(p.tstate) == gil),
                "function": top.and_then(|f| f.function()),
                "file": top.and_then(|f| f.file.as_deref()),
                "line": top.and_then(|f| f.line),
                "frames": py.map(|p| p.frames.len()),
            })
        })
        .collect();
    Ok(json!({"version": target.version, "threads": rows, "problem": problem, "gil_free": gil.is_none()}))
}
