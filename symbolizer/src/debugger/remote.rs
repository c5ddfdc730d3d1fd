//! The target's memory, read through gdb a page at a time and kept for one request.

use super::protocol::{Gdb, MAX_READ};
use pylayout::Memory;
use std::cell::RefCell;
use std::collections::HashMap;

const PAGE: u64 = 4096;

/// Pages read for one request. A page gdb cannot read whole (a converted dump's memory
/// ranges need not be page-aligned) falls back to exact reads. Dropped at each request:
/// the target may have run in between.
pub struct RemoteMemory<'a> {
    gdb: &'a Gdb,
    /// None: the page could not be read whole.
    pages: RefCell<HashMap<u64, Option<Vec<u8>>>>,
}

impl<'a> RemoteMemory<'a> {
    pub fn new(gdb: &'a Gdb) -> RemoteMemory<'a> {
        RemoteMemory { gdb, pages: RefCell::new(HashMap::new()) }
    }

    /// Reads the uncached pages of `[first, last]` (page addresses): all in one question
    /// when gdb can, else one by one.
    fn fetch(&self, first: u64, last: u64) {
        let mut pages = self.pages.borrow_mut();
        let missing: Vec<u64> =
            (first..=last).step_by(PAGE as usize).filter(|p| !pages.contains_key(p)).collect();
        let (Some(&lo), Some(&hi)) = (missing.first(), missing.last()) else { return };
        let span = (hi - lo + PAGE) as usize;
        if missing.len() > 1 && span <= MAX_READ {
            if let Some(bytes) = self.gdb.read_memory(lo, span) {
                for (i, chunk) in bytes.chunks(PAGE as usize).enumerate() {
                    pages.entry(lo + i as u64 * PAGE).or_insert_with(|| Some(chunk.to_vec()));
                }
                return;
            }
        }
        for p in missing {
            let page = self.gdb.read_memory(p, PAGE as usize).filter(|b| b.len() == PAGE as usize);
            pages.insert(p, page);
        }
    }
}

impl Memory for RemoteMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        if buf.is_empty() {
            return true;
        }
        let Some(end) = addr.checked_add(buf.len() as u64 - 1) else { return false };
        self.fetch(addr & !(PAGE - 1), end & !(PAGE - 1));
        let pages = self.pages.borrow();
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr + done as u64;
            let page = at & !(PAGE - 1);
            let off = (at - page) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            match pages.get(&page) {
                Some(Some(bytes)) => buf[done..done + n].copy_from_slice(&bytes[off..off + n]),
                _ => match self.gdb.read_memory(at, n) {
                    Some(bytes) if bytes.len() == n => buf[done..done + n].copy_from_slice(&bytes),
                    _ => return false,
                },
            }
            done += n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A gdb whose answers are given in advance; returns it and what it was asked.
    fn scripted(answers: Vec<u8>) -> (Gdb, std::rc::Rc<std::cell::RefCell<Vec<u8>>>) {
        #[derive(Clone)]
        struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let asked = Shared(Default::default());
        (Gdb::new(Box::new(Cursor::new(answers)), Box::new(asked.clone())), asked.0)
    }

    #[test]
    fn a_page_is_read_once_and_unreadable_pages_fall_back_to_exact_reads() {
        let page: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let mut answers = b"4096\n".to_vec();
        answers.extend_from_slice(&page);
        // The next page cannot be read whole; its first 8 bytes can.
        answers.extend_from_slice(b"0\n8\nABCDEFGH");
        let (gdb, asked) = scripted(answers);
        let mem = RemoteMemory::new(&gdb);
        assert_eq!(mem.read_u32(0x1004), Some(u32::from_le_bytes([4, 5, 6, 7])));
        assert_eq!(mem.read_u8(0x1fff), Some(0xff));
        assert_eq!(mem.read_u64(0x2000), Some(u64::from_le_bytes(*b"ABCDEFGH")));
        assert_eq!(String::from_utf8_lossy(&asked.borrow()), "M 1000 4096\nM 2000 4096\nM 2000 8\n");
        // The pipe is at its end: a new read fails, and says the pipe broke.
        assert_eq!(mem.read_u8(0x9000), None);
        assert!(gdb.is_broken());
    }
}
