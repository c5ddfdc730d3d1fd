//! A minidump's memory list as a `pylayout::Memory`.

use minidump::UnifiedMemoryList;
use pylayout::Memory;

/// Reads may span adjacent regions; a byte outside every region fails the read.
pub struct DumpMemory<'a>(pub UnifiedMemoryList<'a>);

impl Memory for DumpMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(at) = addr.checked_add(done as u64) else { return false };
            let Some(region) = self.0.memory_at_address(at) else { return false };
            let bytes = region.bytes();
            let Some(off) = at.checked_sub(region.base_address()).map(|o| o as usize) else { return false };
            if off >= bytes.len() {
                return false;
            }
            let n = (bytes.len() - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&bytes[off..off + n]);
            done += n;
        }
        true
    }
}
