//! A `write()`-only text sink with a fixed buffer and hand-written number formatting.

/// Buffered writer to a file descriptor. Output is flushed when the buffer fills and on
/// [`Out::flush`]; write errors are ignored (there is nobody to report them to).
pub struct Out {
    fd: i32,
    buf: [u8; 1024],
    len: usize,
    /// Also keep what is written in the dump's report buffer (see `dump::capture`).
    capture: bool,
}

impl Out {
    pub const fn new(fd: i32) -> Out {
        Out { fd, buf: [0; 1024], len: 0, capture: false }
    }

    /// A writer whose text also goes into the report buffer the dump helper copies into
    /// the minidump's metadata. Starts the buffer afresh.
    pub fn capturing(fd: i32) -> Out {
        super::dump::capture_reset();
        Out { fd, buf: [0; 1024], len: 0, capture: true }
    }

    pub fn bytes(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = data.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
        }
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn byte(&mut self, b: u8) {
        self.bytes(&[b]);
    }

    /// Decimal, as `_Py_DumpDecimal` writes it.
    pub fn dec(&mut self, v: u64) {
        let mut tmp = [0u8; 20];
        self.bytes(decimal(v, &mut tmp));
    }

    /// Lower-case hex with at least `width` digits, as `_Py_DumpHexadecimal` writes it.
    pub fn hex(&mut self, mut v: u64, width: usize) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        let width = width.min(16);
        loop {
            i -= 1;
            tmp[i] = DIGITS[(v & 15) as usize];
            v >>= 4;
            if v == 0 && tmp.len() - i >= width {
                break;
            }
        }
        self.bytes(&tmp[i..]);
    }

    pub fn flush(&mut self) {
        if self.capture {
            super::dump::capture_append(&self.buf[..self.len]);
        }
        let mut done = 0;
        while done < self.len {
            // SAFETY: the pointer and length describe initialised bytes of self.buf.
            let n =
                unsafe { libc::write(self.fd, self.buf[done..self.len].as_ptr().cast(), self.len - done) };
            if n > 0 {
                done += n as usize;
            } else if n < 0 && errno() == libc::EINTR {
                continue;
            } else {
                break;
            }
        }
        self.len = 0;
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `v` in decimal, written at the end of `tmp` (20 digits hold any u64).
pub fn decimal(mut v: u64, tmp: &mut [u8; 20]) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &tmp[i..]
}

pub fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(v: i32) {
    // SAFETY: as in errno().
    unsafe { *libc::__errno_location() = v }
}
