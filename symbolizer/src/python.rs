//! Python stacks decoded from a dump's memory alone (CPython 3.9–3.15, pylayout's tables),
//! with where each C-level call of the eval loop begins and ends.

use crate::pylines::{LineNumbers, MAX_LINE_TABLE_BYTES};
use pylayout::debug_offsets::{self, DebugOffsetsError};
use pylayout::text::{for_each_char, StrRead};
use pylayout::{walk, Layout, Memory};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One Python frame, innermost first. Names are shared between frames of the same code
/// (a deep recursion has thousands of frames and two or three distinct strings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyFrame {
    pub file: Option<Arc<str>>,
    /// `co_name`, and `co_qualname` where the version has one (3.11+).
    pub name: Option<Arc<str>>,
    pub qualname: Option<Arc<str>>,
    pub line: Option<i32>,
    /// The `PyInterpreterState*` of a subinterpreter the frame ran in; None for the
    /// interpreter crashcatch was enabled in.
    pub subinterpreter: Option<u64>,
    /// Where the frame is in the target (`walk::PyFrame::frame`): debuggers read its locals.
    pub address: u64,
}

/// Characters read of one Python string at most (file names, function names).
const MAX_STRING_CHARS: usize = 1024;

impl PyFrame {
    /// The most precise function name the version records.
    pub fn function(&self) -> Option<&str> {
        self.qualname.as_deref().or(self.name.as_deref())
    }
}

/// The Python stack of one thread state, as decoded from the dump.
#[derive(Clone, Debug)]
pub struct PyThreadStack {
    pub tstate: u64,
    pub thread_id: Option<u64>,
    pub native_thread_id: Option<u64>,
    pub frames: Vec<PyFrame>,
    /// Why the stack may be incomplete.
    pub problem: Option<String>,
    /// The C-level eval-loop calls that ran `frames`, innermost first; None if unknown.
    pub eval_calls: Option<Vec<EvalCall>>,
}

impl PyThreadStack {
    /// This stack, then `outer`'s (the frames that called into this one's interpreter).
    pub fn followed_by(mut self, outer: PyThreadStack) -> PyThreadStack {
        self.frames.extend(outer.frames);
        self.problem = match (self.problem, outer.problem) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        self.eval_calls = match (self.eval_calls, outer.eval_calls) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        self
    }
}

/// One C-level call of the eval loop, as the Python frame chain records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalCall {
    /// How many consecutive Python frames (innermost first) it ran.
    pub frames: usize,
    /// 3.12+: the address of its entry frame, a local variable of the eval function on the
    /// C stack — the native frame whose stack it lies in is this call's eval frame.
    pub entry: Option<u64>,
}

/// Where the structure offsets used to decode the dump came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayoutNote {
    /// "table", "table + debug offsets", "debug offsets", with why when they could not be read.
    pub source: String,
    /// `key: table → dump` where the dump's own offsets (3.13+) overrode the table.
    pub differences: Vec<String>,
}

/// What decoding needs besides the memory: a dump's metadata records it; a debugger finds
/// it in the live target (`debugger::target`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PyTarget {
    /// `&_PyRuntime` (0: unknown).
    pub runtime: u64,
    /// The interpreters whose threads to decode: the main one (crashcatch's) first.
    pub interpreters: Vec<u64>,
    /// `&PyUnicode_Type`.
    pub str_type: u64,
}

impl PyTarget {
    /// From crashcatch's metadata: the interpreter crashcatch was enabled in, then any
    /// subinterpreter a thread ran.
    pub fn from_metadata(meta: &Value) -> PyTarget {
        PyTarget {
            runtime: meta["python"]["runtime"].as_u64().unwrap_or(0),
            interpreters: interpreters(meta, meta["python"]["interp"].as_u64().unwrap_or(0)),
            str_type: meta["types"]["str"].as_u64().unwrap_or(0),
        }
    }
}

/// The layout for `version` ("3.X…"): the table's (built-in or `table`), then, from 3.13,
/// the offsets the runtime records for itself, which win where they differ.
pub fn layout_for(
    mem: &dyn Memory,
    runtime: u64,
    version: &str,
    table: Option<&str>,
) -> Result<(Layout, LayoutNote), String> {
    let mut parts = version.split('.').map(|p| p.parse::<u8>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let json = table.unwrap_or(pylayout::layout::LAYOUTS_JSON);
    let mut layout = Layout::from_table(json, major, minor).map_err(|e| e.to_string())?;
    let note = match debug_offsets::apply(mem, &mut layout, runtime, json) {
        Err(DebugOffsetsError::NotAvailable(_)) => LayoutNote { source: "table".into(), differences: vec![] },
        Ok(c) if c.differences.is_empty() => {
            LayoutNote { source: "table + debug offsets".into(), differences: vec![] }
        }
        Ok(c) => LayoutNote { source: "debug offsets".into(), differences: c.differences },
        Err(e) => LayoutNote { source: format!("table ({e})"), differences: Vec::new() },
    };
    Ok((layout, note))
}

/// Frames walked per thread at most (guards against cycles in corrupt dumps).
const MAX_PY_FRAMES: usize = 10_000;
/// Python frames decoded at most, all threads together: corrupt (e.g. cyclic) thread and
/// frame lists would otherwise cost walk::MAX_THREADS_WALKED times the per-thread limit.
const MAX_PY_FRAMES_ALL_THREADS: usize = 100_000;

/// What one thread's frame walk found.
struct Walked {
    frames: Vec<walk::PyFrame>,
    eval_calls: Option<Vec<EvalCall>>,
    /// Why the walk ended early, when it did (a user-facing problem).
    ended: Option<String>,
    /// Frames visited, shown or not (what the walk cost).
    steps: usize,
}

/// Walks the frames of `tstate`, innermost first, noting where each eval-loop call ends.
fn walk_thread(
    mem: &dyn Memory,
    layout: &Layout,
    tstate: u64,
    on_c_stack: &dyn Fn(u64) -> bool,
    limit: usize,
) -> Walked {
    let mut out = Walked { frames: Vec::new(), eval_calls: Some(Vec::new()), ended: None, steps: 0 };
    let mut in_call = 0;
    let mut stopped = false;
    // A corrupt chain can loop: each frame is shown once, and the loop said.
    let mut seen = HashSet::new();
    let end = walk::for_each_raw_frame(mem, layout, tstate, 0, &mut |frame, shown| {
        if !seen.insert(frame) {
            out.ended = Some(format!("the frame chain loops back to frame 0x{frame:x} (corrupt memory)"));
            stopped = true;
            return false;
        }
        out.steps += 1;
        if let Some(f) = shown {
            out.frames.push(f);
            in_call += 1;
        }
        match walk::ends_eval_call(mem, layout, frame, on_c_stack) {
            Some(true) => {
                if let Some(calls) = &mut out.eval_calls {
                    // 3.12+: the boundary is the (never shown) entry frame on the C stack.
                    calls.push(EvalCall { frames: in_call, entry: shown.is_none().then_some(frame) });
                }
                in_call = 0;
            }
            Some(false) => {}
            None => out.eval_calls = None,
        }
        stopped = out.frames.len() >= limit || out.steps >= limit * 2;
        if stopped {
            out.ended = Some(format!("only the innermost {} frames were read", out.frames.len()));
        }
        !stopped
    });
    // The chain's end (or the frame that could not be read) costs a step too.
    if !stopped {
        out.steps += 1;
    }
    if !stopped && end == walk::WalkEnd::Unreadable {
        out.ended = Some("a frame could not be read (not in the dump or the process's memory)".to_string());
    }
    // Frames after the last boundary belong to a call whose start was not seen.
    if in_call > 0 {
        out.eval_calls = None;
    }
    out
}

/// The interpreters whose threads the dump's threads run: crashcatch's first, then any
/// subinterpreter the metadata names.
fn interpreters(meta: &Value, interp: u64) -> Vec<u64> {
    let mut found = vec![interp];
    for t in meta["threads"].as_array().into_iter().flatten() {
        for key in ["python", "python_outer"] {
            if let Some(i) = t[key]["interp"].as_u64().filter(|i| !found.contains(i)) {
                found.push(i);
            }
        }
    }
    found
}

/// Every Python thread of `target`'s interpreters, decoded from memory alone; with why the
/// thread list may be incomplete.
/// `on_c_stack`: whether an address lies in a thread's stack memory.
/// `table`: a layout table to use instead of the built-in one (same format).
pub fn decode_python(
    mem: &dyn Memory,
    target: &PyTarget,
    version: &str,
    on_c_stack: &dyn Fn(u64) -> bool,
    table: Option<&str>,
) -> (Vec<PyThreadStack>, Option<String>, LayoutNote) {
    let (layout, note) = match layout_for(mem, target.runtime, version, table) {
        Ok(found) => found,
        Err(e) => return (Vec::new(), Some(e), LayoutNote::default()),
    };
    let str_type = target.str_type;
    let interp = target.interpreters.first().copied().unwrap_or(0);
    // Decoded once per str object.
    let mut strings: HashMap<u64, Option<Arc<str>>> = HashMap::new();
    let mut text = |obj: u64| {
        strings
            .entry(obj)
            .or_insert_with(|| {
                let mut s = String::new();
                let r = for_each_char(mem, &layout, str_type, obj, MAX_STRING_CHARS, &mut |c| {
                    s.push(char::from_u32(c).unwrap_or('?'))
                });
                matches!(r, StrRead::Done { .. }).then(|| Arc::from(s))
            })
            .clone()
    };
    let mut lines = LineNumbers::new(mem, &layout, MAX_LINE_TABLE_BYTES);
    let mut out = Vec::new();
    let mut budget = MAX_PY_FRAMES_ALL_THREADS;
    let mut complete = true;
    for &this_interp in &target.interpreters {
        if budget == 0 {
            break;
        }
        let subinterpreter = (this_interp != interp).then_some(this_interp);
        complete &= walk::for_each_thread(mem, &layout, this_interp, &mut |ts| {
            let walked = walk_thread(mem, &layout, ts, on_c_stack, budget.min(MAX_PY_FRAMES));
            // Every thread costs at least one step, so a cyclic thread list ends too.
            budget = budget.saturating_sub(walked.steps.max(1));
            let frames: Vec<PyFrame> = walked
                .frames
                .iter()
                .map(|f| {
                    let mut field =
                        |off: Option<u32>| off.and_then(|o| mem.ptr_at(f.code, o)).and_then(&mut text);
                    PyFrame {
                        file: field(layout.code_filename),
                        name: field(layout.code_name),
                        qualname: field(layout.code_qualname),
                        line: lines.line(f.code, f.addr),
                        subinterpreter,
                        address: f.frame,
                    }
                })
                .collect();
            let mut problems = Vec::new();
            if let Some(why) = &walked.ended {
                problems.push(why.clone());
            }
            if lines.spent() && frames.iter().any(|f| f.line.is_none()) {
                problems.push(format!(
                    "some line numbers are unknown: at most {} MiB of line tables are read for a dump",
                    MAX_LINE_TABLE_BYTES >> 20
                ));
            }
            let problem = (!problems.is_empty()).then(|| problems.join("; "));
            out.push(PyThreadStack {
                tstate: ts,
                thread_id: walk::thread_id(mem, &layout, ts),
                native_thread_id: walk::native_thread_id(mem, &layout, ts),
                frames,
                problem,
                eval_calls: walked.eval_calls,
            });
            budget > 0
        });
    }
    let problem = (!complete || budget == 0)
        .then(|| "the interpreter's thread list is incomplete in the dump".to_string());
    (out, problem, note)
}
