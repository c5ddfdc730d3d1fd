//! A lock for the tables Python threads write outside signal handlers (thread names at
//! thread start, annotations), which a `fork()` cannot leave held for ever. A `Mutex`
//! locked by another thread at the moment of a fork stays locked in the child, where that
//! thread does not exist: the child's next thread start would hang. This lock records the
//! process that holds it; a child finding its parent's id there takes it over (the parent's
//! holder has no thread in the child, and the tables stay usable: an entry half-written at
//! the fork is rewritten or ignored, never followed).
//!
//! Critical sections are a few stores, so waiters yield rather than sleep.
//!
//! The process id is cached (a `getpid()` per lock was a system call per thread start):
//! a `pthread_atfork` child handler forgets it, so a forked child asks again. A child made
//! by a raw `clone` that skips the fork handlers keeps its parent's id: it only loses the
//! takeover of a lock held at that moment.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// This process's id, or 0 until asked (and again in a forked child).
static PID: AtomicU32 = AtomicU32::new(0);
static FORGET_IN_CHILDREN: Once = Once::new();

extern "C" fn forget_pid_in_child() {
    PID.store(0, Ordering::Relaxed);
}

/// The current process id, a system call only on the first use in each process.
pub fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            // Registered before the id is cached: a fork after the cache is filled resets it.
            FORGET_IN_CHILDREN.call_once(|| {
                // SAFETY: registers a handler that only stores to an atomic (async-signal-safe),
                // as a forked child runs it; no prepare or parent handler.
                unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
            });
            let me = std::process::id();
            PID.store(me, Ordering::Relaxed);
            me
        }
        me => me,
    }
}

pub struct ForkLock {
    /// 0 when free, else the process id of the holder.
    holder: AtomicU32,
}

pub struct Guard<'a>(&'a ForkLock);

impl ForkLock {
    pub const fn new() -> Self {
        ForkLock { holder: AtomicU32::new(0) }
    }

    pub fn lock(&self) -> Guard<'_> {
        let me = pid();
        let mut seen = 0;
        loop {
            match self.holder.compare_exchange(seen, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Guard(self),
                // Held here: wait for it to be freed.
                Err(holder) if holder == me => {
                    seen = 0;
                    std::thread::yield_now();
                }
                // Free (try again), or held by the process this one was forked from:
                // take it over from that exact holder.
                Err(holder) => seen = holder,
            }
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.holder.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_held_by_another_process_is_taken_over() {
        let lock = ForkLock::new();
        // As a child sees it after a fork while a parent's thread held it.
        lock.holder.store(std::process::id().wrapping_add(1), Ordering::Relaxed);
        drop(lock.lock());
        assert_eq!(lock.holder.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_cached_pid_is_forgotten_in_a_forked_child() {
        assert_eq!(pid(), std::process::id());
        // SAFETY: the child only makes system calls and exits; no allocation, no locks.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: as above.
            let code = if pid() == unsafe { libc::getpid() } as u32 { 0 } else { 1 };
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        assert!(child > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is writable.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
        assert_eq!(pid(), std::process::id());
    }

    #[test]
    fn threads_of_one_process_exclude_each_other() {
        let lock = Arc::new(ForkLock::new());
        let inside = Arc::new(AtomicU32::new(0));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (lock, inside) = (lock.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let _guard = lock.lock();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    }
}
