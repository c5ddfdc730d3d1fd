//! Alternate signal stacks, so a thread whose stack overflowed can still run the handler.
//! `sigaltstack` is per thread: the thread calling `enable()` gets one, and so does every
//! Python thread started afterwards (the Python side hooks thread start).

use std::cell::Cell;
use std::io;

/// Usable size of each alternate stack: the unwinder's CFI context plus formatting.
const ALT_STACK_SIZE: usize = 256 * 1024;
pub const GUARD: usize = 4096;

thread_local! {
    /// The mapping we installed on this thread (base, length), to free it later.
    static OURS: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// Gives the calling thread an alternate stack unless it already has a large enough one
/// (someone else's is kept, never replaced).
pub fn ensure() -> io::Result<()> {
    // SAFETY: stack_t is plain data; all-zero is a valid value.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: querying with a null new-stack pointer only writes `current`.
    unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    if current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= ALT_STACK_SIZE {
        return Ok(());
    }
    if current.ss_flags & libc::SS_ONSTACK != 0 {
        return Ok(()); // running on it right now: leave it alone
    }
    let len = ALT_STACK_SIZE + GUARD;
    let base = map_stack(len)?;
    let st = libc::stack_t {
        ss_sp: (base as usize + GUARD) as *mut libc::c_void,
        ss_flags: 0,
        ss_size: ALT_STACK_SIZE,
    };
    // SAFETY: `st` describes memory we own for as long as it stays installed.
    if unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) } != 0 {
        let err = io::Error::last_os_error();
        // SAFETY: unmapping the mapping made above, never installed.
        unsafe { libc::munmap(base, len) };
        return Err(err);
    }
    if let Some((old_base, old_len)) = OURS.with(|o| o.replace(Some((base as usize, len)))) {
        // SAFETY: our previous, smaller stack is no longer installed.
        unsafe { libc::munmap(old_base as *mut libc::c_void, old_len) };
    }
    Ok(())
}

/// Removes and frees the alternate stack `ensure()` installed on this thread, if any.
/// Called when a Python thread finishes its work.
pub fn release() {
    let Some((base, len)) = OURS.with(|o| o.take()) else {
        return;
    };
    let off = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
    // SAFETY: disabling the alternate stack, then unmapping our own mapping; we are not
    // running on it (this is ordinary Python-called code).
    unsafe {
        if libc::sigaltstack(&off, std::ptr::null_mut()) == 0 {
            libc::munmap(base as *mut libc::c_void, len);
        }
    }
}

/// Maps `len` bytes for a stack, the lowest page of which is a guard page.
pub fn map_stack(len: usize) -> io::Result<*mut libc::c_void> {
    // SAFETY: anonymous private mapping; the result is checked.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the first page of our own mapping becomes the guard page.
    unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) };
    Ok(base)
}
