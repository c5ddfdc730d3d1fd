//! Alternate signal stacks, so a thread whose stack overflowed can still run the handler.
//! `sigaltstack` is per thread: the thread calling `enable()` gets one, and so does every
//! Python thread started afterwards (the Python side hooks thread start).
//!
//! Thread start and end are cheap: stacks come from and go back to a bounded [`pool`], so
//! a thread start costs one `sigaltstack` call and a thread end one more (it was seven
//! system calls: query, mmap, mprotect, install; disable, munmap).

mod pool;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::io;

/// Usable size of each alternate stack: the unwinder's CFI context plus formatting.
const ALT_STACK_SIZE: usize = 256 * 1024;
pub const GUARD: usize = 4096;
/// Each alternate stack's mapping: the guard page, then the stack.
const MAPPING_LEN: usize = ALT_STACK_SIZE + GUARD;
/// Free stacks kept for the next threads; more than this many ending at once are unmapped.
/// Untouched pages cost no memory, only address space (260 KiB each).
const POOL_SLOTS: usize = 32;

static FREE: pool::Pool<POOL_SLOTS> = pool::Pool::new();

thread_local! {
    /// The base of the mapping we installed on this thread, to give it back later.
    static OURS: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Gives the calling thread an alternate stack unless it already has a large enough one
/// (someone else's is kept, never replaced). Called by `enable()` and `register()`.
pub fn ensure() -> io::Result<()> {
    // SAFETY: stack_t is plain data; all-zero is a valid value.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: querying with a null new-stack pointer only writes `current`.
    unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    if is_large_enough(&current) {
        return Ok(());
    }
    if current.ss_flags & libc::SS_ONSTACK != 0 {
        return Ok(()); // running on it right now: leave it alone
    }
    let base = take_or_map()?;
    if let Err(err) = install(base, None) {
        give_back(base);
        return Err(err);
    }
    if let Some(old) = OURS.with(|o| o.replace(Some(base))) {
        give_back(old); // our previous stack, no longer installed
    }
    Ok(())
}

/// Gives a newly started thread an alternate stack, with a single `sigaltstack` call in
/// the usual case (a new thread has none). A thread that already has a large enough one
/// of its own (set up by whatever started it) gets it back and keeps it.
pub fn on_thread_start() -> io::Result<()> {
    if OURS.with(Cell::get).is_some() {
        return ensure(); // not a fresh thread after all: do the careful checks
    }
    let base = take_or_map()?;
    // SAFETY: stack_t is plain data; all-zero is a valid value.
    let mut previous: libc::stack_t = unsafe { std::mem::zeroed() };
    match install(base, Some(&mut previous)) {
        Err(err) => {
            give_back(base);
            // EPERM: running on an alternate stack right now, which is kept.
            if err.raw_os_error() == Some(libc::EPERM) {
                return Ok(());
            }
            return Err(err);
        }
        Ok(()) if is_large_enough(&previous) => {
            let restore = libc::stack_t { ss_flags: previous.ss_flags & !libc::SS_ONSTACK, ..previous };
            // SAFETY: reinstalls the stack that was installed a moment ago, unchanged.
            if unsafe { libc::sigaltstack(&restore, std::ptr::null_mut()) } == 0 {
                give_back(base);
                return Ok(());
            }
        }
        Ok(()) => {}
    }
    OURS.with(|o| o.set(Some(base)));
    Ok(())
}

/// Removes the alternate stack `ensure()`/`on_thread_start()` installed on this thread,
/// if any, and gives it back to the pool. Called when a Python thread finishes its work.
pub fn release() {
    let Some(base) = OURS.with(Cell::take) else {
        return;
    };
    let off = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
    // SAFETY: stack_t is plain data; all-zero is a valid value.
    let mut previous: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: disables the alternate stack; we are not running on it (this is ordinary
    // Python-called code), so once it is disabled no signal can be delivered on it.
    if unsafe { libc::sigaltstack(&off, &mut previous) } != 0 {
        return; // still installed: keep it mapped and out of the pool (leaked)
    }
    if previous.ss_flags & libc::SS_DISABLE == 0 && previous.ss_sp as usize != base + GUARD {
        // Someone replaced ours on this thread since: theirs goes back in place.
        // SAFETY: reinstalls the stack that was installed a moment ago, unchanged.
        unsafe { libc::sigaltstack(&previous, std::ptr::null_mut()) };
    }
    give_back(base);
}

fn is_large_enough(st: &libc::stack_t) -> bool {
    st.ss_flags & libc::SS_DISABLE == 0 && st.ss_size >= ALT_STACK_SIZE
}

/// Installs the stack of the mapping at `base` on this thread, returning the one it
/// replaces in `previous` if asked.
fn install(base: usize, previous: Option<&mut libc::stack_t>) -> io::Result<()> {
    let st =
        libc::stack_t { ss_sp: (base + GUARD) as *mut libc::c_void, ss_flags: 0, ss_size: ALT_STACK_SIZE };
    let previous = previous.map_or(std::ptr::null_mut(), |p| p as *mut libc::stack_t);
    // SAFETY: `st` describes a mapping we own for as long as it stays installed (it goes
    // back to the pool only after `release` disabled it); `previous` is null or writable.
    if unsafe { libc::sigaltstack(&st, previous) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A free stack from the pool, or a new mapping when the pool is empty.
fn take_or_map() -> io::Result<usize> {
    match FREE.take() {
        Some(base) => Ok(base),
        None => map_stack(MAPPING_LEN).map(|base| base as usize),
    }
}

/// Hands a stack that is installed nowhere to the pool, or unmaps it when the pool is full.
fn give_back(base: usize) {
    if !FREE.give(base) {
        // SAFETY: our own mapping of MAPPING_LEN bytes, installed on no thread.
        unsafe { libc::munmap(base as *mut libc::c_void, MAPPING_LEN) };
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
