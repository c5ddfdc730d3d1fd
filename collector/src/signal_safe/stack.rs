//! The stack a report runs on.
//!
//! A handler can be entered on an alternate signal stack that is not ours and far too small
//! for a report: `faulthandler.enable()` after `crashcatch.enable()` installs its own ~12 KiB
//! malloc'ed stack without a guard page, and a report overflowing it scribbles over the heap.
//! So the body of every report runs on one stack mapped at `enable()` time, with a guard page
//! below it. Only the owner of the report lock uses it, so one is enough.
//!
//! Its use is measured: the mapping starts zero-filled and reports write from the top down,
//! so the lowest non-zero byte is the high-water mark ([`high_water`], printed by a test hook).

use core::sync::atomic::{AtomicUsize, Ordering};

/// Usable bytes. Measured (tests/test_hardening.py: deep C stack, 21 threads, symbols from
/// disk, a minidump): 67 KiB on every interpreter, so this leaves a margin of over 7x.
pub const REPORT_STACK_SIZE: usize = 512 * 1024;
use crate::altstack::GUARD;

/// Lowest usable address and top of the report stack; 0 until [`prepare`] ran.
static BASE: AtomicUsize = AtomicUsize::new(0);
static TOP: AtomicUsize = AtomicUsize::new(0);

/// Maps the report stack (once). Not signal-safe: called at enable time.
pub fn prepare() -> std::io::Result<()> {
    if TOP.load(Ordering::Acquire) != 0 {
        return Ok(());
    }
    let len = REPORT_STACK_SIZE + GUARD;
    let base = crate::altstack::map_stack(len)?;
    BASE.store(base as usize + GUARD, Ordering::Release);
    TOP.store(base as usize + len, Ordering::Release);
    Ok(())
}

fn current_sp() -> usize {
    let sp: usize;
    // SAFETY: reads rsp; touches no memory.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

extern "C" fn trampoline(arg: *mut libc::c_void) {
    // SAFETY: `arg` is the `&mut &mut dyn FnMut()` that `run` passes and keeps alive for
    // the duration of the call.
    let f = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
    f();
}

/// Runs `f` on the report stack (or where it is when the stack is not prepared, or when
/// this thread is already running on it).
pub fn run(f: &mut dyn FnMut()) {
    let (base, top) = (BASE.load(Ordering::Acquire), TOP.load(Ordering::Acquire));
    let sp = current_sp();
    if top == 0 || (sp >= base && sp < top) {
        return f();
    }
    let mut f = f;
    let arg = &mut f as *mut &mut dyn FnMut() as *mut libc::c_void;
    // SAFETY: switches rsp to the top of our own mapping (16-byte aligned: mmap'ed pages),
    // keeps the old rsp on the new stack, calls the trampoline with the ABI's alignment
    // (rsp % 16 == 0 at the call), and restores rsp. All caller-saved registers are
    // declared clobbered; nothing on the old stack is touched below the saved rsp.
    unsafe {
        core::arch::asm!(
            "mov rax, rsp",
            "mov rsp, {top}",
            "push rax",
            "sub rsp, 8",
            "call {f}",
            "add rsp, 8",
            "pop rsp",
            top = in(reg) top,
            f = in(reg) trampoline as extern "C" fn(*mut libc::c_void),
            in("rdi") arg,
            out("rax") _,
            clobber_abi("C"),
        );
    }
}

/// Bytes of the report stack used so far by all reports (its high-water mark).
pub fn high_water() -> usize {
    let (base, top) = (BASE.load(Ordering::Acquire), TOP.load(Ordering::Acquire));
    if top == 0 {
        return 0;
    }
    let mut addr = base;
    while addr < top {
        // SAFETY: [base, top) is our own readable mapping.
        if unsafe { core::ptr::read_volatile(addr as *const u64) } != 0 {
            break;
        }
        addr += 8;
    }
    top - addr
}
