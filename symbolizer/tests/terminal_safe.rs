//! Every string a dump can put in the text output reaches the terminal escaped; the JSON
//! output gives the same strings back exactly. (tests/test_symbolize_hostile.py does the same
//! with a real crash; this covers every field, including those a real crash cannot forge.)

use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use symbolizer::crash::{Crash, Thread};
use symbolizer::native::NativeFrame;
use symbolizer::python::{LayoutNote, PyFrame};
use symbolizer::render::{json, text, Style};
use symbolizer::terminal::{acts_on_terminal, json_text};

const HOSTILE: &str = "<\x1b]0;pwned\x07\x1b[2K\r\n\u{9b}\u{202e}\x7f>";
const SHOWN: &str = "<\\x1b]0;pwned\\x07\\x1b[2K\\r\\n\\x9b\\u202e\\x7f>";

fn hostile_crash() -> Crash {
    let h = || Some(HOSTILE.to_string());
    let py = PyFrame {
        file: Some(Arc::from(HOSTILE)),
        name: Some(Arc::from(HOSTILE)),
        qualname: None,
        line: Some(1),
        subinterpreter: Some(1),
        address: 0,
    };
    let native = NativeFrame {
        address: 0x1000,
        module: h(),
        module_offset: 0,
        function: h(),
        file: h(),
        line: Some(1),
        inlined: false,
        trust: "cfi",
        sp: 0x2000,
        symbol_source: None,
    };
    let thread = |tid, python: Vec<PyFrame>, native: Vec<NativeFrame>| Thread {
        tid,
        name: h(),
        python_name: h(),
        holds_gil: false,
        python,
        python_problem: h(),
        python_calls: None,
        native,
        native_stopped: h(),
        native_gap: None,
    };
    let metadata = json!({
        "python": {"argv": [HOSTILE, HOSTILE], "executable": HOSTILE},
        "annotations": {HOSTILE: HOSTILE},
        "source": [{"first_line": 1, "lines": [HOSTILE]}],
    });
    Crash {
        input: "minidump",
        path: PathBuf::from(HOSTILE),
        metadata,
        kind: HOSTILE.to_string(),
        exits_after_dump: false,
        signal: 11,
        fault_address: 0,
        crashed_tid: Some(1),
        python_version: HOSTILE.to_string(),
        threads: vec![
            // Both stacks but no eval-loop calls: shown separately (python and native lines).
            thread(1, vec![py.clone()], vec![native.clone()]),
            thread(2, vec![py], vec![]),
            thread(3, vec![], vec![native]),
        ],
        python_problem: h(),
        python_layout: LayoutNote { source: HOSTILE.into(), differences: vec![HOSTILE.into()] },
        modules_without_symbols: vec![HOSTILE.into()],
        left_out: vec![HOSTILE.into()],
        damaged: None,
        plumbing: Default::default(),
    }
}

#[test]
fn text_output_escapes_every_dump_string() {
    let crash = hostile_crash();
    for (colour, native_all) in [(false, false), (true, true)] {
        let style = Style::new(colour);
        let out = text(&crash, &style, native_all);
        // The renderer's own colour codes and newlines are all that may act on a terminal.
        let mut own = out.clone();
        for code in [style.bold, style.red, style.dim, style.reset].into_iter().filter(|c| !c.is_empty()) {
            own = own.replace(code, "");
        }
        let raw: Vec<char> = own.chars().filter(|&c| c != '\n' && acts_on_terminal(c)).collect();
        assert!(raw.is_empty(), "{raw:?} in\n{out}");
        // Each of the 31 places a dump string shows up, escaped (thread 2, Python only,
        // says why it has no native stack).
        assert_eq!(out.matches(SHOWN).count(), 31, "{out}");
    }
}

#[test]
fn json_output_keeps_every_dump_string_exactly() {
    let crash = hostile_crash();
    let out = json_text(&json(&crash));
    assert!(!out.chars().any(acts_on_terminal), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc, json(&crash));
    // What --json writes (streamed, no Value tree) is the same text byte for byte.
    assert_eq!(json_text(&symbolizer::render::JsonDoc(&crash)), out);
    assert_eq!(doc["process"]["argv"][0], HOSTILE);
    assert_eq!(doc["threads"][0]["python_frames"][0]["source"], HOSTILE);
}
