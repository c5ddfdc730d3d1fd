//! The crashing thread's real stack pointer in the dump.
//!
//! After a stack overflow the thread's rsp lies in the guard region below its stack, which
//! cannot be read. minidump-writer copies a stack from its stack pointer up and would fail
//! on the guard (glibc's madvise guard pages look mapped), so it is given the first readable
//! page above instead. The dump must still say where the thread really was: unwinders start
//! from the context's registers, and from a moved rsp they read the wrong return addresses.
//! This puts the real value back into the crashing thread's context, which the thread list
//! and the exception stream share; the stack's memory still starts at the readable page.

use crate::shrink::{u32_at, u64_at};
use crate::streams;

const THREAD_LIST: u32 = 3;
const EXCEPTION: u32 = 6;
/// `MDRawContextAMD64`: its size, and where `rsp` lies in it.
const CONTEXT_SIZE: u32 = 1232;
const RSP_OFFSET: usize = 0x98;

/// Writes `real` over the rsp of thread `tid`'s context wherever it holds `written` (the
/// value minidump-writer was given). Returns whether a context was changed.
pub fn restore_stack_pointer(dump: &mut [u8], tid: u32, written: u64, real: u64) -> bool {
    let Some(streams) = streams::directory(dump) else { return false };
    // (size, offset) of every context location that belongs to the thread.
    let mut contexts = Vec::new();
    for &(stream, _, loc) in &streams {
        let loc = loc as usize;
        match stream {
            THREAD_LIST => {
                let count = u32_at(dump, loc).unwrap_or(0) as usize;
                let entry = (0..count).map(|i| loc + 4 + i * 48).find(|&e| u32_at(dump, e) == Some(tid));
                if let Some(e) = entry {
                    contexts.extend(u32_at(dump, e + 40).zip(u32_at(dump, e + 44)));
                }
            }
            EXCEPTION if u32_at(dump, loc) == Some(tid) => {
                contexts.extend(u32_at(dump, loc + 160).zip(u32_at(dump, loc + 164)));
            }
            _ => {}
        }
    }
    let mut changed = false;
    for (size, rva) in contexts {
        let at = rva as usize + RSP_OFFSET;
        if size >= CONTEXT_SIZE && u64_at(dump, at) == Some(written) {
            if let Some(slot) = dump.get_mut(at..at + 8) {
                slot.copy_from_slice(&real.to_le_bytes());
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dump with a thread list (one thread, tid 7) and an exception stream sharing one
    /// context whose rsp is `rsp`.
    fn dump_with_context(rsp: u64) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        d[..4].copy_from_slice(b"MDMP");
        d[8..12].copy_from_slice(&2u32.to_le_bytes());
        d[12..16].copy_from_slice(&32u32.to_le_bytes());
        let (threads, exception, context) = (64usize, 256usize, 1024usize);
        for (i, (kind, loc)) in [(THREAD_LIST, threads), (EXCEPTION, exception)].into_iter().enumerate() {
            let e = 32 + i * 12;
            d[e..e + 4].copy_from_slice(&kind.to_le_bytes());
            d[e + 8..e + 12].copy_from_slice(&(loc as u32).to_le_bytes());
        }
        d[threads..threads + 4].copy_from_slice(&1u32.to_le_bytes());
        d[threads + 4..threads + 8].copy_from_slice(&7u32.to_le_bytes());
        d[threads + 44..threads + 48].copy_from_slice(&CONTEXT_SIZE.to_le_bytes());
        d[threads + 48..threads + 52].copy_from_slice(&(context as u32).to_le_bytes());
        d[exception..exception + 4].copy_from_slice(&7u32.to_le_bytes());
        d[exception + 160..exception + 164].copy_from_slice(&CONTEXT_SIZE.to_le_bytes());
        d[exception + 164..exception + 168].copy_from_slice(&(context as u32).to_le_bytes());
        d.resize(context + CONTEXT_SIZE as usize, 0);
        d[context + RSP_OFFSET..context + RSP_OFFSET + 8].copy_from_slice(&rsp.to_le_bytes());
        d
    }

    #[test]
    fn the_real_stack_pointer_goes_back_into_the_threads_context() {
        let mut d = dump_with_context(0x7000_1000);
        assert!(restore_stack_pointer(&mut d, 7, 0x7000_1000, 0x7000_0fe0));
        assert_eq!(u64_at(&d, 1024 + RSP_OFFSET), Some(0x7000_0fe0));
        // Another thread, or a context that does not hold the value we gave: untouched.
        let mut d = dump_with_context(0x7000_1000);
        assert!(!restore_stack_pointer(&mut d, 8, 0x7000_1000, 0x7000_0fe0));
        assert!(!restore_stack_pointer(&mut d, 7, 0x7000_2000, 0x7000_0fe0));
        assert_eq!(u64_at(&d, 1024 + RSP_OFFSET), Some(0x7000_1000));
    }
}
