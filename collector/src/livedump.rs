//! The dump thread: writes the minidumps of `register()`ed signals, so that the thread the
//! signal landed on (often the one holding the GIL) does not wait for the dump helper.
//!
//! # Design (issue 14)
//! A `register(signum, minidump=True)` handler writes its text exactly as before
//! (faulthandler's semantics: synchronously, holding the report lock), then, instead of
//! running the helper itself (spawn, Python walk, ptrace stop, write: tens of ms during
//! which no Python thread could run), it passes the report lock and the signal number to
//! this thread (`signal_safe::deferred::hand_over`: atomics and an eventfd write) and
//! returns. The report lock stays held until the dump is written, so the text the dump's
//! metadata copies (the capture buffer) and the helper's request cannot be overwritten by
//! another report in between; a crash meanwhile waits for it as it waited for a handler.
//! The thread, started by the first `register(…, minidump=True)`, never holds the GIL,
//! blocks every signal (a process-directed signal never lands on it) and sleeps in
//! `read()` when idle. It fills the request like `write_minidump()` does — no signal
//! context: the signalled thread has moved on, so the dump is a snapshot, like
//! `crashcatch dump PID`, with the signal number in its metadata — runs the helper and
//! writes the "crashcatch: minidump written to …" (or "no minidump: …") line to the
//! report's file.
//! - Exit: `crashcatch`'s atexit hook ([`wait_for_pending`]) waits, at most the helper's
//!   deadline, for a dump in progress, so a script that ends or calls `sys.exit()` right
//!   after the signal still gets its whole dump. `os._exit()` runs no hook: a dump in
//!   progress is then lost (the helper finds the process gone).
//! - Children: this thread reaps the helper (no zombie). A program thread blocked in
//!   `os.wait()` at that moment could reap it first, as before (an exit signal other than
//!   SIGCHLD would hide it, but `execve` resets the exit signal to SIGCHLD).
//! - Fork: the child has no dump thread (its copy of the ids names the parent's); its
//!   handlers dump synchronously until `os.fork()`'s after-in-child hook starts a new one
//!   ([`restart_after_fork`]). A lock held by the parent's thread is stale in the child
//!   and taken over, as any report lock copied by fork.
//! - Unchanged: the handler counts the dump against `live_dump_interval` (and says so when
//!   it refuses one) before handing it over; the helper applies `max_dump_dir_size`;
//!   `unregister()` lets a dump in progress finish. A second signal that comes while a
//!   dump is written waits for the lock (at most the helper's deadline) to write its text,
//!   so back-to-back signals still hold up the thread they land on.

use crate::signal_safe::deferred::{self, DUMPER_PID, DUMPER_TID, PENDING_FD, PENDING_SIGNO, WAKE_FD};
use crate::signal_safe::dump::{self, Event};
use crate::signal_safe::{config, handler, memory, out::Out};
use handoff::Kind;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Serialises starting the thread (under the GIL already; this keeps it obvious).
static STARTING: Mutex<()> = Mutex::new(());

/// Starts the dump thread unless this process has one.
pub fn ensure() -> io::Result<()> {
    let _guard = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if deferred::thread_running() {
        return Ok(());
    }
    // SAFETY: eventfd with flags only; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    // The thread is created with every signal blocked, so none is ever handled on it.
    let spawned = crate::quiet::spawn("crashcatch-dump", move || {
        // SAFETY: gettid/getpid have no preconditions.
        let _ = started_tx.send(unsafe { (libc::syscall(libc::SYS_gettid) as i32, libc::getpid()) });
        serve(fd)
    });
    let Ok(_detached) = spawned else {
        // SAFETY: closing the eventfd made above.
        unsafe { libc::close(fd) };
        return Err(io::Error::other("cannot start the crashcatch-dump thread"));
    };
    let (tid, pid) =
        started_rx.recv().map_err(|_| io::Error::other("the crashcatch-dump thread did not start"))?;
    WAKE_FD.store(fd, Ordering::Release);
    DUMPER_PID.store(pid, Ordering::Release);
    DUMPER_TID.store(tid, Ordering::Release);
    Ok(())
}

/// The thread: sleeps until a handler hands it a dump, writes it, releases the lock.
fn serve(wake: i32) {
    loop {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a live u64 from our eventfd.
        let n = unsafe { libc::read(wake, (&mut count as *mut u64).cast(), 8) };
        if n != 8 {
            continue; // EINTR (a ptrace stop)
        }
        let signo = PENDING_SIGNO.load(Ordering::Acquire);
        if signo == 0 || !handler::holds_report_lock() {
            continue;
        }
        let fd = PENDING_FD.swap(-1, Ordering::AcqRel);
        write_dump(signo, fd);
        if fd >= 0 {
            // SAFETY: closing the duplicate the handler made for this dump (deferred.rs).
            unsafe { libc::close(fd) };
        }
        PENDING_SIGNO.store(0, Ordering::Release);
        handler::release_passed_lock();
    }
}

/// The dump of a registered signal, its result line to `fd` (the report's file).
fn write_dump(signo: i32, fd: i32) {
    memory::refresh_pid();
    let event = Event { kind: Kind::Signal, signo, info: None, ucontext: None, tstate: 0, target: None };
    dump::fill_request(&event, b"");
    let mut out = Out::new(fd);
    dump::run_helper(&mut out);
    out.flush();
}

/// Waits (at most the helper's deadline and a second) for a dump handed to the thread:
/// at exit, so the dump of a signal that came just before is not cut short.
pub fn wait_for_pending() {
    if !deferred::thread_running() {
        return;
    }
    let deadline_ms = config::load(&dump::HELPER).map_or(0, |h| h.deadline_ms);
    let until = Instant::now() + Duration::from_millis(u64::from(deadline_ms) + 1_000);
    while PENDING_SIGNO.load(Ordering::Acquire) != 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `os.fork()`'s after-in-child hook: a child of a process with a dump thread gets its own
/// (the parent's is not copied; the eventfd is shared with the parent, so it is closed).
pub fn restart_after_fork() -> io::Result<()> {
    if DUMPER_TID.load(Ordering::Acquire) == 0 || deferred::thread_running() {
        return Ok(());
    }
    let inherited = WAKE_FD.swap(-1, Ordering::AcqRel);
    if inherited >= 0 {
        // SAFETY: closing our copy of the parent's eventfd, which nothing else uses.
        unsafe { libc::close(inherited) };
    }
    DUMPER_TID.store(0, Ordering::Release);
    let pending = PENDING_FD.swap(-1, Ordering::AcqRel);
    if pending >= 0 {
        // SAFETY: our copy of the descriptor a dump in progress in the parent writes to.
        unsafe { libc::close(pending) };
    }
    PENDING_SIGNO.store(0, Ordering::Release);
    ensure()
}
