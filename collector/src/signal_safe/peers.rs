//! The C stacks of the other threads, for a timeout report (`dump_traceback_later(…,
//! c_stack=True)`): the whole point of a timeout is to see where native code hangs.
//!
//! Only a thread can read its own registers, so the watchdog asks each thread in turn: it
//! borrows a real-time signal nobody handles (disposition `SIG_DFL`), sends it to one thread
//! with `tgkill`, and that thread's handler unwinds its own stack from the signal's context
//! into [`SLOT`]. The watchdog waits at most [`ANSWER_MS`] for the answer, then names and
//! prints the frames itself. A thread that does not answer (it blocks the signal, or is
//! stopped) is reported as such; its late answer is refused by the slot's state machine, and
//! the signal is put back to `SIG_IGN` first (discarding anything still pending) and then to
//! `SIG_DFL`, so a late delivery can never kill the process.
//!
//! The watchdog holds the report lock throughout, so the thread that answers may use the
//! report stack: no crash report can be running on it.

use super::config::Target;
use super::cstack::{self, Walk};
use super::handler::{gettid, sleep_ms, zeroed_sigaction};
use super::out::{errno, set_errno, Out};
use super::stack;
use super::unwind::{End, Frame, Regs, Unwinder};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// How long one thread is given to answer.
pub const ANSWER_MS: u32 = 100;
/// Frames a thread records at most; deeper stacks end with "frame limit reached".
const MAX_FRAMES: usize = 1024;

const IDLE: u32 = 0;
const REQUESTED: u32 = 1;
const RUNNING: u32 = 2;
const DONE: u32 = 3;

/// The one request in flight: which thread, its state, and what it recorded.
struct Slot {
    tid: AtomicI32,
    state: AtomicU32,
    pthread: AtomicU64,
    count: AtomicUsize,
    end: UnsafeCell<End>,
    frames: UnsafeCell<[Option<Frame>; MAX_FRAMES]>,
}

// SAFETY: `frames` and `end` are written only by the thread that moved `state` from REQUESTED to
// RUNNING, and read only by the watchdog after it saw DONE (Acquire/Release on `state`).
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot {
    tid: AtomicI32::new(0),
    state: AtomicU32::new(IDLE),
    pthread: AtomicU64::new(0),
    count: AtomicUsize::new(0),
    end: UnsafeCell::new(End::NotYet),
    frames: UnsafeCell::new([None; MAX_FRAMES]),
};

/// The target the answering threads unwind with (published before any request).
static TARGET: core::sync::atomic::AtomicPtr<Target> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// The handler of the borrowed signal: unwinds this thread if it is the one asked.
extern "C" fn answer(_signo: i32, _info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    let saved_errno = errno();
    if SLOT.tid.load(Ordering::Acquire) != gettid()
        || SLOT.state.compare_exchange(REQUESTED, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_err()
    {
        return set_errno(saved_errno);
    }
    // SAFETY: TARGET is published (never freed) before the first request; ucontext is the
    // kernel's valid ucontext_t for this SA_SIGINFO handler.
    let (target, uc) =
        unsafe { (TARGET.load(Ordering::Acquire).as_ref(), (ucontext as *const libc::ucontext_t).as_ref()) };
    let (mut count, mut end) = (0usize, End::NotYet);
    if let (Some(t), Some(uc)) = (target, uc) {
        stack::run(&mut || {
            // SAFETY: RUNNING makes this thread the only writer of `frames` (see Slot).
            let frames = unsafe { &mut *SLOT.frames.get() };
            let mut walk = Unwinder::new(&t.mem, &t.facts, Regs::from_ucontext(uc));
            for (slot, frame) in frames.iter_mut().zip(walk.by_ref()) {
                *slot = Some(frame);
                count += 1;
            }
            end = walk.end;
        });
    }
    // SAFETY: pthread_self only reads the thread pointer.
    SLOT.pthread.store(unsafe { libc::pthread_self() } as u64, Ordering::Relaxed);
    SLOT.count.store(count, Ordering::Relaxed);
    // SAFETY: RUNNING makes this thread the only writer (see Slot).
    unsafe { *SLOT.end.get() = end };
    SLOT.state.store(DONE, Ordering::Release);
    set_errno(saved_errno);
}

/// The frames a thread recorded, replayed for printing.
struct Recorded {
    next: usize,
    count: usize,
    end: End,
}

impl Iterator for Recorded {
    type Item = Frame;
    fn next(&mut self) -> Option<Frame> {
        if self.next >= self.count {
            return None;
        }
        // SAFETY: state DONE was seen with Acquire: the writer has finished (see Slot).
        let frame = unsafe { (*SLOT.frames.get()).get(self.next).copied().flatten() };
        self.next += 1;
        frame
    }
}

impl Walk for Recorded {
    fn end(&self) -> End {
        self.end
    }
}

/// A real-time signal with the default disposition, now handled by [`answer`].
struct Borrowed {
    signo: i32,
    previous: libc::sigaction,
}

impl Borrowed {
    fn take() -> Option<Borrowed> {
        let (low, high) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        // From the top: applications and libraries usually take theirs from SIGRTMIN up.
        (low..=high).rev().find_map(|signo| {
            let mut previous: libc::sigaction = zeroed_sigaction();
            // SAFETY: reads the current disposition into a valid struct.
            if unsafe { libc::sigaction(signo, core::ptr::null(), &mut previous) } != 0
                || previous.sa_sigaction != libc::SIG_DFL
            {
                return None;
            }
            let mut sa = zeroed_sigaction();
            sa.sa_sigaction = answer as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
            // SAFETY: a valid sigaction whose handler has the SA_SIGINFO signature.
            (unsafe { libc::sigaction(signo, &sa, core::ptr::null_mut()) } == 0)
                .then_some(Borrowed { signo, previous })
        })
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        let mut ignore = zeroed_sigaction();
        ignore.sa_sigaction = libc::SIG_IGN;
        // SAFETY: valid sigaction structs. SIG_IGN discards deliveries still pending (a
        // thread that blocks the signal), so restoring SIG_DFL cannot kill the process.
        unsafe {
            libc::sigaction(self.signo, &ignore, core::ptr::null_mut());
            libc::sigaction(self.signo, &self.previous, core::ptr::null_mut());
        }
    }
}

/// Asks `tid` for its stack; true when it answered (its frames are in SLOT).
fn ask(signo: i32, tid: i32) -> bool {
    SLOT.tid.store(tid, Ordering::Release);
    SLOT.state.store(REQUESTED, Ordering::Release);
    // SAFETY: tgkill to a thread of our own process with a signal we handle.
    if unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signo) } != 0 {
        SLOT.state.store(IDLE, Ordering::Release);
        return false;
    }
    let mut waited = 0;
    loop {
        match SLOT.state.load(Ordering::Acquire) {
            DONE => return true,
            // Started: the walk is bounded, let it finish (it uses the report stack).
            RUNNING => {}
            // Not started in time: withdraw the request (unless it starts right now).
            _ if waited >= ANSWER_MS
                && SLOT
                    .state
                    .compare_exchange(REQUESTED, IDLE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok() =>
            {
                return false;
            }
            _ => {}
        }
        sleep_ms(1);
        waited += 1;
    }
}

/// Writes, after a timeout's tracebacks, the C stack of every thread but the caller's, at
/// most `max_threads` of them. The caller holds the report lock.
pub fn dump_other_threads(out: &mut Out, t: &'static Target, max_threads: usize) {
    TARGET.store(t as *const Target as *mut Target, Ordering::Release);
    let Some(borrowed) = Borrowed::take() else {
        out.str("\ncrashcatch: no free real-time signal to ask the other threads for their C stacks\n");
        return;
    };
    let me = gettid();
    let mut shown = 0usize;
    for_each_thread(&mut |tid| {
        // crashcatch's dump thread blocks every signal and runs no code of the program's.
        let dump_thread =
            super::deferred::thread_running() && tid == super::deferred::DUMPER_TID.load(Ordering::Acquire);
        if tid == me || dump_thread {
            return true;
        }
        if shown == max_threads {
            out.str("\n...\n");
            return false;
        }
        shown += 1;
        let answered = ask(borrowed.signo, tid);
        out.str("\nC stack of thread ");
        if answered {
            out.str("0x");
            out.hex(SLOT.pthread.load(Ordering::Relaxed), 16);
            out.str(" (LWP ");
            out.dec(tid as u64);
            out.str(") (most recent call first):\n");
            let count = SLOT.count.load(Ordering::Relaxed);
            // SAFETY: DONE was seen with Acquire: the writer has finished (see Slot).
            let end = unsafe { *SLOT.end.get() };
            cstack::write_walk(out, &t.mem, &mut Recorded { next: 0, count, end });
            SLOT.state.store(IDLE, Ordering::Release);
        } else {
            out.str("LWP ");
            out.dec(tid as u64);
            out.str(":\n  <no answer within ");
            out.dec(ANSWER_MS as u64);
            out.str(" ms: the thread blocks signals or is stopped>\n");
        }
        out.flush();
        true
    });
    drop(borrowed);
}

/// Calls `f` with each thread id of this process (from /proc/self/task) until it says stop.
fn for_each_thread(f: &mut dyn FnMut(i32) -> bool) {
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe {
        libc::open(c"/proc/self/task".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 4096];
    'read: loop {
        // SAFETY: getdents64 writes at most buf.len() bytes into buf.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0usize;
        // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name (NUL-terminated).
        while let Some(rec) = buf.get(at..n as usize) {
            let Some(&[lo, hi]) = rec.get(16..18) else { break };
            let reclen = u16::from_ne_bytes([lo, hi]) as usize;
            if reclen == 0 {
                break;
            }
            if let Some(tid) = rec.get(19..reclen.min(rec.len())).and_then(parse_tid) {
                if !f(tid) {
                    break 'read;
                }
            }
            at += reclen;
        }
    }
    // SAFETY: closes the fd opened above.
    unsafe { libc::close(fd) };
}

/// A directory entry's NUL-terminated decimal name as a thread id ("." and ".." are not).
fn parse_tid(name: &[u8]) -> Option<i32> {
    let digits = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0i32, |v, &b| b.is_ascii_digit().then(|| v * 10 + (b - b'0') as i32))
}

#[cfg(test)]
mod tests {
    use super::parse_tid;

    #[test]
    fn thread_directory_names() {
        assert_eq!(parse_tid(b"1234\0\0\0"), Some(1234));
        assert_eq!(parse_tid(b".\0"), None);
        assert_eq!(parse_tid(b"..\0"), None);
        assert_eq!(parse_tid(b"\0"), None);
    }
}
