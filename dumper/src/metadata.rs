//! The crashcatch metadata stream: what a reader on another machine needs beside the raw
//! dump — versions, command line, the text report, thread names, annotations and the
//! source lines around the requesting thread's Python frames. Schema: docs/minidump.md.

use crate::procmem::ProcessMemory;
use crate::pymem::PyThreadInfo;
use crate::source::SourceReader;
use handoff::{Kind, Request};
use pylayout::text::for_each_char;
use pylayout::thread_names::PythonThread;
use pylayout::walk;
use pylayout::{lines, Layout, Memory, TypeAddrs};
use rustc_hash::FxHashMap as IntMap;
use serde_json::{json, Value};

/// Report text kept at most.
const MAX_REPORT: u64 = 1 << 20;
/// Annotation bytes read at most.
const MAX_ANNOTATIONS: u64 = 64 * 1024;
/// Python frames of the requesting thread given source context.
const MAX_SOURCE_FRAMES: usize = 64;

/// The thread state an OS thread is running, and the one in crashcatch's interpreter that
/// called into it when that is another (a subinterpreter's). Only the requesting thread
/// knows its own (`req.tstate`); any other thread is shown in crashcatch's interpreter.
fn thread_states<'a>(
    req: &Request,
    py_threads: &'a [PyThreadInfo],
    homes: &IntMap<u64, &'a PyThreadInfo>,
    tid: i32,
) -> (Option<&'a PyThreadInfo>, Option<&'a PyThreadInfo>) {
    let home = homes.get(&(tid as u64)).copied();
    let running = (tid == req.tid && req.tstate != 0)
        .then(|| py_threads.iter().find(|t| t.tstate == req.tstate && t.interp != req.interp))
        .flatten();
    match running {
        Some(r) => (Some(r), home.filter(|h| h.tstate != r.tstate)),
        None => (home, None),
    }
}

/// Each OS thread's home thread state: its first in crashcatch's interpreter, else its
/// first in any (one pass: a search per OS thread was quadratic in the thread count).
fn home_states<'a>(req: &Request, py_threads: &'a [PyThreadInfo]) -> IntMap<u64, &'a PyThreadInfo> {
    let mut homes: IntMap<u64, &PyThreadInfo> = IntMap::default();
    for t in py_threads {
        let Some(tid) = t.native_thread_id else { continue };
        let home = homes.entry(tid).or_insert(t);
        if home.interp != req.interp && t.interp == req.interp {
            *home = t;
        }
    }
    homes
}

/// The threads the metadata lists, read once by the caller.
pub struct Threads<'a> {
    /// /proc/PID/task: (tid, comm), sorted.
    pub os: &'a [(i32, String)],
    /// The thread states the Python walk found.
    pub python: &'a [PyThreadInfo],
    /// The `threading` module's threads when already read whole; read here if None.
    pub threading: Option<&'a [PythonThread]>,
}

pub fn build(
    req: &Request,
    pid: i32,
    mem: &ProcessMemory,
    layout: Option<&Layout>,
    types: TypeAddrs,
    threads: &Threads,
) -> Value {
    let py_threads = threads.python;
    let kind = match Kind::from_u32(req.kind) {
        Some(Kind::Fatal) => "fatal-signal",
        Some(Kind::Signal) => "registered-signal",
        Some(Kind::Timeout | Kind::TimeoutExit) => "timeout",
        Some(Kind::Requested) => "requested",
        Some(Kind::External) => "external",
        None => "unknown",
    };
    let gil = layout.and_then(|l| walk::gil_holder(mem, l, req.runtime, req.interp));
    // The `threading` module's names, as they are now (read for the walk already).
    let py_names = layout.map(|l| threading_names(mem, l, req, threads)).unwrap_or_default();
    // The first name given to each thread id.
    let mut names_by_tid: IntMap<i32, &str> = IntMap::default();
    for (tid, name) in &py_names {
        names_by_tid.entry(*tid).or_insert(name);
    }
    let homes = home_states(req, py_threads);
    let os_list: Vec<Value> = threads
        .os
        .iter()
        .map(|&(tid, ref name)| {
            let (py, outer) = thread_states(req, py_threads, &homes, tid);
            let state = |t: &PyThreadInfo| {
                json!({
                    "thread_id": t.thread_id, "tstate": t.tstate, "interp": t.interp, "frames": t.frames,
                    "holds_gil": gil == Some(t.tstate),
                })
            };
            json!({
                "tid": tid,
                "name": name,
                "python_name": names_by_tid.get(&tid),
                "python": py.map(state),
                "python_outer": outer.map(state),
            })
        })
        .collect();
    let gc = layout.and_then(|l| walk::gc_collecting(mem, l, req.interp));
    json!({
        "crashcatch_version": env!("CARGO_PKG_VERSION"),
        "kind": kind,
        "exits_after_dump": matches!(Kind::from_u32(req.kind), Some(Kind::Fatal | Kind::TimeoutExit)),
        "signal": req.signo,
        "si_code": req.si_code,
        "fault_address": req.fault_addr,
        "requesting_tid": req.tid,
        "requesting_thread_id": req.pthread,
        "time_unix_ns": req.time_ns,
        "python": {
            "version": format!("{}.{}.{}", req.py_version[0], req.py_version[1], req.py_version[2]),
            "executable": std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.display().to_string()),
            "argv": cmdline(pid),
            "interp": req.interp,
            "runtime": req.runtime,
            "gc_collecting": gc,
            "gil_holder_tstate": gil,
        },
        "types": {"str": types.str_type, "code": types.code_type},
        "report": report(mem, req),
        "annotations": annotations(mem, req),
        "threads": os_list,
        "python_threads": py_threads.iter().map(|t| json!({
            "tstate": t.tstate, "interp": t.interp, "thread_id": t.thread_id,
            "native_thread_id": t.native_thread_id, "frames": t.frames,
        })).collect::<Vec<_>>(),
        "source": layout.map(|l| source_context(mem, l, types, req, py_threads)).unwrap_or_default(),
    })
}

/// The names the `threading` module gives the OS threads: by `Thread.native_id`, else by
/// the thread state that has its `ident` and an OS thread id.
fn threading_names(mem: &ProcessMemory, l: &Layout, req: &Request, threads: &Threads) -> Vec<(i32, String)> {
    let read;
    let listed = match threads.threading {
        Some(listed) => listed,
        None => {
            read = pylayout::thread_names::python_threads(mem, l, &object_types(req), req.interp);
            &read[..]
        }
    };
    // The first thread state with each pthread_self() value.
    let mut by_ident: IntMap<u64, &PyThreadInfo> = IntMap::default();
    for p in threads.python {
        by_ident.entry(p.thread_id).or_insert(p);
    }
    listed
        .iter()
        .filter_map(|t| {
            let by_state = || by_ident.get(&t.ident)?.native_thread_id;
            let tid = t.native_id.or_else(by_state)?;
            Some((i32::try_from(tid).ok()?, t.name.clone()))
        })
        .collect()
}

/// The builtin objects' addresses the requester recorded, for the object decoder.
pub fn object_types(req: &Request) -> pylayout::objects::ObjectTypes {
    let mut types = pylayout::objects::ObjectTypes::default();
    for ((field, _), &addr) in pylayout::objects::ObjectTypes::SYMBOLS.iter().zip(&req.object_types) {
        types.set(field, addr);
    }
    types
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The text report the requester wrote for this event.
pub fn report(mem: &ProcessMemory, req: &Request) -> String {
    read_text(mem, req.report_addr, req.report_len.min(MAX_REPORT))
}

fn read_text(mem: &ProcessMemory, addr: u64, len: u64) -> String {
    let mut buf = vec![0u8; len as usize];
    if addr == 0 || !mem.read(addr, &mut buf) {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// `key\0value\0` pairs.
fn annotations(mem: &ProcessMemory, req: &Request) -> Value {
    let text = read_text(mem, req.annotations_addr, req.annotations_len.min(MAX_ANNOTATIONS));
    let mut map = serde_json::Map::new();
    let mut parts = text.split('\0');
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if !k.is_empty() {
            map.insert(k.to_string(), Value::String(v.to_string()));
        }
    }
    Value::Object(map)
}

fn py_str(mem: &ProcessMemory, l: &Layout, types: TypeAddrs, obj: u64) -> Option<String> {
    let mut s = String::new();
    let r =
        for_each_char(mem, l, types.str_type, obj, 4096, &mut |c| s.push(char::from_u32(c).unwrap_or('?')));
    matches!(r, pylayout::text::StrRead::Done { .. }).then_some(s)
}

/// For each Python frame of the requesting thread: file, function, line, and the source
/// lines around it, read now from disk so the dump can be read elsewhere.
fn source_context(
    mem: &ProcessMemory,
    l: &Layout,
    types: TypeAddrs,
    req: &Request,
    py_threads: &[PyThreadInfo],
) -> Vec<Value> {
    // ≤3.10 thread states have no native id: match pthread_self() instead.
    let Some(thread) = py_threads
        .iter()
        .find(|t| t.native_thread_id == Some(req.tid as u64))
        .or_else(|| py_threads.iter().find(|t| t.thread_id == req.pthread))
    else {
        return Vec::new();
    };
    let context = req.source_context as i64;
    let mut reader = SourceReader::new();
    let mut frames = Vec::new();
    walk::for_each_frame(mem, l, thread.tstate, 0, &mut |f| {
        frames.push(f);
        frames.len() < MAX_SOURCE_FRAMES
    });
    frames
        .into_iter()
        .map(|f| {
            let file = l.code_filename.and_then(|o| mem.ptr_at(f.code, o)).and_then(|s| py_str(mem, l, types, s));
            let name = l
                .code_qualname
                .or(l.code_name)
                .and_then(|o| mem.ptr_at(f.code, o))
                .and_then(|s| py_str(mem, l, types, s));
            let line = lines::addr_to_line(mem, l, f.code, f.addr);
            let text = match (&file, line) {
                (Some(path), Some(line)) if line > 0 => {
                    reader.lines(path, line as i64 - context, line as i64 + context)
                }
                _ => Vec::new(),
            };
            json!({"file": file, "function": name, "line": line, "first_line": line.map(|n| (n as i64 - context).max(1)), "lines": text})
        })
        .collect()
}
