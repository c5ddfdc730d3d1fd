//! Minidumps from a signal handler (or any thread): fill the dump-time half of the
//! [`handoff::Request`], start the `crashcatch-dump` helper with `clone(CLONE_VM |
//! CLONE_VFORK)` + `execve` on a preallocated stack (no fork handlers, no malloc: measured
//! to work after heap corruption, unlike `fork`), wait for its one-line answer with a
//! deadline, and kill it if it overruns.

use super::config;
use super::memory::SelfMemory;
use super::out::Out;
use super::resume;
use super::unwind::Regs;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use handoff::{Kind, Request};
use pylayout::Memory;

/// How the helper is started; published at enable time.
pub struct HelperConfig {
    /// NUL-terminated helper path and `[path, request address, deadline in ms, NULL]`.
    pub path: *const libc::c_char,
    pub argv: [*const libc::c_char; 4],
    /// How long to wait for the helper before killing it.
    pub deadline_ms: u32,
    /// Yama's ptrace_scope is 1 (only descendants may be traced): the helper, our child,
    /// must be named with `PR_SET_PTRACER` before it can read us.
    pub yama_restricted: bool,
}

// SAFETY: the pointers refer to leaked, immutable C strings.
unsafe impl Sync for HelperConfig {}
// SAFETY: as above.
unsafe impl Send for HelperConfig {}

/// Null when minidumps are off.
pub static HELPER: AtomicPtr<HelperConfig> = AtomicPtr::new(core::ptr::null_mut());

/// Live dumps (registered signals, timeouts) are written at most once per this many
/// milliseconds (0: no limit), so `kill -USR1` in a loop or a repeating watchdog cannot
/// fill the disk. `write_minidump()`, an explicit request, is not limited.
pub static LIVE_INTERVAL_MS: AtomicU64 = AtomicU64::new(60_000);
/// When the last live dump was started (CLOCK_MONOTONIC ms; 0: never).
static LAST_LIVE_MS: AtomicU64 = AtomicU64::new(0);

/// Whether a live dump may be written now; if not, says why on `out`. Counts this one.
pub fn live_dump_allowed(out: &mut Out) -> bool {
    let interval = LIVE_INTERVAL_MS.load(Ordering::Relaxed);
    let now = now_ms();
    let last = LAST_LIVE_MS.load(Ordering::Relaxed);
    if interval > 0 && last != 0 && now.saturating_sub(last) < interval {
        out.str("crashcatch: no minidump: at most one live dump every ");
        if interval.is_multiple_of(1000) {
            out.dec(interval / 1000);
            out.str(" s");
        } else {
            out.dec(interval);
            out.str(" ms");
        }
        out.str(" (live_dump_interval)\n");
        return false;
    }
    LAST_LIVE_MS.store(now, Ordering::Relaxed);
    true
}

struct Cell<T>(UnsafeCell<T>);
// SAFETY: written by one thread at a time: at enable time under the GIL, and at dump
// time by the thread holding the report lock (handlers, and every other dump).
unsafe impl<T> Sync for Cell<T> {}

static REQUEST: Cell<Request> = Cell(UnsafeCell::new(Request::zeroed()));

/// The text report of the current dump, for the metadata stream.
const CAPTURE_SIZE: usize = 64 * 1024;
static CAPTURE: Cell<[u8; CAPTURE_SIZE]> = Cell(UnsafeCell::new([0; CAPTURE_SIZE]));
static CAPTURE_LEN: AtomicUsize = AtomicUsize::new(0);

pub fn request_ptr() -> *mut Request {
    REQUEST.0.get()
}

pub fn capture_reset() {
    CAPTURE_LEN.store(0, Ordering::Relaxed);
}

pub fn capture_append(bytes: &[u8]) {
    let len = CAPTURE_LEN.load(Ordering::Relaxed);
    let n = bytes.len().min(CAPTURE_SIZE - len);
    // SAFETY: only the thread writing the report appends, and it owns the report lock.
    unsafe { (&mut *CAPTURE.0.get())[len..len + n].copy_from_slice(&bytes[..n]) };
    CAPTURE_LEN.store(len + n, Ordering::Relaxed);
}

pub fn capture_addr() -> u64 {
    CAPTURE.0.get() as u64
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime is async-signal-safe and writes `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The signal that caused a dump, with its context when it came through a handler.
pub struct Event<'a> {
    pub kind: Kind,
    pub signo: i32,
    pub info: Option<&'a libc::siginfo_t>,
    pub ucontext: Option<&'a libc::ucontext_t>,
    /// The requesting thread's own thread state (see `pytrace::own_thread_state`), or 0.
    pub tstate: u64,
    /// The process, to unwind the context's stack with (see [`resume`]).
    pub target: Option<&'a config::Target>,
}

/// Records how much of the report is written, for a helper started before it was.
fn note_report_len() {
    // SAFETY: see `Cell`: the caller holds the report lock.
    let req = unsafe { &mut *REQUEST.0.get() };
    req.report_len = CAPTURE_LEN.load(Ordering::Relaxed) as u64;
}

/// Fills the dump-time fields of the request. `exact_path`: the file to create (empty:
/// the helper names one in the dump directory).
pub fn fill_request(event: &Event, exact_path: &[u8]) {
    let mem = SelfMemory::UNCACHED;
    // SAFETY: see `Cell`: the caller holds the report lock.
    let req = unsafe { &mut *REQUEST.0.get() };
    req.kind = event.kind as u32;
    req.signo = event.signo;
    // SAFETY: gettid has no preconditions.
    req.tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    // SAFETY: pthread_self only reads the thread pointer.
    req.pthread = unsafe { libc::pthread_self() } as u64;
    req.tstate = event.tstate;
    req.time_ns = now_ns();
    req.report_len = CAPTURE_LEN.load(Ordering::Relaxed) as u64;
    handoff::set_field(&mut req.dump_path, exact_path);
    req.has_context = 0;
    req.si_code = 0;
    req.fault_addr = 0;
    if let (Some(info), Some(uc)) = (event.info, event.ucontext) {
        req.si_code = info.si_code;
        // SAFETY: si_addr reads the union member valid for fault signals; for others it is
        // a harmless integer.
        req.fault_addr = unsafe { info.si_addr() } as u64;
        copy_raw(info, &mut req.siginfo);
        copy_raw(uc, &mut req.ucontext);
        let fp = uc.uc_mcontext.fpregs as u64;
        if fp == 0 || !mem.read(fp, &mut req.fpstate) {
            req.fpstate.iter_mut().for_each(|b| *b = 0);
        }
        req.has_context = 1;
    }
    (req.resume_rip, req.resume_rsp, req.resume_rbp, req.resume_depth) = (0, 0, 0, 0);
}

/// Fills where an unwind of the dump can go on if the helper caps the crashing stack (an
/// overflow). It reads /proc/self/maps and may walk the whole stack (milliseconds with
/// thousands of mappings): the crash path runs it while the helper starts ([`start_helper`]).
pub fn fill_resume(event: &Event) {
    let found = match (event.ucontext, event.target) {
        (Some(uc), Some(t)) => resume::find(&t.mem, &t.facts, Regs::from_ucontext(uc)),
        _ => None,
    };
    let r = found.unwrap_or_default();
    // SAFETY: see `Cell`: the caller holds the report lock.
    let req = unsafe { &mut *REQUEST.0.get() };
    (req.resume_rip, req.resume_rsp, req.resume_rbp, req.resume_depth) = (r.rip, r.rsp, r.rbp, r.depth);
}

fn copy_raw<T>(value: &T, out: &mut [u8]) {
    let n = core::mem::size_of::<T>().min(out.len());
    // SAFETY: reading n ≤ size_of::<T>() bytes of a live value into a buffer of ≥ n bytes.
    unsafe { core::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), out.as_mut_ptr(), n) };
}

extern "C" {
    static environ: *const *const libc::c_char;
}

/// Stack for the cloned child, which only calls dup2, sigprocmask, execve and _exit.
const CHILD_STACK: usize = 64 * 1024;
#[repr(align(16))]
struct ChildStack(#[allow(dead_code)] [u8; CHILD_STACK]); // used only as raw memory
static CHILD_STACK_MEM: Cell<ChildStack> = Cell(UnsafeCell::new(ChildStack([0; CHILD_STACK])));

/// What the child needs, on the parent's stack (shared: CLONE_VM).
struct ChildArgs {
    helper: &'static HelperConfig,
    /// The helper's end of the go-ahead socket (becomes its stdin).
    go_fd: i32,
    /// Write end of the answer pipe (becomes the helper's stdout).
    result_fd: i32,
    old_mask: libc::sigset_t,
}

/// Highest descriptor closed one by one where `close_range` is missing (Linux < 5.9).
const CLOSE_FALLBACK_MAX: i32 = 65_536;

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildArgs the parent passed and keeps alive while suspended
    // (CLONE_VFORK); only async-signal-safe calls follow, on the child's own fd table.
    unsafe {
        let args = &*(arg as *const ChildArgs);
        // The pipes may be fds 0/1 themselves (a program that closed its stdio): move both
        // above 2 first, then into place (dup2 clears close-on-exec), so neither is lost.
        let go = libc::fcntl(args.go_fd, libc::F_DUPFD_CLOEXEC, 3);
        let result = libc::fcntl(args.result_fd, libc::F_DUPFD_CLOEXEC, 3);
        if go < 0 || result < 0 || libc::dup2(go, 0) < 0 || libc::dup2(result, 1) < 0 {
            libc::_exit(126);
        }
        // Nothing else of the program's reaches the helper: no listening socket kept open,
        // no lock file held while it runs.
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..CLOSE_FALLBACK_MAX {
                libc::close(fd);
            }
        }
        libc::sigprocmask(libc::SIG_SETMASK, &args.old_mask, core::ptr::null_mut());
        libc::execve(args.helper.path, args.helper.argv.as_ptr(), environ);
        libc::_exit(127)
    }
}

/// Starts the helper; returns its pid (or -1).
fn spawn(helper: &'static HelperConfig, go_fd: i32, result_fd: i32) -> i32 {
    // SAFETY: sigset_t is plain data; the calls fill it.
    let mut all: libc::sigset_t = unsafe { core::mem::zeroed() };
    let mut args = ChildArgs { helper, go_fd, result_fd, old_mask: all };
    // SAFETY: block every signal while the child shares our memory (as posix_spawn does),
    // clone onto the preallocated stack, then restore the mask. The parent is suspended
    // until the child has exec'ed or exited, so the stack and `args` stay valid for it.
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, &mut args.old_mask);
        let top = (CHILD_STACK_MEM.0.get() as *mut u8).add(CHILD_STACK);
        let pid = libc::clone(
            child_main,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut args as *mut ChildArgs).cast(),
        );
        libc::sigprocmask(libc::SIG_SETMASK, &args.old_mask, core::ptr::null_mut());
        pid
    }
}

/// A dump helper started ahead of its go-ahead ([`start_helper`]), or why none was.
pub enum Helper {
    Started {
        pid: i32,
        /// Our end of its answer pipe.
        answer: i32,
        /// Our end of its go-ahead socket.
        go: i32,
    },
    /// Minidumps are off.
    Off,
    /// The process is not dumpable: see [`finish_helper`].
    NotDumpable,
    NoPipe,
}

/// Runs the helper and writes its answer (or why there is none) to `out`. Returns false
/// if no dump was written.
pub fn run_helper(out: &mut Out) -> bool {
    let helper = start_helper(&mut || {});
    finish_helper(helper, out, Answered::Reap)
}

/// What [`finish_helper`] does once the helper has written its answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Waits for it to exit and reaps it: a process that goes on leaves no zombie (and no
    /// child for its own `os.waitpid(-1)`).
    Reap,
    /// Goes on at once: a crash about to die of its signal does not wait for the helper to
    /// free its memory and exit (issue 14: up to 1.5 ms at 1000 threads). The helper, by
    /// then only exiting, is reaped by whoever inherits it when the process is gone.
    Leave,
}

/// Starts the helper for the filled request ([`fill_request`]). It finds the threads and
/// walks the Python stacks while the caller goes on (a crash writes its text report
/// meanwhile: the two overlap), then waits for [`finish_helper`]'s go-ahead to read the
/// report and write the dump. Writes nothing to the report: a failure is told by
/// `finish_helper`, in the report's order. `meanwhile` runs while the helper starts (its
/// exec and start-up), before it may read the request: it may still fill it.
pub fn start_helper(meanwhile: &mut dyn FnMut()) -> Helper {
    let Some(helper) = config::load(&HELPER) else { return Helper::Off };
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } == 0 {
        return Helper::NotDumpable;
    }
    let (mut fds, mut go) = ([0i32; 2], [0i32; 2]);
    // SAFETY: pipe2 writes two fds into each array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Helper::NoPipe;
    }
    // The go-ahead goes over a socket, sent with MSG_NOSIGNAL: a helper that ended early
    // (or could not start) must not kill the crashing process with SIGPIPE in a program
    // that restored SIGPIPE's default action; a pipe would.
    // SAFETY: socketpair writes two fds into the array.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, go.as_mut_ptr()) }
        != 0
    {
        // SAFETY: closing the pipe made above.
        unsafe { libc::close(fds[0]) };
        // SAFETY: as above.
        unsafe { libc::close(fds[1]) };
        return Helper::NoPipe;
    }
    let pid = spawn(helper, go[0], fds[1]);
    meanwhile();
    if pid > 0 && helper.yama_restricted {
        // Only this helper may trace us, and only while it runs (Yama drops the exception
        // when the helper exits). Yama cannot tell which exception the program had set:
        // this one replaces it (docs/minidump.md).
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PTRACER, pid as libc::c_ulong, 0, 0, 0) };
    }
    // The helper waits for this byte before it reads us, so the ptracer is set in time.
    send_byte(go[1], b'r');
    // SAFETY: closing our copies of the child's ends.
    unsafe {
        libc::close(go[0]);
        libc::close(fds[1]);
    }
    Helper::Started { pid, answer: fds[0], go: go[1] }
}

/// Sends one byte to the helper; never raises SIGPIPE (the helper may be gone).
fn send_byte(socket: i32, byte: u8) {
    // SAFETY: sending one byte from a local to our own socket.
    while unsafe { libc::send(socket, (&byte as *const u8).cast(), 1, libc::MSG_NOSIGNAL) } < 0
        && super::out::errno() == libc::EINTR
    {}
}

/// Tells a started helper to go on (the report is complete) and waits for its answer at
/// most the helper deadline, killing it if it overruns; writes the answer (or why there
/// is none) to `out`. Returns false if no dump was written.
pub fn finish_helper(helper: Helper, out: &mut Out, answered: Answered) -> bool {
    let (pid, answer, go) = match helper {
        Helper::Started { pid, answer, go } => (pid, answer, go),
        Helper::Off => return false,
        Helper::NotDumpable => {
            // Not dumpable: after a set-uid or capability change, or asked for with
            // prctl(PR_SET_DUMPABLE, 0). Such a process holds what its user may not read,
            // so crashcatch does not override that (Breakpad does, for the time of the dump).
            out.str("crashcatch: no minidump: the process is not dumpable (prctl PR_SET_DUMPABLE is 0, ");
            out.str("e.g. after a set-uid or capability change); crashcatch leaves it so\n");
            return false;
        }
        Helper::NoPipe => {
            out.str("crashcatch: no minidump: cannot create a pipe to the dump helper\n");
            return false;
        }
    };
    let Some(helper) = config::load(&HELPER) else { return false };
    // The report the helper reads is complete now.
    note_report_len();
    send_byte(go, b'g');
    // SAFETY: closing our end of the go-ahead socket.
    unsafe { libc::close(go) };
    let mut line = [0u8; 4096];
    let mut len = 0usize;
    let mut timed_out = false;
    let mut left_running = false;
    let mut status = 0;
    if pid > 0 {
        let deadline = now_ms() + helper.deadline_ms as u64;
        loop {
            let left = deadline.saturating_sub(now_ms());
            if left == 0 {
                timed_out = true;
                break;
            }
            let mut pfd = libc::pollfd { fd: answer, events: libc::POLLIN, revents: 0 };
            // SAFETY: polling one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, left.min(i32::MAX as u64) as i32) };
            if r < 0 {
                continue; // EINTR (ptrace stops and resumes us)
            }
            if r == 0 {
                continue; // deadline re-checked above
            }
            // SAFETY: reading into the unused tail of `line`.
            let n = unsafe { libc::read(answer, line[len..].as_mut_ptr().cast(), line.len() - len) };
            if n < 0 && super::out::errno() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break; // EOF: the helper is done
            }
            len += n as usize;
            if len == line.len() {
                break;
            }
            // The answer is one line, written once the dump is complete.
            if answered == Answered::Leave && line[..len].ends_with(b"\n") {
                left_running = true;
                break;
            }
        }
        if timed_out {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if !left_running {
            // SAFETY: reaping our own child.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && super::out::errno() == libc::EINTR {}
        }
    }
    // SAFETY: closing our read end.
    unsafe { libc::close(answer) };
    if timed_out {
        out.str("crashcatch: no minidump: the dump helper did not finish within ");
        out.dec(helper.deadline_ms as u64);
        out.str(" ms and was killed\n");
        return false;
    }
    if pid < 0 || len == 0 {
        if pid > 0 && libc::WIFSIGNALED(status) {
            out.str("crashcatch: no minidump: the dump helper died of signal ");
            out.dec(libc::WTERMSIG(status) as u64);
        } else if pid > 0 && libc::WIFEXITED(status) && !matches!(libc::WEXITSTATUS(status), 126 | 127) {
            out.str("crashcatch: no minidump: the dump helper failed with exit status ");
            out.dec(libc::WEXITSTATUS(status) as u64);
        } else {
            out.str("crashcatch: no minidump: the dump helper could not be started (");
            // SAFETY: reading a NUL-terminated string we own.
            let path = unsafe { core::ffi::CStr::from_ptr(helper.path) };
            out.bytes(path.to_bytes());
            out.byte(b')');
        }
        out.byte(b'\n');
        return false;
    }
    out.bytes(&line[..len]);
    line[..len].starts_with(b"crashcatch: minidump written")
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}
