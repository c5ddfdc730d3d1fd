//! Source lines for the metadata, read from the files code objects name. Those names come
//! from the process (`compile(text, "/dev/zero", "exec")`, `python /dev/stdin`, a FIFO, a
//! tty), so a name is only a hint: just regular files are read, opened without blocking,
//! and never more than a fixed number of bytes — the helper must finish before its
//! deadline and in little memory whatever the process did.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;

/// Bytes read at most from one file: the lines wanted must be within this much of its start.
const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;
/// Bytes read at most from all files of one dump.
const MAX_TOTAL_BYTES: u64 = 8 * 1024 * 1024;
/// Characters kept of one line.
const MAX_LINE_CHARS: usize = 400;

/// Reads lines of source files within one byte budget.
pub struct SourceReader {
    budget: u64,
}

impl SourceReader {
    pub fn new() -> Self {
        SourceReader { budget: MAX_TOTAL_BYTES }
    }

    /// Lines `first..=last` (1-based) of the regular file `path`; fewer (or none) when the
    /// file is shorter, is not a regular file, cannot be read, or the budget runs out.
    pub fn lines(&mut self, path: &str, first: i64, last: i64) -> Vec<String> {
        let Some(file) = open_regular(path) else { return Vec::new() };
        let mut reader = BufReader::new(file.take(MAX_FILE_BYTES.min(self.budget)));
        let mut out = Vec::new();
        let mut line = Vec::new();
        let mut number = 0i64;
        while number < last {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.budget = self.budget.saturating_sub(n as u64),
            }
            number += 1;
            if number >= first {
                let text = String::from_utf8_lossy(&line);
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                out.push(text.chars().take(MAX_LINE_CHARS).collect());
            }
        }
        out
    }
}

/// `path` opened for reading if it is a regular file. O_NONBLOCK: opening a FIFO without a
/// writer, or a device, must not wait; O_NOCTTY: a tty must not become our terminal.
fn open_regular(path: &str) -> Option<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    file.metadata().ok()?.file_type().is_file().then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("cc-source-{}-{name}", std::process::id()))
    }

    #[test]
    fn reads_the_lines_asked_for() {
        let path = scratch("lines");
        std::fs::write(&path, "one\r\ntwo\nthree\nfour\n").expect("write");
        let mut r = SourceReader::new();
        assert_eq!(r.lines(path.to_str().unwrap(), 2, 3), ["two", "three"]);
        assert_eq!(r.lines(path.to_str().unwrap(), -1, 1), ["one"]);
        assert_eq!(r.lines(path.to_str().unwrap(), 4, 9), ["four"]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn devices_and_fifos_are_not_read() {
        let fifo = scratch("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut r = SourceReader::new();
        // Without O_NONBLOCK this open would wait for a writer forever.
        assert!(r.lines(fifo.to_str().unwrap(), 1, 3).is_empty());
        assert!(r.lines("/dev/zero", 1, 3).is_empty());
        assert!(r.lines("/nonexistent/x.py", 1, 3).is_empty());
        let _ = std::fs::remove_file(&fifo);
    }

    #[test]
    fn a_huge_file_costs_at_most_the_per_file_cap() {
        let path = scratch("huge");
        let f = File::create(&path).expect("create");
        f.set_len(1 << 31).expect("sparse 2 GiB"); // NUL bytes, no newline anywhere
        let mut r = SourceReader::new();
        let lines = r.lines(path.to_str().unwrap(), 1, 3);
        assert_eq!(lines.len(), 1);
        assert_eq!(r.budget, MAX_TOTAL_BYTES - MAX_FILE_BYTES);
        // Once the budget is spent, nothing more is read.
        r.budget = 0;
        let mut small = File::create(scratch("small")).expect("create");
        small.write_all(b"x\n").expect("write");
        assert!(r.lines(scratch("small").to_str().unwrap(), 1, 1).is_empty());
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(scratch("small"));
    }
}
