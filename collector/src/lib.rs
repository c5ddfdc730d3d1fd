//! `crashcatch._native`: the functions behind the `crashcatch` Python package.
//! Argument checking and file handling that mirror faulthandler live in the Python layer
//! (`python/crashcatch/__init__.py`); this layer receives plain file descriptors.

mod altstack;
mod prepare;
mod signal_safe;
mod signals;
mod watchdog;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use signal_safe::config::{FatalConfig, UserConfig, FATAL_SIGNALS, NSIG};
use signal_safe::out::Out;
use signal_safe::{cstack, handler, unwind::Regs};
use std::sync::Mutex;
use std::time::Duration;

static WATCHDOG: Mutex<Option<watchdog::Watchdog>> = Mutex::new(None);

fn os_error(e: std::io::Error) -> PyErr {
    PyOSError::new_err(e.to_string())
}

/// Installs the fatal-signal handlers writing to `fd`.
#[pyfunction]
#[pyo3(signature = (fd, all_threads, c_stack, max_threads))]
fn enable(
    py: Python<'_>,
    fd: i32,
    all_threads: bool,
    c_stack: bool,
    max_threads: usize,
) -> PyResult<()> {
    let target = prepare::target(py)?;
    altstack::ensure().map_err(os_error)?;
    signals::enable_fatal(FatalConfig {
        fd,
        all_threads,
        c_stack,
        max_threads,
        target,
    })
    .map_err(os_error)
}

#[pyfunction]
fn disable() -> bool {
    signals::disable_fatal()
}

#[pyfunction]
fn is_enabled() -> bool {
    signals::is_fatal_enabled()
}

/// Writes the Python traceback(s) now, as the handlers would.
#[pyfunction]
#[pyo3(signature = (fd, all_threads, max_threads))]
fn dump_traceback(py: Python<'_>, fd: i32, all_threads: bool, max_threads: usize) -> PyResult<()> {
    let target = prepare::target(py)?;
    let mut out = Out::new(fd);
    handler::write_tracebacks(&mut out, target, all_threads, max_threads);
    out.flush();
    Ok(())
}

/// Writes the calling thread's C stack now.
#[pyfunction]
fn dump_c_stack(py: Python<'_>, fd: i32) -> PyResult<()> {
    let target = prepare::target(py)?;
    let mut out = Out::new(fd);
    cstack::dump(&mut out, &target.mem, &target.facts, Regs::here());
    out.flush();
    Ok(())
}

#[pyfunction]
#[pyo3(signature = (timeout_us, repeat, fd, exit, max_threads))]
fn dump_traceback_later(
    py: Python<'_>,
    timeout_us: u64,
    repeat: bool,
    fd: i32,
    exit: bool,
    max_threads: usize,
) -> PyResult<()> {
    let target = prepare::target(py)?;
    cancel_dump_traceback_later(py);
    let opts = watchdog::Options {
        timeout: Duration::from_micros(timeout_us),
        repeat,
        fd,
        exit,
        max_threads,
        target,
    };
    let dog = watchdog::Watchdog::start(opts).map_err(os_error)?;
    *WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(dog);
    Ok(())
}

#[pyfunction]
fn cancel_dump_traceback_later(py: Python<'_>) {
    let dog = WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(dog) = dog {
        // The watchdog never takes the GIL, so waiting for it with the GIL released is
        // not needed for correctness, only to let other threads run meanwhile.
        py.detach(|| dog.cancel());
    }
}

fn check_signum(signum: i32) -> PyResult<()> {
    if signum < 1 || signum as usize >= NSIG {
        return Err(PyValueError::new_err("signal number out of range"));
    }
    Ok(())
}

#[pyfunction]
#[pyo3(signature = (signum, fd, all_threads, chain, max_threads))]
fn register(
    py: Python<'_>,
    signum: i32,
    fd: i32,
    all_threads: bool,
    chain: bool,
    max_threads: usize,
) -> PyResult<()> {
    check_signum(signum)?;
    if FATAL_SIGNALS.iter().any(|(s, _)| *s == signum) {
        return Err(PyRuntimeError::new_err(format!(
            "signal {signum} cannot be registered, use enable() instead"
        )));
    }
    let target = prepare::target(py)?;
    altstack::ensure().map_err(os_error)?;
    signals::register(
        signum,
        |previous| UserConfig {
            fd,
            all_threads,
            chain,
            max_threads,
            target,
            previous,
        },
        chain,
    )
    .map_err(os_error)
}

#[pyfunction]
fn unregister(signum: i32) -> PyResult<bool> {
    check_signum(signum)?;
    Ok(signals::unregister(signum))
}

/// Gives the calling thread an alternate signal stack (`True`) or frees it (`False`).
/// Called by the Python layer around every thread's run.
#[pyfunction]
fn thread_altstack(install: bool) -> PyResult<()> {
    if install {
        altstack::ensure().map_err(os_error)
    } else {
        altstack::release();
        Ok(())
    }
}

use pyo3::exceptions::PyRuntimeError;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(enable, m)?)?;
    m.add_function(wrap_pyfunction!(disable, m)?)?;
    m.add_function(wrap_pyfunction!(is_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(dump_traceback, m)?)?;
    m.add_function(wrap_pyfunction!(dump_c_stack, m)?)?;
    m.add_function(wrap_pyfunction!(dump_traceback_later, m)?)?;
    m.add_function(wrap_pyfunction!(cancel_dump_traceback_later, m)?)?;
    m.add_function(wrap_pyfunction!(register, m)?)?;
    m.add_function(wrap_pyfunction!(unregister, m)?)?;
    m.add_function(wrap_pyfunction!(thread_altstack, m)?)?;
    Ok(())
}
