//! Installing and removing our signal dispositions (normal context, under the GIL).

use crate::signal_safe::config::{self, FatalConfig, UserConfig, FATAL_SIGNALS};
use crate::signal_safe::handler::{self, fatal_handler, user_handler};
use std::io;
use std::sync::atomic::Ordering;

type Handler = extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void);

fn sigaction(signo: i32, handler: Handler, flags: i32) -> io::Result<libc::sigaction> {
    // SAFETY: zeroed sigaction is valid; we fill the handler, flags and an empty mask.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO | flags;
        libc::sigemptyset(&mut sa.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signo, &sa, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}

/// `enable()`: installs the fatal handlers (first call) and publishes the options.
/// `raise_after_install`: test hook (CRASHCATCH_TEST_RAISE_DURING_ENABLE=SIGNO) that raises
/// that signal right after our handler for it is installed, to prove that a crash in that
/// window already finds the previous handler to chain to.
pub fn enable_fatal(cfg: FatalConfig, raise_after_install: Option<i32>) -> io::Result<()> {
    handler::FATAL_REPORTED.store(false, Ordering::Release);
    let already = config::load(&config::FATAL).is_some();
    config::store(&config::FATAL, Some(config::publish(cfg)));
    if already {
        return Ok(());
    }
    for (i, (signo, _)) in FATAL_SIGNALS.iter().enumerate() {
        // Publish the previous disposition before ours can run: a crash in between must
        // find where to chain, not re-raise into ourselves.
        let before = current(*signo)?;
        config::store(&config::PREVIOUS_FATAL[i], Some(config::publish(before)));
        // SA_NODEFER: re-raising from the handler reaches the previous handler at once.
        // SA_ONSTACK: run on the alternate stack, so stack overflows are reported.
        let old = sigaction(*signo, fatal_handler, libc::SA_NODEFER | libc::SA_ONSTACK)?;
        if raise_after_install == Some(*signo) {
            // SAFETY: raise is always safe to call; this is the test hook described above.
            unsafe { libc::raise(*signo) };
        }
        if old.sa_sigaction != before.sa_sigaction || old.sa_flags != before.sa_flags {
            // Someone else installed a handler in between: that one is the previous.
            config::store(&config::PREVIOUS_FATAL[i], Some(config::publish(old)));
        }
    }
    Ok(())
}

/// The disposition installed now for `signo`.
fn current(signo: i32) -> io::Result<libc::sigaction> {
    // SAFETY: a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signo, std::ptr::null(), &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}

/// `disable()`: restores the previous dispositions. Returns whether we were enabled.
pub fn disable_fatal() -> bool {
    if config::load(&config::FATAL).is_none() {
        return false;
    }
    config::store(&config::FATAL, None);
    handler::restore_previous_fatal();
    for slot in &config::PREVIOUS_FATAL {
        config::store(slot, None);
    }
    true
}

pub fn is_fatal_enabled() -> bool {
    config::load(&config::FATAL).is_some()
}

/// `register()`: installs the user-signal handler for `signo`.
pub fn register(signo: i32, make: impl FnOnce(libc::sigaction) -> UserConfig, chain: bool) -> io::Result<()> {
    let slot = &config::USER[signo as usize];
    let previous = match config::load(slot) {
        Some(existing) => existing.previous,
        None => {
            let mut flags = libc::SA_RESTART | libc::SA_ONSTACK;
            if chain {
                flags |= libc::SA_NODEFER;
            }
            sigaction(signo, user_handler, flags)?
        }
    };
    config::store(slot, Some(config::publish(make(previous))));
    Ok(())
}

/// `unregister()`: restores the previous disposition. Returns whether it was registered.
pub fn unregister(signo: i32) -> bool {
    let slot = &config::USER[signo as usize];
    let Some(cfg) = config::load(slot) else {
        return false;
    };
    // SAFETY: `previous` is the sigaction captured at registration.
    unsafe { libc::sigaction(signo, &cfg.previous, std::ptr::null_mut()) };
    config::store(slot, None);
    true
}
