//! `crashcatch._native`: the functions behind the `crashcatch` Python package.
//! `file` arguments are resolved exactly as faulthandler does (`pyfile`); functions that
//! keep writing to a file later return the file object, which the Python layer keeps alive.

mod altstack;
mod forklock;
mod livedump;
mod minidumps;
mod prepare;
mod pyfile;
mod quiet;
mod signal_safe;
mod signals;
mod threads;
mod watchdog;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use signal_safe::config::{FatalConfig, UserConfig, FATAL_SIGNALS, NSIG};
use signal_safe::out::Out;
use signal_safe::{cstack, handler, unwind::Regs};
use std::sync::Mutex;
use std::time::Duration;

static WATCHDOG: Mutex<Option<watchdog::Watchdog>> = Mutex::new(None);

/// The file object a later report will write to, kept alive by the Python layer.
type KeepAlive = Option<Py<PyAny>>;

fn os_error(e: std::io::Error) -> PyErr {
    PyOSError::new_err(e.to_string())
}

fn check_max_threads(max_threads: i64) -> PyResult<usize> {
    if max_threads < 1 {
        return Err(PyValueError::new_err("max_threads must be >= 1"));
    }
    Ok(max_threads as usize)
}

/// Installs the fatal-signal handlers.
#[pyfunction]
#[pyo3(signature = (file, all_threads, c_stack, max_threads))]
fn enable(
    py: Python<'_>,
    file: Option<Bound<'_, PyAny>>,
    all_threads: bool,
    c_stack: bool,
    max_threads: i64,
) -> PyResult<KeepAlive> {
    let max_threads = check_max_threads(max_threads)?;
    let (fd, keep) = pyfile::resolve(py, file.as_ref())?;
    let target = prepare::target(py)?;
    altstack::ensure().map_err(os_error)?;
    signal_safe::stack::prepare().map_err(os_error)?;
    forklock::pid(); // cached now (and its fork handler registered), not at a thread start
    let test_hook = |name: &str| std::env::var_os(name).is_some_and(|v| v == "1");
    let fault_in_handler = test_hook("CRASHCATCH_TEST_FAULT_IN_HANDLER");
    let report_stack_use = test_hook("CRASHCATCH_TEST_STACK_USE");
    let cfg =
        FatalConfig { fd, all_threads, c_stack, max_threads, target, fault_in_handler, report_stack_use };
    let raise_during_enable =
        std::env::var("CRASHCATCH_TEST_RAISE_DURING_ENABLE").ok().and_then(|v| v.parse().ok());
    signals::enable_fatal(cfg, raise_during_enable).map_err(os_error)?;
    Ok(keep)
}

#[pyfunction]
fn disable() -> bool {
    signals::disable_fatal()
}

#[pyfunction]
fn is_enabled() -> bool {
    signals::is_fatal_enabled()
}

/// dump_traceback(file=sys.stderr, all_threads=True, *, max_threads=100)
/// --
///
/// Dump the traceback of the current thread, or of all threads if all_threads is true,
/// into file. This native function is crashcatch.dump_traceback itself, so no frame of
/// crashcatch's own appears in the dump (as with faulthandler).
#[pyfunction]
#[pyo3(signature = (file=None, all_threads=true, *, max_threads=100))]
fn dump_traceback(
    py: Python<'_>,
    file: Option<Bound<'_, PyAny>>,
    all_threads: bool,
    max_threads: i64,
) -> PyResult<()> {
    let max_threads = check_max_threads(max_threads)?;
    let (fd, _keep) = pyfile::resolve(py, file.as_ref())?;
    let target = prepare::target(py)?;
    signal_safe::memory::refresh_pid();
    let mut out = Out::new(fd);
    handler::write_tracebacks(&mut out, target, all_threads, max_threads);
    out.flush();
    Ok(())
}

/// dump_c_stack(file=sys.stderr)
/// --
///
/// Dump the C stack of the current thread into file.
#[pyfunction]
#[pyo3(signature = (file=None))]
fn dump_c_stack(py: Python<'_>, file: Option<Bound<'_, PyAny>>) -> PyResult<()> {
    let (fd, _keep) = pyfile::resolve(py, file.as_ref())?;
    let target = prepare::target(py)?;
    signal_safe::memory::refresh_pid();
    signal_safe::stack::prepare().map_err(os_error)?;
    // Taken here, on this thread's stack: the walk starts from this very frame.
    let regs = Regs::here();
    let mut write = || {
        let mut out = Out::new(fd);
        cstack::dump(&mut out, &target.mem, &target.facts, regs);
        out.flush();
    };
    // The walk and its name buffers take some 150 KiB of stack, more than a thread started
    // with a small threading.stack_size() has: run them on the report stack, which the
    // report lock makes ours. Only if a crash report keeps it busy, use this thread's.
    if handler::with_report_lock(REPORT_STACK_WAIT_MS, || signal_safe::stack::run(&mut write)).is_none() {
        write();
    }
    Ok(())
}

/// How long `dump_c_stack()` waits for the report stack while a crash report uses it.
const REPORT_STACK_WAIT_MS: u32 = 1_000;

#[pyfunction]
#[pyo3(signature = (timeout_us, repeat, file, exit, max_threads, minidump, c_stack))]
#[allow(clippy::too_many_arguments)] // one per dump_traceback_later() option, passed through by name
fn dump_traceback_later(
    py: Python<'_>,
    timeout_us: u64,
    repeat: bool,
    file: Option<Bound<'_, PyAny>>,
    exit: bool,
    max_threads: i64,
    minidump: bool,
    c_stack: bool,
) -> PyResult<KeepAlive> {
    let max_threads = check_max_threads(max_threads)?;
    let (fd, keep) = pyfile::resolve(py, file.as_ref())?;
    let target = prepare::target(py)?;
    cancel_dump_traceback_later(py);
    let opts = watchdog::Options {
        timeout: Duration::from_micros(timeout_us),
        repeat,
        fd,
        exit,
        max_threads,
        minidump,
        c_stack,
        target,
    };
    let dog = watchdog::Watchdog::start(opts).map_err(os_error)?;
    *WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(dog);
    Ok(keep)
}

#[pyfunction]
fn cancel_dump_traceback_later(py: Python<'_>) {
    let dog = WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(dog) = dog {
        // Let other threads run while the watchdog thread winds down.
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
#[pyo3(signature = (signum, file, all_threads, chain, max_threads, minidump))]
fn register(
    py: Python<'_>,
    signum: i32,
    file: Option<Bound<'_, PyAny>>,
    all_threads: bool,
    chain: bool,
    max_threads: i64,
    minidump: bool,
) -> PyResult<KeepAlive> {
    check_signum(signum)?;
    if FATAL_SIGNALS.iter().any(|(s, _)| *s == signum) {
        return Err(PyRuntimeError::new_err(format!(
            "signal {signum} cannot be registered, use enable() instead"
        )));
    }
    let max_threads = check_max_threads(max_threads)?;
    let (fd, keep) = pyfile::resolve(py, file.as_ref())?;
    let target = prepare::target(py)?;
    altstack::ensure().map_err(os_error)?;
    signal_safe::stack::prepare().map_err(os_error)?;
    if minidump {
        // Its dumps are written by the dump thread, not by the signalled one (livedump.rs).
        livedump::ensure().map_err(os_error)?;
    }
    let make = |previous| UserConfig { fd, all_threads, chain, max_threads, minidump, target, previous };
    signals::register(signum, make, chain).map_err(os_error)?;
    Ok(keep)
}

/// Minidump settings (from enable() or defaults): on/off, directory, helper, deadline.
#[pyfunction]
#[pyo3(signature = (enabled, dump_dir, helper, timeout, prog_name, source_context, environ_mode,
    environ_redact, max_dump_size, max_dir_size, dump_locals))]
#[allow(clippy::too_many_arguments)] // one per enable() option, passed through by name
fn configure_minidumps(
    py: Python<'_>,
    enabled: bool,
    dump_dir: &str,
    helper: &str,
    timeout: f64,
    prog_name: &str,
    source_context: u32,
    environ_mode: u32,
    environ_redact: Vec<String>,
    max_dump_size: u64,
    max_dir_size: u64,
    dump_locals: bool,
) -> PyResult<()> {
    let target = prepare::target(py)?;
    let version = py.import("sys")?.getattr("version_info")?;
    let py_version = [
        version.getattr("major")?.extract()?,
        version.getattr("minor")?.extract()?,
        version.getattr("micro")?.extract()?,
    ];
    // SAFETY: dlsym with a NUL-terminated name; NULL when the symbol is not exported.
    let runtime = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_PyRuntime".as_ptr()) } as u64;
    if !(timeout > 0.0 && timeout.is_finite()) {
        return Err(PyValueError::new_err("dump_timeout must be a positive number of seconds"));
    }
    let settings = minidumps::Settings {
        enabled,
        dump_dir,
        helper,
        timeout: Duration::from_secs_f64(timeout),
        prog_name,
        py_version,
        runtime,
        source_context,
        environ_mode: handoff::EnvironMode::from_u32(environ_mode),
        environ_redact: &environ_redact,
        max_dump_size,
        max_dir_size,
        dump_locals,
        object_types: object_types(py)?,
        threading_hash: pyo3::types::PyString::new(py, "threading").hash().ok().map(|h| h as i64),
    };
    minidumps::configure(target, &settings).map_err(PyRuntimeError::new_err)
}

/// The addresses of `None` and the builtin types, in `ObjectTypes::SYMBOLS` order: the
/// objects themselves, so no symbol lookup (stripped, static interpreters) is needed.
fn object_types(py: Python<'_>) -> PyResult<[u64; handoff::OBJECT_TYPES]> {
    let builtins = py.import("builtins")?;
    let mut out = [0u64; handoff::OBJECT_TYPES];
    for (slot, (field, _symbol)) in out.iter_mut().zip(pylayout::objects::ObjectTypes::SYMBOLS) {
        // Field names are the builtins' names, with a trailing `_` where that is a keyword.
        let obj = match field {
            "none" => py.None().into_bound(py),
            name => builtins.getattr(name.trim_end_matches('_'))?,
        };
        *slot = obj.as_ptr() as u64;
    }
    Ok(out)
}

/// Live dumps (registered signals, timeouts) at most once per `seconds` (0: no limit).
#[pyfunction]
fn set_live_dump_interval(seconds: f64) -> PyResult<()> {
    if !(seconds >= 0.0 && seconds.is_finite()) {
        return Err(PyValueError::new_err("live_dump_interval must be a number of seconds >= 0"));
    }
    let ms = (seconds * 1000.0).round().min(u64::MAX as f64) as u64;
    signal_safe::dump::LIVE_INTERVAL_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// write_minidump(path=None) -> str
/// --
///
/// Write a minidump of this process now (it goes on running) and return its path.
#[pyfunction]
#[pyo3(signature = (path=None))]
fn write_minidump(py: Python<'_>, path: Option<String>) -> PyResult<String> {
    if signal_safe::config::load(&signal_safe::dump::HELPER).is_none() {
        // Not configured by enable()/register() yet: use the defaults.
        py.import("crashcatch")?.call_method0("_configure_dumps")?;
    }
    let result = py.detach(|| minidumps::dump_now(handoff::Kind::Requested, path.as_deref()));
    let line = result.map_err(|e| PyRuntimeError::new_err(format!("no minidump: {e}")))?;
    Ok(line.trim_end().trim_start_matches("crashcatch: minidump written to ").to_string())
}

/// Waits (bounded by the helper's deadline) for a registered signal's dump in progress:
/// at exit, so it is not cut short.
#[pyfunction]
fn wait_for_live_dump(py: Python<'_>) {
    py.detach(livedump::wait_for_pending);
}

/// `os.fork()`'s after-in-child hook: the child's own dump thread, if the parent had one.
#[pyfunction]
fn restart_dump_thread_after_fork() -> PyResult<()> {
    livedump::restart_after_fork().map_err(os_error)
}

/// Replaces the annotations (packed `key\0value\0` pairs).
#[pyfunction]
fn set_annotations(packed: &[u8]) -> PyResult<()> {
    minidumps::set_annotations(packed).map_err(PyValueError::new_err)
}

/// Replaces the line the fatal report ends with (`crashcatch: <note>`; empty: none).
#[pyfunction]
fn set_report_note(note: &[u8]) -> PyResult<()> {
    if note.len() > signal_safe::note::NOTE_SIZE {
        return Err(PyValueError::new_err(format!(
            "the report note is limited to {} bytes",
            signal_safe::note::NOTE_SIZE
        )));
    }
    signal_safe::note::set(note);
    Ok(())
}

#[pyfunction]
fn unregister(signum: i32) -> PyResult<bool> {
    check_signum(signum)?;
    Ok(signals::unregister(signum))
}

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
    m.add_function(wrap_pyfunction!(configure_minidumps, m)?)?;
    m.add_function(wrap_pyfunction!(write_minidump, m)?)?;
    m.add_function(wrap_pyfunction!(set_live_dump_interval, m)?)?;
    m.add_function(wrap_pyfunction!(set_annotations, m)?)?;
    m.add_function(wrap_pyfunction!(set_report_note, m)?)?;
    m.add_function(wrap_pyfunction!(wait_for_live_dump, m)?)?;
    m.add_function(wrap_pyfunction!(restart_dump_thread_after_fork, m)?)?;
    m.add_class::<threads::ThreadStarter>()?;
    m.add_class::<threads::AltStackRun>()?;
    Ok(())
}
