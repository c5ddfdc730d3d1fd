//! crashcatch's own threads (the timeout watchdog, the dump thread) take no signal.
//!
//! A process-directed signal goes to any thread that does not block it. One that landed on
//! a crashcatch thread would run a `register()`ed handler there, where no Python thread is
//! current: the report's "Current thread" line is lost (seen: a SIGUSR1 sent right after
//! `dump_traceback_later()` was taken by the watchdog thread as it started, when the
//! machine was busy). faulthandler's watchdog blocks every signal too; ours are created
//! with every signal blocked, so there is no window at their start either.

use std::io;
use std::thread::JoinHandle;

/// Starts thread `name` running `f` with every signal blocked from its first instruction.
pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    // SAFETY: sigset_t is plain data filled by sigfillset; the caller's mask is restored
    // once the thread exists (it inherits the blocked one).
    unsafe {
        let (mut all, mut old): (libc::sigset_t, libc::sigset_t) = (std::mem::zeroed(), std::mem::zeroed());
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let spawned = std::thread::Builder::new().name(name.into()).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        spawned
    }
}
