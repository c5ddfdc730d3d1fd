//! Alternate signal stacks for Python threads, installed without adding a Python frame
//! (so tracebacks stay identical to faulthandler's): the thread-start functions of
//! `threading`/`_thread` are wrapped by [`ThreadStarter`], which hands the new thread a
//! native [`AltStackRun`] callable instead of the user's function.

use crate::altstack;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytesMethods, PyDict, PyString, PyTuple, PyType};

/// `types.MethodType` and `threading.Thread`, looked up once when the hook is made: a
/// thread start checks its function against them instead of asking for attributes that
/// may be missing (a failed lookup builds an exception).
static KNOWN_TYPES: PyOnceLock<(Py<PyType>, Py<PyType>)> = PyOnceLock::new();

fn known_types(py: Python<'_>) -> PyResult<&(Py<PyType>, Py<PyType>)> {
    KNOWN_TYPES.get_or_try_init(py, || {
        let type_of = |module: &str, name: &str| -> PyResult<Py<PyType>> {
            Ok(py.import(module)?.getattr(name)?.cast_into::<PyType>()?.unbind())
        };
        Ok((type_of("types", "MethodType")?, type_of("threading", "Thread")?))
    })
}

/// Records the name of the `threading.Thread` whose bound `_bootstrap` is `function`,
/// under the calling thread's id, for the dumps. Reads the `_name` attribute the `name`
/// property returns (as the dump helper does when no collector is present): the property
/// ran Python code at every thread start.
fn note_name(py: Python<'_>, function: &Bound<'_, PyAny>) {
    let Some((method_type, thread_type)) = KNOWN_TYPES.get(py) else {
        return;
    };
    if !function.get_type().is(method_type.bind(py)) {
        return; // a plain function: started by `_thread` directly, with no name
    }
    let Ok(thread) = function.getattr(intern!(py, "__self__")) else {
        return;
    };
    if !thread.is_instance(thread_type.bind(py)).unwrap_or(false) {
        return;
    }
    let Ok(name) = thread.getattr(intern!(py, "_name")) else {
        return;
    };
    // A name with lone surrogates has no UTF-8 form: the thread goes unnamed, as before.
    let Ok(utf8) = name.cast::<PyString>().map_err(PyErr::from).and_then(|n| n.encode_utf8()) else {
        return;
    };
    if let Ok(name) = std::str::from_utf8(utf8.as_bytes()) {
        crate::minidumps::note_thread_name(current_tid(py), name);
    }
}

/// The calling thread's OS id. CPython 3.11+ keeps it in the thread state, written when
/// the thread began to run Python (before the thread's function is called): read there
/// instead of asking the kernel (a system call per thread start); `gettid` before 3.11.
fn current_tid(py: Python<'_>) -> i32 {
    let offset = crate::prepare::target(py).ok().and_then(|t| t.layout.tstate_native_thread_id);
    if let Some(offset) = offset {
        // SAFETY: the caller holds the GIL, so the thread has a current thread state (never
        // null); `offset` is that of its `unsigned long native_thread_id` in this version's
        // layout table, which the crash handler reads too.
        let id = unsafe {
            let tstate = pyo3::ffi::PyThreadState_Get().cast::<u8>();
            std::ptr::read_unaligned(tstate.add(offset as usize).cast::<libc::c_ulong>())
        };
        if let Some(tid) = i32::try_from(id).ok().filter(|&tid| tid > 0) {
            return tid;
        }
    }
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Calls the wrapped thread function with an alternate signal stack installed for the
/// thread's lifetime.
#[pyclass(module = "crashcatch._native", frozen)]
pub struct AltStackRun {
    function: Py<PyAny>,
}

#[pymethods]
impl AltStackRun {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        // A thread without an alternate stack still runs; it only loses overflow reports.
        let _ = altstack::on_thread_start();
        let function = self.function.bind(py);
        // threading.Thread runs its bound _bootstrap method: name the thread for dumps.
        note_name(py, function);
        let result = function.call(args, kwargs).map(Bound::unbind);
        altstack::release();
        result
    }
}

/// Wraps `_thread.start_new_thread` / `start_joinable_thread`: same arguments, but the
/// function (first argument) runs inside [`AltStackRun`].
#[pyclass(module = "crashcatch._native", frozen)]
pub struct ThreadStarter {
    original: Py<PyAny>,
}

#[pymethods]
impl ThreadStarter {
    #[new]
    fn new(py: Python<'_>, original: Py<PyAny>) -> PyResult<Self> {
        known_types(py)?;
        Ok(ThreadStarter { original })
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let mut items: Vec<Bound<'_, PyAny>> = args.iter().collect();
        if let Some(first) = items.first_mut() {
            let run = AltStackRun { function: first.clone().unbind() };
            *first = Bound::new(py, run)?.into_any();
        }
        let args = PyTuple::new(py, items)?;
        self.original.bind(py).call(args, kwargs).map(Bound::unbind)
    }

    /// The function it wraps (so the hook can be undone or inspected).
    #[getter]
    fn original(&self, py: Python<'_>) -> Py<PyAny> {
        self.original.clone_ref(py)
    }
}
