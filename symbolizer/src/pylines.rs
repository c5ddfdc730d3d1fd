//! Python frames' line numbers, with the cost bounded: finding one walks the code object's
//! line table from its start (pylayout::lines), and a corrupt dump can give 100 000 frames
//! the same megabytes-long table. Each (code object, instruction) is looked up once, and the
//! line tables read for a whole dump are capped; past the cap, lines are unknown.

use pylayout::{lines, Layout, Memory};
use std::cell::Cell;
use std::collections::HashMap;

/// Bytes of line tables read at most for a whole dump: real tables are a few hundred bytes,
/// so this is tens of thousands of distinct functions (about a second of work).
pub const MAX_LINE_TABLE_BYTES: u64 = 256 << 20;

/// Memory whose reads fail once `left` bytes have been read.
struct Metered<'a> {
    mem: &'a dyn Memory,
    left: Cell<u64>,
}

impl Memory for Metered<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(left) = self.left.get().checked_sub(buf.len() as u64) else {
            self.left.set(0);
            return false;
        };
        self.left.set(left);
        self.mem.read(addr, buf)
    }
}

pub struct LineNumbers<'a> {
    mem: Metered<'a>,
    layout: &'a Layout,
    known: HashMap<(u64, i64), Option<i32>>,
}

impl<'a> LineNumbers<'a> {
    pub fn new(mem: &'a dyn Memory, layout: &'a Layout, budget: u64) -> LineNumbers<'a> {
        LineNumbers { mem: Metered { mem, left: Cell::new(budget) }, layout, known: HashMap::new() }
    }

    /// The line `code` runs at instruction offset `addr` (see `lines::addr_to_line`).
    pub fn line(&mut self, code: u64, addr: i64) -> Option<i32> {
        let (mem, layout) = (&self.mem, self.layout);
        *self.known.entry((code, addr)).or_insert_with(|| lines::addr_to_line(mem, layout, code, addr))
    }

    /// Whether the budget ran out: lines looked up since may be unknown for that reason.
    pub fn spent(&self) -> bool {
        self.mem.left.get() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Zeros;
    impl Memory for Zeros {
        fn read(&self, _: u64, buf: &mut [u8]) -> bool {
            buf.fill(0);
            true
        }
    }

    #[test]
    fn reads_fail_once_the_budget_is_spent() {
        let metered = Metered { mem: &Zeros, left: Cell::new(10) };
        let mut buf = [1u8; 8];
        assert!(metered.read(0, &mut buf) && buf == [0; 8]);
        assert!(!metered.read(0, &mut buf));
        assert_eq!(metered.left.get(), 0);
        assert!(!metered.read(0, &mut buf[..1]));
    }
}
