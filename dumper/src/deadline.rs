//! The helper's own deadline. While minidump-writer holds the target's threads in a ptrace
//! stop, the requesting thread is stopped too and its deadline cannot fire: a helper stuck
//! there (a read that never returns) would keep the process stopped. So the helper arms a
//! timer for the requester's deadline; SIGALRM's default action ends it, and the kernel then
//! resumes every thread it held.

/// Grace after the requester's deadline: a requester that is not stopped kills us first
/// and reports its own deadline.
const GRACE_MS: u64 = 500;

/// Ends this process with SIGALRM `GRACE_MS` after the requester's deadline of `ms`.
pub fn arm(ms: u64) {
    let ms = ms.saturating_add(GRACE_MS);
    let value = libc::timeval {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
    };
    let timer = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 }, it_value: value };
    // SAFETY: setitimer reads `timer`; SIGALRM keeps its default action in this program.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) };
}

/// Cancels the timer (the threads are resumed: nothing of ours can keep them stopped).
pub fn disarm() {
    let zero = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let timer = libc::itimerval { it_interval: zero, it_value: zero };
    // SAFETY: setitimer reads `timer`.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) };
}
