//! `dump_traceback_later()`: a watchdog thread that dumps every thread's traceback when a
//! timeout expires, like faulthandler's. Dumping reads Python state without the GIL, through
//! the same fault-proof code the signal handlers use.

use crate::signal_safe::config::{self, Target};
use crate::signal_safe::out::Out;
use crate::signal_safe::pytrace;
use crate::signal_safe::{dump, handler, peers};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Watchdog {
    cancel: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

pub struct Options {
    pub timeout: Duration,
    pub repeat: bool,
    pub fd: i32,
    pub exit: bool,
    pub max_threads: usize,
    /// Also write a minidump at each timeout.
    pub minidump: bool,
    /// Also write the C stack of every other thread (each asked with a signal).
    pub c_stack: bool,
    pub target: &'static Target,
}

/// faulthandler's header: `Timeout (H:MM:SS)!` with `.ffffff` when there are microseconds.
pub fn header(timeout: Duration) -> String {
    let secs = timeout.as_secs();
    let us = timeout.subsec_micros();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if us != 0 {
        format!("Timeout ({h}:{m:02}:{s:02}.{us:06})!\n")
    } else {
        format!("Timeout ({h}:{m:02}:{s:02})!\n")
    }
}

impl Watchdog {
    pub fn start(opts: Options) -> std::io::Result<Watchdog> {
        let cancel = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&cancel);
        let text = header(opts.timeout);
        // Every signal blocked, as faulthandler's watchdog does (quiet.rs).
        let thread = crate::quiet::spawn("crashcatch-watchdog", move || run(opts, text, &flag))?;
        Ok(Watchdog { cancel, thread: Some(thread) })
    }

    /// Stops the watchdog and waits for its thread.
    pub fn cancel(mut self) {
        let (lock, cv) = &*self.cancel;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(opts: Options, header: String, cancel: &(Mutex<bool>, Condvar)) {
    let (lock, cv) = cancel;
    loop {
        let deadline = Instant::now() + opts.timeout;
        let mut cancelled = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !*cancelled {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            cancelled = cv.wait_timeout(cancelled, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        if *cancelled {
            return;
        }
        drop(cancelled);
        crate::signal_safe::memory::refresh_pid();
        // The report buffer and the dump request are shared with the signal handlers: hold
        // their lock. If a crash report holds it too long, still print (without a dump).
        let reported = handler::with_report_lock(REPORT_LOCK_WAIT_MS, || report(&opts, &header, true));
        if reported.is_none() {
            report(&opts, &header, false);
        }
        if opts.exit {
            // SAFETY: _exit ends the process immediately, as faulthandler's exit=True does.
            unsafe { libc::_exit(1) };
        }
        if !opts.repeat {
            return;
        }
    }
}

/// How long a timeout waits for a crash report in progress elsewhere.
const REPORT_LOCK_WAIT_MS: u32 = 5_000;

/// The timeout's text (and dump, when asked and `locked`, at most one per live-dump interval).
fn report(opts: &Options, header: &str, locked: bool) {
    let mut out = if locked { Out::capturing(opts.fd) } else { Out::new(opts.fd) };
    out.str(header);
    // The watchdog thread is nobody's "current thread". Holding the report lock, it may
    // read through the report page cache.
    let cached = locked.then(|| opts.target.for_report());
    pytrace::dump_all_threads(&mut out, cached.as_ref().unwrap_or(opts.target), None, opts.max_threads);
    out.flush();
    if opts.c_stack && locked {
        peers::dump_other_threads(&mut out, opts.target, opts.max_threads);
    }
    if locked && opts.minidump && config::load(&dump::HELPER).is_some() && dump::live_dump_allowed(&mut out) {
        let kind = if opts.exit { handoff::Kind::TimeoutExit } else { handoff::Kind::Timeout };
        let line = match crate::minidumps::dump_locked(kind, None) {
            Ok(line) => line,
            Err(e) => format!("crashcatch: no minidump: {e}\n"),
        };
        out.str(&line);
    }
    out.flush();
}

#[cfg(test)]
mod tests {
    use super::header;
    use std::time::Duration;

    #[test]
    fn header_matches_faulthandler_format() {
        assert_eq!(header(Duration::from_secs(5)), "Timeout (0:00:05)!\n");
        assert_eq!(header(Duration::from_secs(3725)), "Timeout (1:02:05)!\n");
        assert_eq!(header(Duration::from_micros(500_000)), "Timeout (0:00:00.500000)!\n");
    }
}
