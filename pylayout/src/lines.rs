//! Line numbers from code objects' line tables, for every supported version, computed the
//! way `PyCode_Addr2Line()` of that version does.

use crate::{Layout, Memory};

/// Reads a `bytes` object's payload one byte at a time through a small buffer.
struct ByteStream<'a> {
    mem: &'a dyn Memory,
    next: u64,
    end: u64,
    buf: [u8; 64],
    buf_start: u64,
    buf_len: usize,
}

impl<'a> ByteStream<'a> {
    fn of_bytes_object(mem: &'a dyn Memory, layout: &Layout, obj: u64) -> Option<Self> {
        let size = mem.ptr_at(obj, layout.varobject_ob_size?)?;
        // Line tables are small; a huge size means a bad pointer.
        if size > (1 << 24) {
            return None;
        }
        let start = obj.wrapping_add(layout.bytes_ob_sval? as u64);
        let end = start.wrapping_add(size);
        Some(ByteStream { mem, next: start, end, buf: [0; 64], buf_start: 0, buf_len: 0 })
    }

    fn at_end(&self) -> bool {
        self.next >= self.end
    }

    /// The next byte, or `None` at the end or on a read error.
    fn peek(&mut self) -> Option<u8> {
        if self.at_end() {
            return None;
        }
        let in_buf = self.next >= self.buf_start && self.next < self.buf_start + self.buf_len as u64;
        if !in_buf {
            let len = (self.end - self.next).min(self.buf.len() as u64) as usize;
            if !self.mem.read(self.next, &mut self.buf[..len]) {
                return None;
            }
            self.buf_start = self.next;
            self.buf_len = len;
        }
        Some(self.buf[(self.next - self.buf_start) as usize])
    }

    fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.next += 1;
        Some(b)
    }
}

/// The line executing at byte offset `addr` of `code`'s bytecode. `addr < 0` (the frame has
/// not started) gives the first line. `None`: memory unreadable; `Some(-1)`: no line.
pub fn addr_to_line(mem: &dyn Memory, layout: &Layout, code: u64, addr: i64) -> Option<i32> {
    let first_line = mem.read_i32(code.wrapping_add(layout.code_firstlineno? as u64))?;
    if addr < 0 {
        return Some(first_line);
    }
    let table = mem.ptr_at(code, layout.code_linetable?)?;
    let mut s = ByteStream::of_bytes_object(mem, layout, table)?;
    match layout.minor {
        ..=9 => lnotab_line(&mut s, first_line, addr),
        10 => linetable_310_line(&mut s, first_line, addr),
        _ => location_table_line(&mut s, first_line, addr),
    }
}

/// 3.9 `co_lnotab`: (bytecode delta, signed line delta) pairs.
fn lnotab_line(s: &mut ByteStream, mut line: i32, addr: i64) -> Option<i32> {
    let mut pos: i64 = 0;
    while !s.at_end() {
        pos += s.next_byte()? as i64;
        if pos > addr {
            break;
        }
        line += s.next_byte()? as i8 as i32;
    }
    Some(line)
}

/// 3.10 PEP 626 `co_linetable`: (length in bytes, signed line delta or -128 for "none").
fn linetable_310_line(s: &mut ByteStream, mut computed: i32, addr: i64) -> Option<i32> {
    let mut end: i64 = 0;
    let mut line = -1;
    let mut start: i64 = -1;
    while end <= addr || start == end {
        if s.at_end() {
            return Some(-1);
        }
        start = end;
        end += s.next_byte()? as i64;
        let delta = s.next_byte()? as i8;
        if delta == -128 {
            line = -1;
        } else {
            computed += delta as i32;
            line = computed;
        }
    }
    Some(line)
}

/// 3.11+ location table (`Objects/locations.md`).
fn location_table_line(s: &mut ByteStream, mut computed: i32, addr: i64) -> Option<i32> {
    let mut end: i64 = 0;
    let mut line = -1;
    while end <= addr {
        if s.at_end() {
            return Some(-1);
        }
        let head = s.next_byte()?;
        let code = (head >> 3) & 15;
        let delta = match code {
            13 | 14 => signed_varint(s)?,
            11 => 1,
            12 => 2,
            _ => 0,
        };
        computed += delta;
        line = if code == 15 { -1 } else { computed };
        end += (((head & 7) as i64) + 1) * 2;
        // Skip the rest of this entry: every entry starts with bit 7 set.
        while let Some(b) = s.peek() {
            if b & 0x80 != 0 {
                break;
            }
            s.next_byte()?;
        }
    }
    Some(line)
}

fn signed_varint(s: &mut ByteStream) -> Option<i32> {
    let mut b = s.next_byte()? as u32;
    let mut val = b & 63;
    let mut shift = 0;
    while b & 64 != 0 {
        b = s.next_byte()? as u32;
        shift += 6;
        if shift > 30 {
            return None;
        }
        val |= (b & 63) << shift;
    }
    Some(if val & 1 != 0 { -((val >> 1) as i32) } else { (val >> 1) as i32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes(Vec<u8>);
    impl Memory for Bytes {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            let (a, n) = (addr as usize, buf.len());
            match self.0.get(a..a + n) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    fn stream<'a>(mem: &'a Bytes) -> ByteStream<'a> {
        ByteStream { mem, next: 0, end: mem.0.len() as u64, buf: [0; 64], buf_start: 0, buf_len: 0 }
    }

    #[test]
    fn lnotab_walks_pairs_until_past_addr() {
        // offsets 0..6 line +0, 6.. line +1, 10.. line +2
        let m = Bytes(vec![6, 1, 4, 2]);
        assert_eq!(lnotab_line(&mut stream(&m), 10, 0), Some(10));
        assert_eq!(lnotab_line(&mut stream(&m), 10, 7), Some(11));
        assert_eq!(lnotab_line(&mut stream(&m), 10, 12), Some(13));
    }

    #[test]
    fn linetable_310_handles_no_line_ranges() {
        let m = Bytes(vec![4, 1, 2, 0x80, 6, 2]);
        assert_eq!(linetable_310_line(&mut stream(&m), 1, 0), Some(2));
        assert_eq!(linetable_310_line(&mut stream(&m), 1, 4), Some(-1));
        assert_eq!(linetable_310_line(&mut stream(&m), 1, 8), Some(4));
        assert_eq!(linetable_310_line(&mut stream(&m), 1, 40), Some(-1));
    }

    #[test]
    fn location_table_short_one_line_and_long_forms() {
        // entry 1: code 13 (no columns), 1 unit, delta +3 (varint 6)
        // entry 2: code 11 (one line +1), 2 units, two column bytes
        // entry 3: code 15 (no location), 1 unit
        // entry 4: code 14 (long), 1 unit, delta -2 (varint 5), end line, cols
        let m = Bytes(vec![
            0x80 | (13 << 3),
            6,
            0x80 | (11 << 3) | 1,
            0,
            4,
            0x80 | (15 << 3),
            0x80 | (14 << 3),
            5,
            0,
            1,
            1,
        ]);
        assert_eq!(location_table_line(&mut stream(&m), 10, 0), Some(13));
        assert_eq!(location_table_line(&mut stream(&m), 10, 2), Some(14));
        assert_eq!(location_table_line(&mut stream(&m), 10, 4), Some(14));
        assert_eq!(location_table_line(&mut stream(&m), 10, 6), Some(-1));
        assert_eq!(location_table_line(&mut stream(&m), 10, 8), Some(12));
        assert_eq!(location_table_line(&mut stream(&m), 10, 10), Some(-1));
    }
}
