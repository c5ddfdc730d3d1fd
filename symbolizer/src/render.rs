//! Text and JSON output. Text shows stacks most recent call last, like Python tracebacks;
//! JSON lists frames innermost first (docs/json-schema.md).

use crate::crash::{Crash, Thread};
use crate::merge::{merge, native_entries, Entry, Status};
use crate::native::NativeFrame;
use crate::python::PyFrame;
use crate::terminal::Escaped;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write;

/// Terminal styling; all empty when colour is off.
pub struct Style {
    pub bold: &'static str,
    pub red: &'static str,
    pub dim: &'static str,
    pub reset: &'static str,
}

impl Style {
    pub fn new(colour: bool) -> Style {
        if colour {
            Style { bold: "\x1b[1m", red: "\x1b[31m", dim: "\x1b[2m", reset: "\x1b[0m" }
        } else {
            Style { bold: "", red: "", dim: "", reset: "" }
        }
    }
}

pub fn signal_name(signal: i64) -> &'static str {
    match signal {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        0 => "no signal",
        _ => "signal",
    }
}

fn has_fault_address(signal: i64) -> bool {
    matches!(signal, 4 | 7 | 8 | 11)
}

/// `native_all`: also show the interpreter's plumbing frames.
pub fn text(c: &Crash, s: &Style, native_all: bool) -> String {
    let mut out = String::new();
    let m = &c.metadata;
    let what = match c.kind.as_str() {
        "fatal-signal" => format!("crashed with {} (signal {})", signal_name(c.signal), c.signal),
        "registered-signal" => {
            format!("dumped on {} (signal {}), kept running", signal_name(c.signal), c.signal)
        }
        "timeout" if c.exits_after_dump => {
            "dumped by dump_traceback_later(exit=True), then exited".to_string()
        }
        "timeout" => "dumped by dump_traceback_later(), kept running".to_string(),
        "requested" => "dumped by write_minidump(), kept running".to_string(),
        "external" => "dumped from outside by `crashcatch dump`, kept running".to_string(),
        "core" => "written to a core file without a signal (gcore?)".to_string(),
        "live" => "read while running, not stopped (--nonblocking): stacks may be torn, each \
                   thread read at a different moment"
            .to_string(),
        other => format!("dumped ({})", Escaped(other)),
    };
    let _ = writeln!(
        out,
        "{}{}Process {what}{}",
        s.bold,
        if c.kind == "fatal-signal" { s.red } else { "" },
        s.reset
    );
    if has_fault_address(c.signal) {
        let _ = writeln!(out, "  fault address: {:#018x}", c.fault_address);
    }
    if let Some(tid) = c.crashed_tid {
        let _ = writeln!(out, "  thread: {tid}");
    }
    let argv: Vec<&str> = m["python"]["argv"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "  command: {}", Escaped(&argv.join(" ")));
    let executable = Escaped(m["python"]["executable"].as_str().unwrap_or("?"));
    if c.python_version.is_empty() && c.input == "core" {
        let _ = writeln!(out, "  program: {executable}");
    } else {
        let _ = writeln!(out, "  Python {} ({executable})", Escaped(&c.python_version));
    }
    // A crash during a collection often means a corrupt object met by the collector.
    if m["python"]["gc_collecting"].as_bool() == Some(true) {
        let _ = writeln!(out, "  the garbage collector was running");
    }
    if let Some(ann) = m["annotations"].as_object().filter(|a| !a.is_empty()) {
        let pairs: Vec<String> = ann
            .iter()
            .map(|(k, v)| format!("{}={}", Escaped(k), Escaped(v.as_str().unwrap_or(""))))
            .collect();
        let _ = writeln!(out, "  annotations: {}", pairs.join(", "));
    }
    if let Some(p) = &c.python_problem {
        let _ = writeln!(out, "  Python stacks: {}", Escaped(p));
    }
    if !c.python_layout.differences.is_empty() {
        let _ = writeln!(
            out,
            "  layout: the dump's own debug offsets, which differ from the built-in table ({})",
            Escaped(&c.python_layout.differences.join(", "))
        );
    }
    for p in &c.modules_without_symbols {
        let _ = writeln!(out, "  {}no symbols: {}{}", s.dim, Escaped(p), s.reset);
    }
    for note in &c.left_out {
        let _ = writeln!(out, "  left out: {}", Escaped(note));
    }
    for t in &c.threads {
        out.push('\n');
        thread_text(&mut out, c, t, s, native_all);
    }
    out
}

pub fn thread_text(out: &mut String, c: &Crash, t: &Thread, s: &Style, native_all: bool) {
    let crashed = Some(t.tid) == c.crashed_tid;
    let mut tags = Vec::new();
    // `crashcatch dump PID`: no thread asked; the main thread is listed first.
    if crashed && c.kind != "external" {
        tags.push(if c.kind == "fatal-signal" { "crashed" } else { "requested the dump" });
    }
    if t.holds_gil {
        tags.push("holds the GIL");
    }
    let name = t.python_name.as_deref().or(t.name.as_deref()).unwrap_or("?");
    let colour = if crashed && c.kind == "fatal-signal" { s.red } else { "" };
    let _ = write!(out, "{}{colour}Thread {} \"{}\"", s.bold, t.tid, Escaped(name));
    if !tags.is_empty() {
        let _ = write!(out, " ({})", tags.join(", "));
    }
    let _ = writeln!(out, "{}", s.reset);
    let sources = sources(c, t);
    let merged = merge(t, &c.plumbing);
    match &merged.status {
        Status::Separate(why) => {
            let _ = writeln!(
                out,
                "  {}<Python and native frames not merged: {}>{}",
                s.dim,
                Escaped(why),
                s.reset
            );
            let _ = writeln!(out, "  Python stack (most recent call last):");
            let python: Vec<Entry> =
                t.python.iter().enumerate().map(|(index, frame)| Entry::Python { frame, index }).collect();
            let shown: Vec<&Entry> = python.iter().collect();
            elided(out, &shown, s, is_gap, |out, e| entry_text(out, e, sources, s));
            let _ = writeln!(out, "  Native stack (most recent call last):");
            native_stopped_text(out, t, s);
            let native = native_entries(t);
            let shown: Vec<&Entry> = native.iter().collect();
            elided(out, &shown, s, is_gap, |out, e| entry_text(out, e, sources, s));
        }
        _ if merged.entries.is_empty() => {
            let _ = writeln!(out, "  {}<no frames>{}", s.dim, s.reset);
            native_stopped_text(out, t, s);
        }
        _ => {
            let hidden = if native_all { 0 } else { merged.plumbing_count() };
            let _ = match hidden {
                0 => writeln!(out, "  Stack (most recent call last):"),
                n => writeln!(
                    out,
                    "  Stack (most recent call last; {n} interpreter frame{} hidden, --native-all shows them):",
                    if n == 1 { "" } else { "s" }
                ),
            };
            if merged.status != Status::PythonOnly || t.native.is_empty() {
                native_stopped_text(out, t, s);
            }
            let shown: Vec<&Entry> = merged
                .entries
                .iter()
                .filter(|e| native_all || !matches!(e, Entry::Native { plumbing: true, .. }))
                .collect();
            elided(out, &shown, s, is_gap, |out, e| entry_text(out, e, sources, s));
        }
    }
    if let Some(p) = &t.python_problem {
        let _ = writeln!(out, "  {}<{}>{}", s.dim, Escaped(p), s.reset);
    }
}

/// Frames (innermost first) written most recent call last; of a very deep stack only the
/// outermost `ELIDED_OUTER` and innermost `ELIDED_INNER` (the JSON output has them all), and
/// the gap of an overflowed stack wherever it is.
fn elided<T>(
    out: &mut String,
    frames: &[T],
    s: &Style,
    always: impl Fn(&T) -> bool,
    mut write: impl FnMut(&mut String, &T),
) {
    let n = frames.len();
    let mut skipped = 0;
    for (i, frame) in frames.iter().enumerate().rev() {
        let shown =
            n <= ELIDED_OUTER + ELIDED_INNER || i < ELIDED_INNER || i >= n - ELIDED_OUTER || always(frame);
        if !shown {
            skipped += 1;
            continue;
        }
        if skipped > 0 {
            let _ = writeln!(
                out,
                "  {}[… {skipped} frames not shown; --json lists them all …]{}",
                s.dim, s.reset
            );
            skipped = 0;
        }
        write(out, frame);
    }
}

fn is_gap(e: &&Entry) -> bool {
    matches!(e, Entry::Gap { .. })
}

fn entry_text(out: &mut String, e: &Entry, sources: &[Value], s: &Style) {
    match *e {
        Entry::Python { frame, index } => python_frame_text(out, frame, sources.get(index), s),
        Entry::Native { frame, .. } => native_frame_text(out, frame, s),
        Entry::Gap { frames } => {
            let count = frames.map_or("the".to_string(), |n| format!("{n}"));
            let _ = writeln!(
                out,
                "  {}<… {count} native frames from the middle of the overflowed stack are not in the dump \
                 (it keeps the stack's two ends) …>{}",
                s.dim, s.reset
            );
        }
    }
}

/// Where the native unwind stopped, at the outer end of the stack (shown first), or why
/// there is no native stack at all (a running thread of a process read with --nonblocking).
fn native_stopped_text(out: &mut String, t: &Thread, s: &Style) {
    let Some(why) = &t.native_stopped else { return };
    let what = if t.native.is_empty() { "no native stack" } else { "native unwinding stopped" };
    let _ = writeln!(out, "  {}<{what}: {}>{}", s.dim, Escaped(why), s.reset);
}

/// Frames shown of a deep stack: the outermost (how it started) and the innermost (where it
/// ended), as faulthandler-style reports keep both ends.
const ELIDED_OUTER: usize = 50;
const ELIDED_INNER: usize = 150;

/// The source context of each Python frame (carried for the requesting thread only).
fn sources<'a>(c: &'a Crash, t: &Thread) -> &'a [Value] {
    match c.metadata["source"].as_array() {
        Some(all) if Some(t.tid) == c.crashed_tid => all,
        _ => &[],
    }
}

fn native_frame_text(out: &mut String, f: &NativeFrame, s: &Style) {
    let _ = write!(out, "  {}{}{}", s.bold, Escaped(f.function.as_deref().unwrap_or("??")), s.reset);
    if let (Some(file), Some(line)) = (&f.file, f.line) {
        let _ = write!(out, " at {}:{line}", Escaped(file));
    }
    match &f.module {
        Some(m) => {
            let _ = write!(out, " {}({}+{:#x}){}", s.dim, Escaped(m), f.module_offset, s.reset);
        }
        None => {
            let _ = write!(out, " {}({:#x}){}", s.dim, f.address, s.reset);
        }
    }
    if f.inlined {
        let _ = write!(out, " [inlined]");
    }
    if !matches!(f.trust, "context" | "cfi") {
        let _ = write!(out, " [{}]", f.trust);
    }
    out.push('\n');
}

fn python_frame_text(out: &mut String, f: &PyFrame, source: Option<&Value>, s: &Style) {
    let line = f.line.filter(|&l| l >= 0).map_or("???".to_string(), |l| l.to_string());
    let _ = writeln!(
        out,
        "  File \"{}\", line {line}, in {}{}{}{}",
        Escaped(f.file.as_deref().unwrap_or("???")),
        s.bold,
        Escaped(f.function().unwrap_or("???")),
        s.reset,
        f.subinterpreter.map_or(String::new(), |i| format!(" [subinterpreter {i:#x}]"))
    );
    if let Some(src) = source.and_then(|v| source_line(v, f.line)) {
        let _ = writeln!(out, "    {}", Escaped(src.trim()));
    }
}

/// The line `line` of a frame's source context from the metadata.
fn source_line(src: &Value, line: Option<i32>) -> Option<String> {
    let (first, line) = (src["first_line"].as_i64()?, line? as i64);
    let index = usize::try_from(line.checked_sub(first)?).ok()?;
    src["lines"].as_array()?.get(index)?.as_str().map(String::from)
}

/// The `--json` document as a `Value` (for callers that inspect it; `JsonDoc` is what is
/// written).
pub fn json(c: &Crash) -> Value {
    serde_json::to_value(JsonDoc(c)).expect("the document always serializes")
}

/// The `--json` document, serialized as it is written: no `Value` tree is built for the
/// threads and frames (at 500 threads that tree cost five times the text's CPU and twice its
/// memory). Maps keep the sorted key order serde_json's `Value` (a BTreeMap) writes, so the
/// output is the same byte for byte: struct fields below are in alphabetical order.
pub struct JsonDoc<'a>(pub &'a Crash);

impl Serialize for JsonDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (c, m) = (self.0, &self.0.metadata);
        let mut map = s.serialize_map(Some(10))?;
        map.serialize_entry("annotations", &m["annotations"])?;
        map.serialize_entry("dump", &c.path.display().to_string())?;
        let event = json!({
            "kind": c.kind,
            "exits_after_dump": c.exits_after_dump,
            "signal": c.signal,
            "signal_name": signal_name(c.signal),
            // Only faults (SEGV, BUS, FPE, ILL) have one; si_addr means other things elsewhere.
            "fault_address": has_fault_address(c.signal).then_some(c.fault_address),
            "thread": c.crashed_tid,
        });
        map.serialize_entry("event", &event)?;
        map.serialize_entry("left_out", &c.left_out)?;
        map.serialize_entry("modules_without_symbols", &c.modules_without_symbols)?;
        let process = json!({"argv": m["python"]["argv"], "executable": m["python"]["executable"]});
        map.serialize_entry("process", &process)?;
        let python = json!({
            "version": c.python_version,
            "problem": c.python_problem,
            "gc_collecting": m["python"]["gc_collecting"],
            "layout": {"source": c.python_layout.source, "differences": c.python_layout.differences},
        });
        map.serialize_entry("python", &python)?;
        map.serialize_entry("schema", "crashcatch-symbolize/2")?;
        map.serialize_entry("source", c.input)?;
        map.serialize_entry("threads", &Threads(c))?;
        map.end()
    }
}

/// Every thread, each made just before it is written.
struct Threads<'a>(&'a Crash);

impl Serialize for Threads<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.threads.iter().map(|t| ThreadJson::new(self.0, t)))
    }
}

#[derive(Serialize)]
struct ThreadJson<'a> {
    crashed: bool,
    frames: Option<Vec<FrameJson<'a>>>,
    holds_gil: bool,
    merge_problem: Option<String>,
    name: Option<&'a str>,
    native_frames: Vec<FrameJson<'a>>,
    native_unwind: Value,
    python_frames: Vec<FrameJson<'a>>,
    python_name: Option<&'a str>,
    python_problem: Option<&'a str>,
    requested_dump: bool,
    stack: &'static str,
    tid: u32,
}

#[derive(Serialize)]
#[serde(untagged)]
enum FrameJson<'a> {
    Python(PythonFrameJson<'a>),
    Native(NativeFrameJson<'a>),
}

#[derive(Serialize)]
struct PythonFrameJson<'a> {
    file: Option<&'a str>,
    function: Option<&'a str>,
    inlined: bool,
    kind: &'static str,
    line: Option<i32>,
    module: (),
    name: Option<&'a str>,
    source: Option<String>,
    subinterpreter: Option<u64>,
    trust: &'static str,
}

#[derive(Serialize)]
struct NativeFrameJson<'a> {
    address: u64,
    file: Option<&'a str>,
    function: Option<&'a str>,
    inlined: bool,
    kind: &'static str,
    line: Option<u32>,
    module: Option<&'a str>,
    module_offset: u64,
    plumbing: bool,
    symbols: Option<&'static str>,
    trust: &'static str,
}

impl<'a> ThreadJson<'a> {
    fn new(c: &'a Crash, t: &'a Thread) -> ThreadJson<'a> {
        let sources = sources(c, t);
        let python = |frame: &'a PyFrame, index: usize| {
            FrameJson::Python(PythonFrameJson {
                file: frame.file.as_deref(),
                function: frame.function(),
                inlined: false,
                kind: "python",
                line: frame.line,
                module: (),
                name: frame.name.as_deref(),
                source: sources.get(index).and_then(|v| source_line(v, frame.line)),
                subinterpreter: frame.subinterpreter,
                trust: "dump memory",
            })
        };
        let native = |f: &'a NativeFrame, plumbing: bool| {
            FrameJson::Native(NativeFrameJson {
                address: f.address,
                file: f.file.as_deref(),
                function: f.function.as_deref(),
                inlined: f.inlined,
                kind: "native",
                line: f.line,
                module: f.module.as_deref(),
                module_offset: f.module_offset,
                plumbing,
                symbols: f.symbol_source,
                trust: f.trust,
            })
        };
        let merged = merge(t, &c.plumbing);
        let (status, problem) = match &merged.status {
            Status::Merged => ("merged", None),
            Status::PythonOnly => ("python-only", None),
            Status::NativeOnly => ("native-only", None),
            Status::Separate(why) => ("separate", Some(why.clone())),
        };
        // The gap of an overflowed stack is not a frame: `native_unwind.gap` says where it is.
        let mut gap_at_frame = None;
        let frames = problem.is_none().then(|| {
            let mut frames = Vec::with_capacity(merged.entries.len());
            for e in &merged.entries {
                match *e {
                    Entry::Python { frame, index } => frames.push(python(frame, index)),
                    Entry::Native { frame, plumbing } => frames.push(native(frame, plumbing)),
                    Entry::Gap { .. } => gap_at_frame = Some(frames.len()),
                }
            }
            frames
        });
        let gap = t.native_gap.as_ref().map(|g| {
            json!({
                "native_frames_index": g.at,
                "frames_index": gap_at_frame,
                "frames_left_out": g.frames,
                "stack_range": [g.range.0, g.range.1],
            })
        });
        ThreadJson {
            // A live dump's requesting thread did not crash (the text says "requested the dump").
            crashed: c.kind == "fatal-signal" && Some(t.tid) == c.crashed_tid,
            frames,
            holds_gil: t.holds_gil,
            merge_problem: problem,
            name: t.name.as_deref(),
            native_frames: t.native.iter().map(|f| native(f, false)).collect(),
            native_unwind: json!({"stopped": t.native_stopped, "gap": gap}),
            python_frames: t.python.iter().enumerate().map(|(i, f)| python(f, i)).collect(),
            python_name: t.python_name.as_deref(),
            python_problem: t.python_problem.as_deref(),
            requested_dump: !matches!(c.kind.as_str(), "fatal-signal" | "external")
                && Some(t.tid) == c.crashed_tid,
            stack: status,
            tid: t.tid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_stacks_keep_both_ends() {
        let frames: Vec<usize> = (0..300).collect(); // innermost first
        let mut out = String::new();
        elided(&mut out, &frames, &Style::new(false), |_| false, |out, i| out.push_str(&format!("{i}\n")));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), ELIDED_OUTER + ELIDED_INNER + 1);
        assert_eq!((lines[0], lines[ELIDED_OUTER - 1]), ("299", "250"));
        assert!(lines[ELIDED_OUTER].contains("100 frames not shown"), "{}", lines[ELIDED_OUTER]);
        assert_eq!((lines[ELIDED_OUTER + 1], *lines.last().unwrap()), ("149", "0"));
        let mut short = String::new();
        elided(
            &mut short,
            &frames[..200],
            &Style::new(false),
            |_| false,
            |out, i| out.push_str(&format!("{i}\n")),
        );
        assert_eq!(short.lines().count(), 200);
    }
}
