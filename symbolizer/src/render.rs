//! Text and JSON output. Text shows stacks most recent call last, like Python tracebacks;
//! JSON lists frames innermost first (docs/json-schema.md).

use crate::crash::{Crash, Thread};
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

pub fn text(c: &Crash, s: &Style) -> String {
    let mut out = String::new();
    let m = &c.metadata;
    let what = match c.kind.as_str() {
        "fatal-signal" => format!("crashed with {} (signal {})", signal_name(c.signal), c.signal),
        "registered-signal" => {
            format!("dumped on {} (signal {}), kept running", signal_name(c.signal), c.signal)
        }
        "timeout" => "dumped by dump_traceback_later(), kept running".to_string(),
        "requested" => "dumped by write_minidump(), kept running".to_string(),
        other => format!("dumped ({other})"),
    };
    let _ = writeln!(
        out,
        "{}{}Process {what}{}",
        s.bold,
        if c.kind == "fatal-signal" { s.red } else { "" },
        s.reset
    );
    if matches!(c.signal, 4 | 7 | 8 | 11) {
        let _ = writeln!(out, "  fault address: {:#018x}", c.fault_address);
    }
    if let Some(tid) = c.crashed_tid {
        let _ = writeln!(out, "  thread: {tid}");
    }
    let argv: Vec<&str> = m["python"]["argv"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "  command: {}", argv.join(" "));
    let _ = writeln!(
        out,
        "  Python {} ({})",
        c.python_version,
        m["python"]["executable"].as_str().unwrap_or("?")
    );
    if let Some(ann) = m["annotations"].as_object().filter(|a| !a.is_empty()) {
        let pairs: Vec<String> =
            ann.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
        let _ = writeln!(out, "  annotations: {}", pairs.join(", "));
    }
    if let Some(p) = &c.python_problem {
        let _ = writeln!(out, "  Python stacks: {p}");
    }
    for p in &c.modules_without_symbols {
        let _ = writeln!(out, "  {}no symbols: {p}{}", s.dim, s.reset);
    }
    for t in &c.threads {
        out.push('\n');
        thread_text(&mut out, c, t, s);
    }
    out
}

fn thread_text(out: &mut String, c: &Crash, t: &Thread, s: &Style) {
    let crashed = Some(t.tid) == c.crashed_tid;
    let mut tags = Vec::new();
    if crashed {
        tags.push(if c.kind == "fatal-signal" { "crashed" } else { "requested the dump" });
    }
    if t.holds_gil {
        tags.push("holds the GIL");
    }
    let name = t.python_name.as_deref().or(t.name.as_deref()).unwrap_or("?");
    let colour = if crashed && c.kind == "fatal-signal" { s.red } else { "" };
    let _ = write!(out, "{}{colour}Thread {} \"{name}\"", s.bold, t.tid);
    if !tags.is_empty() {
        let _ = write!(out, " ({})", tags.join(", "));
    }
    let _ = writeln!(out, "{}", s.reset);
    python_text(out, c, t, s, crashed);
    native_text(out, t, s);
}

fn native_text(out: &mut String, t: &Thread, s: &Style) {
    if t.native.is_empty() {
        return;
    }
    let _ = writeln!(out, "  Native stack (most recent call last):");
    for f in t.native.iter().rev() {
        let function = f.function.as_deref().unwrap_or("??");
        let _ = write!(out, "  {:#018x} {}{function}{}", f.address, s.bold, s.reset);
        if let (Some(file), Some(line)) = (&f.file, f.line) {
            let _ = write!(out, " at {file}:{line}");
        }
        if let Some(m) = &f.module {
            let _ = write!(out, " ({m}+{:#x})", f.module_offset);
        }
        if f.inlined {
            let _ = write!(out, " [inlined]");
        }
        out.push('\n');
    }
}

fn python_text(out: &mut String, c: &Crash, t: &Thread, s: &Style, crashed: bool) {
    if t.python.is_empty() {
        let _ = writeln!(out, "  {}<no Python frames>{}", s.dim, s.reset);
        return;
    }
    let _ = writeln!(out, "  Python stack (most recent call last):");
    let sources =
        if crashed { c.metadata["source"].as_array().cloned().unwrap_or_default() } else { Vec::new() };
    for (i, f) in t.python.iter().enumerate().rev() {
        let line = f.line.filter(|&l| l >= 0).map_or("???".to_string(), |l| l.to_string());
        let _ = writeln!(
            out,
            "  File \"{}\", line {line}, in {}",
            f.file.as_deref().unwrap_or("???"),
            f.function().unwrap_or("???")
        );
        if let Some(src) = sources.get(i).and_then(|v| source_line(v, f.line)) {
            let _ = writeln!(out, "    {}", src.trim());
        }
    }
    if let Some(p) = &t.python_problem {
        let _ = writeln!(out, "  {}<{p}>{}", s.dim, s.reset);
    }
}

/// The line `line` of a frame's source context from the metadata.
fn source_line(src: &Value, line: Option<i32>) -> Option<String> {
    let (first, line) = (src["first_line"].as_i64()?, line? as i64);
    src["lines"].as_array()?.get((line - first) as usize)?.as_str().map(String::from)
}

pub fn json(c: &Crash) -> Value {
    let m = &c.metadata;
    json!({
        "schema": "crashcatch-symbolize/1",
        "dump": c.path.display().to_string(),
        "event": {
            "kind": c.kind,
            "signal": c.signal,
            "signal_name": signal_name(c.signal),
            "fault_address": c.fault_address,
            "thread": c.crashed_tid,
        },
        "process": {"argv": m["python"]["argv"], "executable": m["python"]["executable"]},
        "python": {"version": c.python_version, "problem": c.python_problem},
        "annotations": m["annotations"],
        "modules_without_symbols": c.modules_without_symbols,
        "threads": c.threads.iter().map(|t| {
            let crashed = Some(t.tid) == c.crashed_tid;
            let sources = if crashed { m["source"].as_array().cloned().unwrap_or_default() } else { Vec::new() };
            json!({
                "tid": t.tid,
                "name": t.name,
                "python_name": t.python_name,
                "crashed": crashed,
                "holds_gil": t.holds_gil,
                "python_problem": t.python_problem,
                "native_frames": t.native.iter().map(|f| json!({
                    "kind": "native",
                    "address": f.address,
                    "module": f.module,
                    "module_offset": f.module_offset,
                    "function": f.function,
                    "file": f.file,
                    "line": f.line,
                    "inlined": f.inlined,
                    "trust": f.trust,
                })).collect::<Vec<_>>(),
                "frames": t.python.iter().enumerate().map(|(i, f)| json!({
                    "kind": "python",
                    "file": f.file,
                    "function": f.function(),
                    "line": f.line,
                    "source": sources.get(i).and_then(|v| source_line(v, f.line)),
                })).collect::<Vec<_>>(),
            })
        }).collect::<Vec<_>>(),
    })
}
