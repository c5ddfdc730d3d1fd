//! The requests gdb's side makes, each answered from the target's memory.

use super::dumpfile::{self, DumpThread};
use super::modules::{self, Program};
use super::protocol::Gdb;
use super::remote::RemoteMemory;
use super::target::{self, Target};
use super::unwound::{self, DebuggerModule, Regs};
use super::values;
use crate::crash::{Crash, Thread};
use crate::merge::{merge, Entry, Plumbing};
use crate::native::{LoadedModule, Modules, NativeFrame};
use crate::python::{decode_python, PyThreadStack};
use crate::render;
use crate::unwind::{self, Space};
use pylayout::objects::ObjectTypes;
use pylayout::thread_names::python_thread_names;
use pylayout::walk;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

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
    /// Its innermost frame's registers: with `"unwind": true` the helper unwinds from them.
    #[serde(default)]
    pub regs: Option<Regs>,
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
    /// Unwind each thread with crashcatch's CFI unwinder from its `regs` (lldb's side); the
    /// debugger's own frames then only give levels.
    #[serde(default)]
    pub unwind: bool,
    /// The target's modules as the debugger lists them; without them, the link_map walk
    /// from `program_phdr`.
    pub modules: Option<Vec<DebuggerModule>>,
    /// The core file the debugger opened: a crashcatch minidump's metadata names each
    /// thread's thread state (≤3.10 matches them by fs_base, which lldb cannot read there).
    pub core_file: Option<String>,
    /// The debugger's memory regions, `[start, end, perms]`: code and stack bounds for the
    /// unwinder.
    #[serde(default)]
    pub regions: Vec<(u64, u64, String)>,
}

/// Native frames unwound per thread at most (a runaway recursion has millions).
const MAX_UNWOUND_FRAMES: usize = 20_000;

/// The state kept between requests: the modules' parsed files (reused while the target's
/// module list stays the same).
#[derive(Default)]
pub struct Session {
    known: Option<Known>,
    /// The core file last asked about, and its threads (`dumpfile`).
    dump: Option<(String, HashMap<u64, DumpThread>)>,
}

pub fn handle(gdb: &Gdb, session: &mut Session, req: &Request) -> Result<Value, String> {
    let mem = RemoteMemory::new(gdb);
    if req.op == "ping" {
        return Ok(json!({"version": env!("CARGO_PKG_VERSION")}));
    }
    let mut target = target::discover(&|name| gdb.symbol(name), &mem, req.runtime_file.as_deref(), None)?;
    if let Some(path) = &req.core_file {
        if session.dump.as_ref().is_none_or(|(known, _)| known != path) {
            session.dump = Some((path.clone(), dumpfile::threads(std::path::Path::new(path))));
        }
        target.dump_threads = session.dump.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
    }
    match req.op.as_str() {
        "stack" => stack(session, &mem, &target, req),
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
            "unknown request {other:?}: the debugger script and the helper are not from the same crashcatch"
        )),
    }
}

/// A thread's native frames for the merge, and where they came from.
struct Native {
    frames: Vec<NativeFrame>,
    /// Why crashcatch's own unwind stopped early.
    stopped: Option<String>,
    /// The debugger's level of each frame (None where its unwind did not get there).
    levels: Vec<Option<u32>>,
}

impl Native {
    /// The debugger's frames as they are (gdb's unwind and gdb's names): py-bt, py-up….
    fn as_named(t: &GdbThread) -> Native {
        let frames = t
            .native
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
            .collect();
        Native { frames, stopped: None, levels: t.native.iter().map(|f| Some(f.level)).collect() }
    }

    /// The debugger's frames named with the symbolizer's own DWARF code (cc-bt): its
    /// inlined frames are left out, the symbolizer finds them again.
    fn symbolized(modules: &Modules, t: &GdbThread) -> Native {
        let frames = t
            .native
            .iter()
            .filter(|f| !f.inline)
            .flat_map(|f| {
                let lookup = if f.caller { f.pc.wrapping_sub(1) } else { f.pc };
                let trust = if f.level == 0 { "context" } else { "cfi" };
                modules.symbolize(f.pc, lookup, trust, f.sp)
            })
            .collect();
        Native { frames, stopped: None, levels: Vec::new() }
    }

    /// crashcatch's own unwind from the thread's registers; the debugger's frames give levels.
    fn unwound(known: &Known, mem: &RemoteMemory, t: &GdbThread) -> Native {
        let Some(r) = t.regs else {
            let stopped = Some("the debugger gave no registers for this thread".to_string());
            return Native { frames: Vec::new(), stopped, levels: Vec::new() };
        };
        let regs = (r.rip, r.rsp, r.rbp);
        let stack = unwind::unwind(&known.modules, mem, &known.space, regs, MAX_UNWOUND_FRAMES, None);
        let levels = unwound::levels(&stack.frames, &t.native);
        Native { frames: stack.frames, stopped: stack.stopped, levels }
    }

    /// [lowest, highest] stack pointer of its frames.
    fn stack_range(&self) -> Option<(u64, u64)> {
        let sp = self.frames.iter().map(|f| f.sp);
        Some((sp.clone().min()?, sp.max()?))
    }
}

/// Every thread's Python stack. `natives`: the threads whose native stacks are known: their
/// stack ranges tell the eval loop's entry frames (on the C stack, 3.12+) from the
/// interpreter's own.
fn decode(mem: &RemoteMemory, target: &Target, natives: &[&Native]) -> (Vec<PyThreadStack>, Option<String>) {
    let ranges: Vec<(u64, u64)> = natives.iter().filter_map(|n| n.stack_range()).collect();
    let on_c_stack = |addr: u64| ranges.iter().any(|&(lo, hi)| addr >= lo && addr <= hi);
    let (stacks, problem, _) = decode_python(mem, &target.py, &target.version, &on_c_stack, None);
    (stacks, problem)
}

/// The Python stack of gdb's thread `t`.
fn stack_of<'s>(stacks: &'s [PyThreadStack], target: &Target, t: &GdbThread) -> Option<&'s PyThreadStack> {
    // 3.11+ records the OS thread id; before, only pthread_t.
    let by_tid = target.layout.tstate_native_thread_id.is_some();
    // A minidump opened in lldb: no fs_base, but the dump's metadata names the thread state.
    let from_dump = target
        .dump_threads
        .get(&t.tid)
        .and_then(|d| d.tstate)
        .filter(|_| !by_tid && t.pthread.unwrap_or(0) == 0);
    stacks.iter().find(|s| match from_dump {
        Some(tstate) => s.tstate == tstate,
        None if by_tid => s.native_thread_id == Some(t.tid),
        None => t.pthread.is_some() && s.thread_id == t.pthread,
    })
}

/// The thread's OS name: the debugger's, else the opened dump's (lldb reads none from it).
fn os_name(t: &GdbThread, target: &Target) -> Option<String> {
    t.name.clone().or_else(|| target.dump_threads.get(&t.tid).and_then(|d| d.name.clone()))
}

/// A thread for `merge`.
fn thread_for_merge(t: &GdbThread, target: &Target, py: PyThreadStack, native: Native) -> Thread {
    Thread {
        tid: t.tid as u32,
        name: os_name(t, target),
        python_name: None,
        holds_gil: false,
        python: py.frames,
        python_problem: py.problem,
        python_calls: py.eval_calls,
        native: native.frames,
        native_stopped: native.stopped,
        native_gap: None,
    }
}

/// `py-bt`, `py-up`… and the frame filter: the selected thread's Python frames, each with
/// the level of the debugger frame (the eval loop's) that runs it, where the stacks line up;
/// and the levels of the interpreter's plumbing frames, which `crashcatch symbolize` hides.
/// With `"unwind"`, also crashcatch's own native frames and where each Python frame runs.
fn stack(session: &mut Session, mem: &RemoteMemory, target: &Target, req: &Request) -> Result<Value, String> {
    let t = &req.thread;
    let native =
        if req.unwind { Native::unwound(known(session, mem, req), mem, t) } else { Native::as_named(t) };
    let (stacks, problem) = decode(mem, target, &[&native]);
    let Some(py) = stack_of(&stacks, target, t).cloned() else {
        return Err(format!(
            "thread {} runs no Python code (Python {}: it has no thread state{})",
            t.tid,
            target.version,
            problem.map_or(String::new(), |p| format!("; {p}"))
        ));
    };
    let levels = native.levels.clone();
    let thread = thread_for_merge(t, target, py, native);
    // The program is the interpreter (the eval loop's module is added by `merge`).
    let program =
        std::path::Path::new(&req.program_path).file_name().map(|n| n.to_string_lossy().into_owned());
    let merged = merge(&thread, &Plumbing { interpreter: program.into_iter().collect(), collector: None });
    let mut runs_in = vec![None; thread.python.len()];
    let mut pending = Vec::new();
    let mut plumbing = Vec::new();
    for e in &merged.entries {
        match e {
            Entry::Python { index, .. } => pending.push(*index),
            Entry::Native { frame, plumbing: glue } => {
                let at = thread.native.iter().position(|n| std::ptr::eq(n, *frame));
                for i in pending.drain(..) {
                    runs_in[i] = at;
                }
                let level = at.and_then(|i| levels.get(i).copied().flatten());
                plumbing.extend(level.filter(|_| *glue));
            }
            Entry::Gap { .. } => {}
        }
    }
    let frames: Vec<Value> = thread
        .python
        .iter()
        .zip(runs_in)
        .map(|(f, at)| {
            let mut frame = json!({
                "file": f.file.as_deref(),
                "function": f.function(),
                "name": f.name.as_deref(),
                "line": f.line,
                "address": f.address,
                "level": at.and_then(|i| levels.get(i).copied().flatten()),
            });
            if req.unwind {
                frame["native_index"] = json!(at);
            }
            frame
        })
        .collect();
    let status = match merged.status {
        crate::merge::Status::Separate(why) => Some(why),
        _ => None,
    };
    let mut reply = json!({
        "version": target.version,
        "frames": frames,
        "problem": thread.python_problem,
        "not_merged": status,
        "plumbing": plumbing,
    });
    if req.unwind {
        reply["native"] = thread
            .native
            .iter()
            .map(|f| {
                json!({"pc": f.address, "sp": f.sp, "function": f.function, "module": f.module,
                       "file": f.file, "line": f.line, "inlined": f.inlined})
            })
            .collect();
        reply["native_stopped"] = json!(thread.native_stopped);
    }
    Ok(reply)
}

/// The target's modules (their files parsed) and address space, kept while the module list
/// is unchanged.
struct Known {
    listed: Vec<LoadedModule>,
    modules: Modules,
    space: Space,
}

/// The target's modules: the debugger's list, or the link_map walk from the program headers.
fn known<'s>(session: &'s mut Session, mem: &RemoteMemory, req: &Request) -> &'s Known {
    let listed = match &req.modules {
        Some(list) => list.iter().map(DebuggerModule::loaded).collect(),
        None => {
            let program =
                Program { phdr: req.program_phdr, phnum: req.program_phnum, path: req.program_path.clone() };
            modules::loaded(mem, &program)
        }
    };
    let space = unwound::space(&req.regions, &listed);
    match &mut session.known {
        Some(k) if k.listed == listed => k.space = space,
        _ => session.known = Some(Known { modules: Modules::from_list(&listed, &[], None), listed, space }),
    }
    session.known.as_ref().expect("set above")
}

/// `cc-bt`: the merged stack of each thread, as `crashcatch symbolize` prints it.
fn cc_bt(session: &mut Session, mem: &RemoteMemory, target: &Target, req: &Request) -> Result<Value, String> {
    let known = known(session, mem, req);
    let natives: Vec<Native> =
        req.threads
            .iter()
            .map(|t| {
                if req.unwind {
                    Native::unwound(known, mem, t)
                } else {
                    Native::symbolized(&known.modules, t)
                }
            })
            .collect();
    let (stacks, problem) = decode(mem, target, &natives.iter().collect::<Vec<_>>());
    let gil = target
        .py
        .interpreters
        .first()
        .and_then(|&i| walk::gil_holder(mem, &target.layout, target.py.runtime, i));
    let mut threads = Vec::new();
    for (t, native) in req.threads.iter().zip(natives) {
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
        let mut thread = thread_for_merge(t, target, py.unwrap_or(empty), native);
        thread.holds_gil = tstate.is_some() && tstate == gil;
        threads.push(thread);
    }
    let crash = Crash {
        path: Default::default(),
        input: "debugger",
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
        plumbing: known.modules.plumbing(),
        left_out: Vec::new(),
        damaged: None,
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
                "os_name": os_name(t, target),
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
