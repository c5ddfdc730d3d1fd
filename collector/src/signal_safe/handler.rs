//! The signal handlers themselves and the report they write.

use super::config::{self, Target, FATAL_SIGNALS};
use super::cstack;
use super::deferred;
use super::dump::{self, Event};
use super::extmods;
use super::memory;
use super::note;
use super::out::{errno, set_errno, Out};
use super::pyfatal;
use super::pytrace;
use super::stack;
use super::unwind::Regs;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};
use handoff::Kind;

/// Thread id of the thread writing a report (0: none). Serialises reports so concurrent
/// crashes never interleave, and detects a crash inside our own handler.
static REPORTER: AtomicI32 = AtomicI32::new(0);
/// A fatal report was completed; later crashers go straight to the previous handler.
pub static FATAL_REPORTED: AtomicBool = AtomicBool::new(false);
/// The signal being reported, for the fallback when the handler itself crashes.
static ORIGINAL_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Set once the handler has crashed inside itself.
static HANDLER_CRASHED: AtomicBool = AtomicBool::new(false);
/// The writer of the report in progress (on the report stack), so that a fault inside the
/// report can still flush what it had buffered (usually the header and the tracebacks).
static ACTIVE_OUT: AtomicPtr<Out> = AtomicPtr::new(core::ptr::null_mut());

/// How long another thread waits for a report in progress before giving up on its own.
const FATAL_WAIT_MS: u32 = 30_000;
const USER_WAIT_MS: u32 = 1_000;

pub(super) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

pub(super) fn sleep_ms(ms: u32) {
    let ts = libc::timespec { tv_sec: 0, tv_nsec: ms as i64 * 1_000_000 };
    // SAFETY: nanosleep reads `ts`; the remainder pointer may be null.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

enum Lock {
    Acquired,
    /// This thread already holds it: we are inside our own handler.
    Reentered,
    TimedOut,
}

/// Whether `tid` is a live thread of this process. A lock owner that is not was copied by
/// `fork()` from the parent (or died holding it): its lock is stale.
fn is_our_thread(tid: i32) -> bool {
    // SAFETY: signal 0 only checks that the thread exists in our thread group.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) };
    r == 0 || errno() != libc::ESRCH
}

fn acquire(me: i32, wait_ms: u32) -> Lock {
    let mut waited = 0;
    loop {
        match REPORTER.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Lock::Acquired,
            Err(owner) if owner == me => return Lock::Reentered,
            Err(owner) if !is_our_thread(owner) => {
                let _ = REPORTER.compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Acquire);
            }
            Err(_) if waited >= wait_ms => return Lock::TimedOut,
            Err(_) => {
                sleep_ms(1);
                waited += 1;
            }
        }
    }
}

fn release() {
    REPORTER.store(0, Ordering::Release);
}

/// Passes the report lock this thread holds to thread `to` (the dump thread), which
/// releases it with [`release_passed_lock`]. False if this thread does not hold it.
pub(super) fn pass_report_lock(to: i32) -> bool {
    REPORTER.compare_exchange(gettid(), to, Ordering::AcqRel, Ordering::Acquire).is_ok()
}

/// Undoes [`pass_report_lock`] (the receiver was never told).
pub(super) fn take_back_report_lock(from: i32) {
    let _ = REPORTER.compare_exchange(from, gettid(), Ordering::AcqRel, Ordering::Acquire);
}

/// Whether the calling thread was passed the report lock.
pub fn holds_report_lock() -> bool {
    REPORTER.load(Ordering::Acquire) == gettid()
}

/// Releases the report lock passed to the calling thread.
pub fn release_passed_lock() {
    let _ = REPORTER.compare_exchange(gettid(), 0, Ordering::AcqRel, Ordering::Acquire);
}

/// Runs `f` holding the report lock, as the handlers do, so a dump taken from an ordinary
/// thread never shares the request record and the helper's clone stack with a handler's.
/// None when the lock could not be had within `wait_ms`.
pub fn with_report_lock<R>(wait_ms: u32, f: impl FnOnce() -> R) -> Option<R> {
    match acquire(gettid(), wait_ms) {
        Lock::Acquired => {
            let r = f();
            release();
            Some(r)
        }
        Lock::Reentered | Lock::TimedOut => None,
    }
}

fn raise(signo: i32) {
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(signo) };
}

/// Puts back the dispositions that were there before `enable()`.
pub fn restore_previous_fatal() {
    for (signo, _) in FATAL_SIGNALS {
        restore_previous(signo);
    }
}

/// Puts back the disposition `signo` had before `enable()` (faulthandler, too, restores
/// only the signal that fired; the others stay reported).
fn restore_previous(signo: i32) {
    if let Some(prev) = previous_fatal(signo) {
        // SAFETY: `prev` is a valid sigaction captured before ours was installed.
        unsafe { libc::sigaction(signo, prev, core::ptr::null_mut()) };
    }
}

/// The disposition the fatal signal `signo` had before `enable()`, if it was captured.
fn previous_fatal(signo: i32) -> Option<&'static libc::sigaction> {
    let i = FATAL_SIGNALS.iter().position(|(s, _)| *s == signo)?;
    config::load(&config::PREVIOUS_FATAL[i])
}

/// Hands the signal to the previous disposition with what the kernel gave us. A fault the
/// kernel raised for an instruction (si_code > 0) happens again when we return, so the next
/// handler (or the default action, and its core) sees the original siginfo and registers;
/// anything else is queued again to this thread with its original siginfo (as Breakpad
/// does, but keeping the sender's si_code and pid).
fn chain(signo: i32, info: *mut libc::siginfo_t) {
    // SAFETY: the kernel passes a valid siginfo_t to SA_SIGINFO handlers (or null).
    let Some(si) = (unsafe { info.as_ref() }) else { return raise(signo) };
    let synchronous = matches!(signo, libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE);
    if synchronous && si.si_code > 0 {
        return;
    }
    // SAFETY: queues a copy of the siginfo we were given to this very thread; the kernel
    // accepts any si_code for a signal a process sends itself.
    let r = unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, libc::getpid(), gettid(), signo, info) };
    if r != 0 {
        raise(signo);
    }
}

fn set_default(signo: i32) {
    // SAFETY: a zeroed sigaction with SIG_DFL is valid.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signo, &sa, core::ptr::null_mut());
    }
}

/// Handler for SIGSEGV, SIGFPE, SIGABRT, SIGBUS and SIGILL.
pub extern "C" fn fatal_handler(signo: i32, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    let saved_errno = errno();
    memory::refresh_pid();
    let me = gettid();
    match acquire(me, FATAL_WAIT_MS) {
        Lock::Acquired => {}
        Lock::Reentered => return handler_crashed(signo),
        Lock::TimedOut => {
            restore_previous(signo);
            set_errno(saved_errno);
            return chain(signo, info);
        }
    }
    let reported = FATAL_REPORTED.load(Ordering::Acquire);
    if let (Some(cfg), false) = (config::load(&config::FATAL), reported) {
        ORIGINAL_SIGNAL.store(signo, Ordering::Release);
        // The alternate stack we were entered on may be someone else's and small.
        stack::run(&mut || {
            // SAFETY: the kernel passes valid siginfo_t and ucontext_t to SA_SIGINFO handlers.
            let (info, uc) = unsafe { (info.as_ref(), (ucontext as *const libc::ucontext_t).as_ref()) };
            let mut out = Out::capturing(cfg.fd);
            ACTIVE_OUT.store(&mut out as *mut Out, Ordering::Release);
            let target = cfg.target.for_report();
            let tstate = pytrace::own_thread_state(&target);
            let event = Event { kind: Kind::Fatal, signo, info, ucontext: uc, target: Some(&target), tstate };
            let helper = start_minidump(event);
            write_fatal_report(&mut out, cfg, &target, signo, uc.map(Regs::from_ucontext));
            note::write(&mut out);
            // A crash about to die of its signal does not wait for the helper's exit.
            let answered = if dies_of(signo) { dump::Answered::Leave } else { dump::Answered::Reap };
            finish_minidump(&mut out, helper, answered);
            if cfg.report_stack_use {
                out.str("crashcatch: report stack used ");
                out.dec(stack::high_water() as u64);
                out.str(" bytes\n");
            }
            out.flush();
            ACTIVE_OUT.store(core::ptr::null_mut(), Ordering::Release);
        });
        FATAL_REPORTED.store(true, Ordering::Release);
    }
    // Chain: the previous handler (faulthandler, a debugger's, or the default action that
    // kills us with this signal) gets the signal as the kernel delivered it.
    restore_previous(signo);
    release();
    set_errno(saved_errno);
    chain(signo, info);
}

fn write_fatal_report(out: &mut Out, cfg: &config::FatalConfig, t: &Target, signo: i32, regs: Option<Regs>) {
    if let (libc::SIGABRT, Some(regs)) = (signo, regs) {
        if pyfatal::reported_by_cpython(t, regs) {
            // CPython has printed its report (faulthandler, which it disabled, would print
            // nothing more): add only the C stack.
            if cfg.c_stack {
                out.byte(b'\n');
                cstack::dump(out, &t.mem, &t.facts, regs);
            }
            out.flush();
            return;
        }
    }
    out.str("Fatal Python error: ");
    match FATAL_SIGNALS.iter().find(|(s, _)| *s == signo) {
        // faulthandler 3.13+ spells it "Floating-point exception"; the tests compare every
        // interpreter's faulthandler text with ours.
        Some((libc::SIGFPE, _)) if t.layout.minor >= 13 => out.str("Floating-point exception"),
        Some((_, name)) => out.str(name),
        None => {
            out.str("from unexpected signum: ");
            out.dec(signo as u64);
        }
    }
    out.str("\n\n");
    let view = pytrace::view(t);
    write_view_tracebacks(out, &view, cfg.all_threads, cfg.max_threads);
    if cfg.fault_in_handler {
        // SAFETY: deliberately faults (test hook) with the tracebacks still buffered; the
        // nested signal takes the fallback path, which must flush them.
        unsafe { core::ptr::write_volatile(core::ptr::null_mut::<u8>(), 1) };
    }
    // What is written so far is safe: module lists and C stacks read module memory and
    // files, the riskiest part of a report.
    out.flush();
    // faulthandler 3.14+ puts its C stack before the extension modules; keep its order.
    let c_stack_first = t.layout.minor >= 14;
    if !c_stack_first {
        extmods::dump_extension_modules(out, t);
        out.flush();
    }
    if let (true, Some(regs)) = (cfg.c_stack, regs) {
        out.byte(b'\n');
        cstack::dump(out, &t.mem, &t.facts, regs);
        out.flush();
    }
    if c_stack_first {
        extmods::dump_extension_modules(out, t);
    }
    // A crash in a subinterpreter: faulthandler shows only its frames; add the ones that
    // called into it.
    if let Some(outer) = view.outer {
        out.byte(b'\n');
        out.str(pytrace::OUTER_HEADER);
        pytrace::dump_thread(out, t, outer, false);
    }
    out.flush();
}

/// Starts the dump helper (when minidumps are on) before the text report is written: it
/// finds the threads and walks the Python stacks meanwhile, on another CPU if there is one.
fn start_minidump(event: Event) -> dump::Helper {
    if config::load(&dump::HELPER).is_none() {
        return dump::Helper::Off;
    }
    dump::fill_request(&event, b"");
    dump::start_helper(&mut || dump::fill_resume(&event))
}

/// Lets the helper write the minidump, now that the report is complete, and writes the
/// report's last line naming it.
fn finish_minidump(out: &mut Out, helper: dump::Helper, answered: dump::Answered) {
    if matches!(helper, dump::Helper::Off) {
        return;
    }
    out.flush();
    dump::finish_helper(helper, out, answered);
    out.flush();
}

/// Whether the disposition `signo` had before `enable()` is the default action, which ends
/// the process when the handler chains to it (every fatal signal's default terminates). A
/// handler of the program's, or faulthandler's, may go on or take long: the helper is
/// reaped as usual then.
fn dies_of(signo: i32) -> bool {
    previous_fatal(signo).is_some_and(|prev| prev.sa_sigaction == libc::SIG_DFL)
}

/// faulthandler's `faulthandler_dump_traceback()`.
pub fn write_tracebacks(out: &mut Out, t: &Target, all_threads: bool, max_threads: usize) {
    write_view_tracebacks(out, &pytrace::view(t), all_threads, max_threads);
}

fn write_view_tracebacks(out: &mut Out, view: &pytrace::View, all_threads: bool, max_threads: usize) {
    if all_threads {
        pytrace::dump_all_threads(out, &view.target, view.current, max_threads);
    } else if let Some(ts) = view.current {
        pytrace::dump_thread(out, &view.target, ts, true);
    }
}

/// The report itself crashed: say so if we still can, then die of the original signal
/// with the default action, so the process never hangs and its exit status tells the truth.
fn handler_crashed(signo: i32) {
    let original = match ORIGINAL_SIGNAL.load(Ordering::Acquire) {
        0 => signo,
        s => s,
    };
    for (s, _) in FATAL_SIGNALS {
        set_default(s);
    }
    if !HANDLER_CRASHED.swap(true, Ordering::AcqRel) {
        // SAFETY: a non-null ACTIVE_OUT is the writer of the report this very thread was
        // writing when it faulted; its frame is suspended below us and stays valid.
        if let Some(active) = unsafe { ACTIVE_OUT.swap(core::ptr::null_mut(), Ordering::AcqRel).as_mut() } {
            active.flush();
        }
        if let Some(cfg) = config::load(&config::FATAL) {
            let mut out = Out::new(cfg.fd);
            out.str("\ncrashcatch: the crash handler itself received signal ");
            out.dec(signo as u64);
            out.str("; the report above is incomplete\n");
        }
    }
    raise(original);
    // A blocked or ignored original signal: fall back to the one that just arrived.
    raise(signo);
}

/// Handler for signals passed to `register()`.
pub extern "C" fn user_handler(signo: i32, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    let saved_errno = errno();
    memory::refresh_pid();
    let Some(cfg) = config::USER.get(signo as usize).and_then(config::load) else {
        return;
    };
    // A dump thread may hold the lock for a dump of an earlier signal: wait for it (at most
    // the helper's deadline) rather than drop this signal's text.
    let dump_wait = match (deferred::thread_running(), config::load(&dump::HELPER)) {
        (true, Some(helper)) => helper.deadline_ms,
        _ => 0,
    };
    if let Lock::Acquired = acquire(gettid(), USER_WAIT_MS.saturating_add(dump_wait)) {
        let mut handed_over = false;
        stack::run(&mut || {
            let mut out = Out::capturing(cfg.fd);
            let target = cfg.target.for_report();
            write_tracebacks(&mut out, &target, cfg.all_threads, cfg.max_threads);
            out.flush();
            if !cfg.minidump || !dump::live_dump_allowed(&mut out) {
                return;
            }
            // The dump thread writes it, without this thread (which may hold the GIL)
            // waiting: see `crate::livedump`. Without one (a forked child), as before.
            handed_over = config::load(&dump::HELPER).is_some() && deferred::hand_over(signo, cfg.fd);
            if !handed_over {
                // SAFETY: the kernel passes valid siginfo_t and ucontext_t to SA_SIGINFO handlers.
                let (info, uc) = unsafe { (info.as_ref(), (ucontext as *const libc::ucontext_t).as_ref()) };
                let tstate = pytrace::own_thread_state(&target);
                let event =
                    Event { kind: Kind::Signal, signo, info, ucontext: uc, target: Some(&target), tstate };
                let helper = start_minidump(event);
                finish_minidump(&mut out, helper, dump::Answered::Reap);
            }
        });
        if !handed_over {
            release();
        }
    }
    if cfg.chain {
        // Run the previous handler, then put ours back (as faulthandler does).
        let mut ours: libc::sigaction = zeroed_sigaction();
        // SAFETY: valid sigaction structs; signo is a registered signal number.
        unsafe { libc::sigaction(signo, &cfg.previous, &mut ours) };
        set_errno(saved_errno);
        raise(signo);
        // SAFETY: as above.
        unsafe { libc::sigaction(signo, &ours, core::ptr::null_mut()) };
    }
    set_errno(saved_errno);
}

pub(super) fn zeroed_sigaction() -> libc::sigaction {
    // SAFETY: sigaction is plain data; all-zero is a valid (SIG_DFL) value.
    unsafe { core::mem::zeroed() }
}
