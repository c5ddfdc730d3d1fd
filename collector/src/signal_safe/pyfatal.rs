//! CPython's own fatal errors. `Py_FatalError()` and its relatives print a complete report
//! (header, tracebacks, extension modules), disable faulthandler so that it does not print
//! a second one, then call abort(). crashcatch stays installed, so it must recognise that
//! abort() and add only what faulthandler would not have printed: the C stack and the
//! dump line, never a second "Fatal Python error" header.

use super::config::Target;
use super::cstack::lookup_pc;
use super::unwind::{Regs, Unwinder};

/// abort() is reached from `fatal_error()` within a few frames (raise, abort, fatal_error,
/// its .cold part, the exported entry point); looking further would only cost time.
const FRAMES_TO_SEARCH: usize = 16;

/// Whether the thread whose registers are `regs` aborts from inside one of CPython's
/// fatal-error functions, i.e. CPython has already written its report.
pub fn reported_by_cpython(t: &Target, regs: Regs) -> bool {
    if t.fatal_error_code.iter().all(|r| r.start == r.end) {
        return false;
    }
    Unwinder::new(&t.mem, &t.facts, regs)
        .take(FRAMES_TO_SEARCH)
        .any(|f| t.fatal_error_code.iter().any(|r| r.contains(lookup_pc(&f))))
}
