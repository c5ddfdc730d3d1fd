//! faulthandler's `file` argument: stderr by default, an int fd, or an object with
//! `fileno()` (flushed first). Same errors and messages as `faulthandler_get_fileno()`.

use pyo3::exceptions::{PyRuntimeError, PyRuntimeWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt};

/// The file descriptor to write to, and the file object to keep alive (None for an int).
pub fn resolve(py: Python<'_>, file: Option<&Bound<'_, PyAny>>) -> PyResult<(i32, Option<Py<PyAny>>)> {
    let file = match file.filter(|f| !f.is_none()) {
        Some(f) => f.clone(),
        None => {
            let stderr = py
                .import("sys")?
                .getattr("stderr")
                .map_err(|_| PyRuntimeError::new_err("unable to get sys.stderr"))?;
            if stderr.is_none() {
                return Err(PyRuntimeError::new_err("sys.stderr is None"));
            }
            stderr
        }
    };
    if file.is_instance_of::<PyInt>() {
        if file.is_instance_of::<PyBool>() {
            PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), c"bool is used as a file descriptor", 1)?;
        }
        let fd: i64 = file.extract()?;
        if fd < 0 || fd > i32::MAX as i64 {
            return Err(PyValueError::new_err("file is not a valid file descripter"));
        }
        return Ok((fd as i32, None));
    }
    let result = file.call_method0("fileno")?;
    let fd: i64 = if result.is_instance_of::<PyInt>() { result.extract().unwrap_or(-1) } else { -1 };
    if fd < 0 || fd > i32::MAX as i64 {
        return Err(PyRuntimeError::new_err("file.fileno() is not a valid file descriptor"));
    }
    // faulthandler ignores flush() errors.
    if file.call_method0("flush").is_err() {
        PyErr::take(py);
    }
    Ok((fd as i32, Some(file.unbind())))
}
