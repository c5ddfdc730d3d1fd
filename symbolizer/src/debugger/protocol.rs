//! The pipe to gdb: requests in, memory and symbol questions out, one reply per request.
//!
//! gdb → helper: one JSON request per line. While serving it the helper asks
//! `M <hex addr> <decimal len>` (answer: `<n>` then n raw bytes; 0 = unreadable) and
//! `S <symbol>` (answer: `<hex address>` or `-`), then ends it with `R <one-line JSON>`.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, Read, Write};

/// Bytes asked of gdb in one memory question at most (a corrupt length must not make gdb
/// allocate gigabytes).
pub const MAX_READ: usize = 1 << 20;

pub struct Gdb {
    input: RefCell<Box<dyn BufRead>>,
    output: RefCell<Box<dyn Write>>,
    /// Set once the pipe failed: every later question fails at once and serving ends.
    broken: Cell<bool>,
    /// Questions asked since the count was last reset (what a request cost).
    pub questions: Cell<u64>,
}

impl Gdb {
    pub fn new(input: Box<dyn BufRead>, output: Box<dyn Write>) -> Gdb {
        Gdb {
            input: RefCell::new(input),
            output: RefCell::new(output),
            broken: Cell::new(false),
            questions: Cell::new(0),
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken.get()
    }

    /// The next request line; None when gdb closed the pipe.
    pub fn request(&self) -> Option<String> {
        let mut line = String::new();
        match self.input.borrow_mut().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }

    pub fn reply(&self, value: &serde_json::Value) {
        self.send(&format!("R {value}\n"));
    }

    /// `len` bytes at `addr`, None if gdb cannot read them all.
    pub fn read_memory(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        if len == 0 || len > MAX_READ {
            return None;
        }
        self.send(&format!("M {addr:x} {len}\n"));
        let n: usize = self.answer()?.parse().ok()?;
        if n == 0 {
            return None;
        }
        let mut buf = vec![0u8; n];
        if n > len || self.input.borrow_mut().read_exact(&mut buf).is_err() {
            self.broken.set(true);
            return None;
        }
        Some(buf)
    }

    /// The address of `symbol` in the target, as gdb resolves it (minimal symbols too).
    pub fn symbol(&self, symbol: &str) -> Option<u64> {
        if symbol.contains(char::is_whitespace) {
            return None;
        }
        self.send(&format!("S {symbol}\n"));
        u64::from_str_radix(self.answer()?.as_str(), 16).ok().filter(|&a| a != 0)
    }

    fn send(&self, text: &str) {
        if self.broken.get() {
            return;
        }
        self.questions.set(self.questions.get() + 1);
        let mut out = self.output.borrow_mut();
        if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
            self.broken.set(true);
        }
    }

    /// One answer line, without its newline.
    fn answer(&self) -> Option<String> {
        if self.broken.get() {
            return None;
        }
        let mut line = String::new();
        match self.input.borrow_mut().read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => Some(line.trim_end().to_string()),
            _ => {
                self.broken.set(true);
                None
            }
        }
    }
}
