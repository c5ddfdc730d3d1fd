//! The handler's half of a deferred live dump (a `register()`ed signal's minidump): hand
//! the report lock and the request to the dump thread (`crate::livedump`) and return.
//! Only atomics, `getpid` and a `write` to an eventfd: async-signal-safe.

use super::handler;
use core::sync::atomic::{AtomicI32, Ordering};

/// The dump thread's OS thread id (0: none), and the process it belongs to: a forked
/// child sees its parent's pid here and writes its dumps itself, as before.
pub static DUMPER_TID: AtomicI32 = AtomicI32::new(0);
pub static DUMPER_PID: AtomicI32 = AtomicI32::new(0);
/// The eventfd the dump thread sleeps on (-1: none).
pub static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The signal whose dump is pending or being written (0: none), and a duplicate of the
/// descriptor its report went to, for the dump's result line (the dump thread closes it).
pub static PENDING_SIGNO: AtomicI32 = AtomicI32::new(0);
pub static PENDING_FD: AtomicI32 = AtomicI32::new(-1);

/// Whether this process has a dump thread (not one copied from a parent by `fork`).
pub fn thread_running() -> bool {
    // SAFETY: getpid has no preconditions.
    DUMPER_TID.load(Ordering::Acquire) != 0 && DUMPER_PID.load(Ordering::Acquire) == unsafe { libc::getpid() }
}

/// Called by a handler holding the report lock, its text written: passes the lock and the
/// dump of `signo` to the dump thread, which writes the result line to `fd`. False (the
/// caller still holds the lock and dumps itself) when there is no dump thread.
pub fn hand_over(signo: i32, fd: i32) -> bool {
    let wake = WAKE_FD.load(Ordering::Acquire);
    if wake < 0 || !thread_running() || PENDING_SIGNO.load(Ordering::Acquire) != 0 {
        return false;
    }
    let dumper = DUMPER_TID.load(Ordering::Acquire);
    // A descriptor of our own for the result line: the program may close its file (after
    // `unregister()`) and reuse the number for another before the dump is written, and the
    // line must not land in that one. fcntl is async-signal-safe.
    // SAFETY: fcntl on an integer descriptor; the result is checked.
    let own = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if own < 0 {
        return false;
    }
    PENDING_FD.store(own, Ordering::Release);
    PENDING_SIGNO.store(signo, Ordering::Release);
    if handler::pass_report_lock(dumper) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let n = unsafe { libc::write(wake, (&one as *const u64).cast(), 8) };
        if n == 8 {
            return true;
        }
        // The thread cannot be woken: take the lock back and dump here.
        handler::take_back_report_lock(dumper);
    }
    PENDING_SIGNO.store(0, Ordering::Release);
    PENDING_FD.store(-1, Ordering::Release);
    // SAFETY: closing the duplicate made above, which nothing else uses.
    unsafe { libc::close(own) };
    false
}
