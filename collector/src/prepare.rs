//! Building, at `enable()` time and with the GIL held, everything the handlers will need
//! about this interpreter, and checking that the layout table really fits it.

use crate::signal_safe::config::{self, CodeRange, ProcessFacts, Target, FATAL_ERROR_FUNCTIONS};
use crate::signal_safe::memory::SelfMemory;
use crate::signal_safe::pytrace;
use pylayout::{lines, walk, Layout, TypeAddrs};
use pyo3::exceptions::{PyRuntimeError, PyRuntimeWarning};
use pyo3::prelude::*;
use std::sync::OnceLock;

static TARGET: OnceLock<&'static Target> = OnceLock::new();

/// The interpreter description, prepared once per process.
pub fn target(py: Python<'_>) -> PyResult<&'static Target> {
    if let Some(t) = TARGET.get() {
        return Ok(t);
    }
    let t = config::publish(build(py)?);
    self_check(py, t)?;
    Ok(TARGET.get_or_init(|| t))
}

fn build(py: Python<'_>) -> PyResult<Target> {
    let version = py.import("sys")?.getattr("version_info")?;
    let major: u8 = version.getattr("major")?.extract()?;
    let minor: u8 = version.getattr("minor")?.extract()?;
    let layout = Layout::for_version(major, minor).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    let builtins = py.import("builtins")?;
    let types = py.import("types")?;
    let addr = |o: Bound<'_, PyAny>| o.as_ptr() as u64;
    let type_addrs = TypeAddrs {
        str_type: addr(builtins.getattr("str")?),
        code_type: addr(types.getattr("CodeType")?),
        module_type: addr(types.getattr("ModuleType")?),
        dict_type: addr(builtins.getattr("dict")?),
        frozenset_type: addr(builtins.getattr("frozenset")?),
        frame_type: addr(types.getattr("FrameType")?),
    };
    // SAFETY: we hold the GIL, so there is a current interpreter.
    let interp = unsafe { pyo3::ffi::PyInterpreterState_Get() } as u64;
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        config::set_exe_path(exe.as_os_str().as_encoded_bytes());
    }
    // SAFETY: getauxval has no preconditions; 0 means "absent".
    let facts = unsafe {
        ProcessFacts {
            exe_phdr: libc::getauxval(libc::AT_PHDR),
            exe_phnum: libc::getauxval(libc::AT_PHNUM) as u16,
            vdso_ehdr: libc::getauxval(libc::AT_SYSINFO_EHDR),
        }
    };
    let fatal_error_code = FATAL_ERROR_FUNCTIONS.map(exported_code);
    let this_thread_state = exported_code("PyGILState_GetThisThreadState").start;
    Ok(Target {
        layout,
        types: type_addrs,
        interp,
        mem: SelfMemory::probe(),
        facts,
        fatal_error_code,
        this_thread_state,
    })
}

/// The code range of an exported function, from its dynamic symbol (value and size).
fn exported_code(name: &str) -> CodeRange {
    let Ok(cname) = std::ffi::CString::new(name) else { return CodeRange::default() };
    // SAFETY: dlsym with a NUL-terminated name; NULL when the symbol is not exported.
    let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, cname.as_ptr()) };
    if addr.is_null() {
        return CodeRange::default();
    }
    let mut info: libc::Dl_info = unsafe_zeroed_dl_info();
    let mut sym: *const libc::Elf64_Sym = std::ptr::null();
    // SAFETY: dladdr1 fills `info` and points `sym` at the symbol table entry (which lives
    // as long as the object is loaded: libpython or the executable, never unloaded).
    let found = unsafe {
        libc::dladdr1(addr, &mut info, &mut sym as *mut _ as *mut *mut libc::c_void, RTLD_DL_SYMENT)
    };
    // SAFETY: non-null `sym` from a successful dladdr1 points at a valid Elf64_Sym.
    let size = match unsafe { sym.as_ref() } {
        Some(s) if found != 0 && s.st_size > 0 => s.st_size,
        // No size: at least the entry itself, whose call sites sit a few bytes in.
        _ => 64,
    };
    CodeRange { start: addr as u64, end: addr as u64 + size }
}

/// glibc's `dladdr1` flag asking for the symbol table entry (<dlfcn.h>; not in `libc`).
const RTLD_DL_SYMENT: i32 = 1;

fn unsafe_zeroed_dl_info() -> libc::Dl_info {
    // SAFETY: Dl_info is plain data (pointers); all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Walks our own thread's frames with the layout table and compares them with what the
/// interpreter reports through `sys._getframe()`. A mismatch means the table does not fit
/// this build: warn, since the reports' Python part would be wrong.
fn self_check(py: Python<'_>, t: &Target) -> PyResult<()> {
    let problem = match check_frames(py, t)? {
        None => return Ok(()),
        Some(p) => p,
    };
    let msg = format!(
        "crashcatch cannot read this interpreter's frames ({problem}); crash reports will lack or \
         garble Python tracebacks. Please report your Python build (sys.version) to crashcatch."
    );
    PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &std::ffi::CString::new(msg)?, 1)
}

fn check_frames(py: Python<'_>, t: &Target) -> PyResult<Option<String>> {
    crate::signal_safe::memory::refresh_pid();
    let Some(ts) = pytrace::current_tstate(t) else {
        return Ok(Some("this thread's state is not in the interpreter's thread list".into()));
    };
    let mut ours = Vec::new();
    walk::for_each_frame(&t.mem, &t.layout, ts, t.types.frame_type, &mut |f| {
        ours.push(f);
        ours.len() < 8
    });
    let mut frame = py.import("sys")?.call_method1("_getframe", (0,))?;
    for (i, f) in ours.iter().enumerate() {
        let code = frame.getattr("f_code")?;
        if code.as_ptr() as u64 != f.code {
            return Ok(Some(format!("frame {i}: code object differs")));
        }
        let line: Option<i32> = frame.getattr("f_lineno")?.extract()?;
        let got = lines::addr_to_line(&t.mem, &t.layout, f.code, f.addr);
        if i == 0 && line.is_some() && got != line {
            return Ok(Some(format!("line {got:?} instead of {line:?}")));
        }
        frame = frame.getattr("f_back")?;
        if frame.is_none() {
            return Ok((i + 1 < ours.len()).then(|| "more frames than the interpreter has".into()));
        }
    }
    if ours.is_empty() {
        return Ok(Some("no frames found".into()));
    }
    Ok(None)
}
