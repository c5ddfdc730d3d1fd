//! Alternate signal stacks for Python threads, installed without adding a Python frame
//! (so tracebacks stay identical to faulthandler's): the thread-start functions of
//! `threading`/`_thread` are wrapped by [`ThreadStarter`], which hands the new thread a
//! native [`AltStackRun`] callable instead of the user's function.

use crate::altstack;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

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
        // The thread's name is not noted here: a dump reads every thread's from the
        // `threading` module (issue 14: noting it took 1.4% of a thread start).
        let result = self.function.bind(py).call(args, kwargs).map(Bound::unbind);
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
    fn new(original: Py<PyAny>) -> Self {
        ThreadStarter { original }
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
