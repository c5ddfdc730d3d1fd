//! The output of a demangler: a fixed buffer that keeps the first bytes of the text and
//! counts the rest, so a name too long to show whole is still checked to the end.

/// Most bytes a demangled name may have (counted, not stored): bounds the work that a
/// name built of nested back-references (exponential output) can cause.
const MAX_OUTPUT: usize = 1 << 16;

/// What [`super::demangle`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demangled {
    /// Bytes of the buffer that hold the name.
    pub len: usize,
    /// The name was longer than the buffer: only its beginning is there.
    pub truncated: bool,
}

pub struct Sink<'a> {
    buf: &'a mut [u8],
    /// Length of the whole text so far (may pass `buf.len()`).
    len: usize,
    /// Its last byte (kept even when not stored).
    last: u8,
    failed: bool,
}

impl<'a> Sink<'a> {
    pub fn new(buf: &'a mut [u8]) -> Sink<'a> {
        Sink { buf, len: 0, last: 0, failed: false }
    }

    pub fn byte(&mut self, b: u8) {
        if self.len >= MAX_OUTPUT {
            self.failed = true;
            return;
        }
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
        }
        self.len += 1;
        self.last = b;
    }

    pub fn bytes(&mut self, s: &[u8]) {
        for &b in s {
            self.byte(b);
        }
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn dec(&mut self, v: u64) {
        let mut tmp = [0u8; 20];
        self.bytes(super::super::out::decimal(v, &mut tmp));
    }

    /// A Unicode scalar value as UTF-8.
    pub fn char(&mut self, c: char) {
        let mut tmp = [0u8; 4];
        self.str(c.encode_utf8(&mut tmp));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn last(&self) -> u8 {
        self.last
    }

    /// Forgets what was written after `len`. What [`Sink::last`] says is kept: c++filt
    /// decides on `>>` by the last byte it wrote, even if it took that byte back.
    pub fn rewind(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn finish(self) -> Option<Demangled> {
        if self.failed || self.len == 0 {
            return None;
        }
        if self.len <= self.buf.len() {
            return Some(Demangled { len: self.len, truncated: false });
        }
        Some(Demangled { len: char_boundary(self.buf), truncated: true })
    }
}

/// The longest prefix of `buf` that does not end inside a UTF-8 sequence.
fn char_boundary(buf: &[u8]) -> usize {
    let n = buf.len();
    // The last lead byte among the final (at most 4) bytes, and the length it announces.
    for back in 1..=4.min(n) {
        let b = buf[n - back];
        if b & 0xc0 == 0x80 {
            continue; // continuation byte
        }
        let need = match b {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        return if need <= back { n } else { n - back };
    }
    n
}
