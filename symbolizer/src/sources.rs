//! Source lines of Python frames read from the files on this machine, where the input
//! carries none (a core file; a crashcatch minidump carries them in its metadata, in the
//! same shape: docs/minidump.md, `source[]`).

use crate::python::PyFrame;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Read;

/// Lines of context each side of a frame's line.
const CONTEXT: i32 = 3;
/// Bytes read of one file at most, and characters kept of one line.
const MAX_FILE: u64 = 2 << 20;
const MAX_LINE: usize = 400;

/// The first 2 MiB of a regular file, None otherwise (a FIFO would block).
fn read_text(path: &str) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `frames`' source context (one entry per frame, null where the file cannot be read), and
/// a note for each file that is not here.
pub fn from_disk(frames: &[PyFrame]) -> (Value, Vec<String>) {
    let mut missing = BTreeSet::new();
    let entries = frames
        .iter()
        .map(|f| {
            let (Some(file), Some(line)) = (f.file.as_deref(), f.line.filter(|&l| l > 0)) else {
                return Value::Null;
            };
            let Some(text) = read_text(file) else {
                if !file.starts_with('<') {
                    missing.insert(file.to_string());
                }
                return Value::Null;
            };
            let first = (line - CONTEXT).max(1);
            let lines: Vec<String> = text
                .lines()
                .skip((first - 1) as usize)
                .take((line + CONTEXT - first + 1) as usize)
                .map(|l| l.chars().take(MAX_LINE).collect())
                .collect();
            json!({"file": file, "function": f.function(), "line": line, "first_line": first, "lines": lines})
        })
        .collect();
    let notes = missing.into_iter().map(|f| format!("source lines: {f} is not on this machine")).collect();
    (Value::Array(entries), notes)
}
