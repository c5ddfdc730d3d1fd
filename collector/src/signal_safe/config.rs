//! What the handlers read: prepared and published by the rest of the crate (outside any
//! signal handler), never freed, read through atomics.

use super::memory::SelfMemory;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use pylayout::{Layout, TypeAddrs};

/// The fatal signals, in faulthandler's order, with faulthandler's names.
pub const FATAL_SIGNALS: [(i32, &str); 5] = [
    (libc::SIGBUS, "Bus error"),
    (libc::SIGILL, "Illegal instruction"),
    (libc::SIGFPE, "Floating point exception"),
    (libc::SIGABRT, "Aborted"),
    (libc::SIGSEGV, "Segmentation fault"),
];

/// Number of signal numbers (Linux: 1..=64).
pub const NSIG: usize = 65;

/// Facts about the process image, taken from the aux vector at prepare time.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessFacts {
    pub exe_phdr: u64,
    pub exe_phnum: u16,
    pub vdso_ehdr: u64,
}

/// The Python interpreter the reports describe.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub layout: Layout,
    pub types: TypeAddrs,
    /// The `PyInterpreterState*` that was current at enable time (faulthandler's choice).
    pub interp: u64,
    pub mem: SelfMemory,
    pub facts: ProcessFacts,
    /// The code of CPython's fatal-error entry points (`_Py_FatalErrorFunc`…), found at
    /// prepare time: an abort() called from one of them follows CPython's own report.
    pub fatal_error_code: [CodeRange; FATAL_ERROR_FUNCTIONS.len()],
    /// `PyGILState_GetThisThreadState` (0: not found): the calling thread's own thread
    /// state, which faulthandler reports — a subinterpreter's while the thread runs one.
    pub this_thread_state: u64,
}

impl Target {
    /// This target read through the report page cache, emptied first: a frame, a code
    /// object or a string then costs one read of its page, not one per field. Only for
    /// the holder of the report lock, for the one report it is writing.
    pub fn for_report(&self) -> Target {
        super::pagecache::begin_report();
        Target { mem: SelfMemory { cached: !self.mem.direct, ..self.mem }, ..*self }
    }
}

/// CPython's exported functions that print a fatal-error report and then abort() (all of
/// them reach the static `fatal_error()`; `Py_FatalError` is the pre-3.9 entry point).
pub const FATAL_ERROR_FUNCTIONS: [&str; 6] = [
    "_Py_FatalErrorFunc",
    "_Py_FatalErrorFormat",
    "Py_FatalError",
    "Py_ExitStatusException",
    "_Py_FatalRefcountErrorFunc",
    "_Py_FatalError_TstateNULL",
];

/// `[start, end)` of a function's code; empty when the function was not found.
#[derive(Clone, Copy, Debug, Default)]
pub struct CodeRange {
    pub start: u64,
    pub end: u64,
}

impl CodeRange {
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// Options of `enable()`.
#[derive(Clone, Copy, Debug)]
pub struct FatalConfig {
    pub fd: i32,
    pub all_threads: bool,
    pub c_stack: bool,
    pub max_threads: usize,
    pub target: &'static Target,
    /// Test hook (CRASHCATCH_TEST_FAULT_IN_HANDLER=1 at enable time): the handler faults
    /// on purpose after the tracebacks, to prove the fallback when a report crashes.
    pub fault_in_handler: bool,
    /// Test hook (CRASHCATCH_TEST_STACK_USE=1 at enable time): the report ends with the
    /// report stack's high-water mark, to measure the handler's worst-case stack use.
    pub report_stack_use: bool,
}

/// Options of `register(signum, …)`.
#[derive(Clone, Copy)]
pub struct UserConfig {
    pub fd: i32,
    pub all_threads: bool,
    pub chain: bool,
    pub max_threads: usize,
    /// Also write a minidump on each delivery.
    pub minidump: bool,
    pub target: &'static Target,
    pub previous: libc::sigaction,
}

/// Current fatal-signal configuration; null when disabled.
pub static FATAL: AtomicPtr<FatalConfig> = AtomicPtr::new(core::ptr::null_mut());

/// Per-signal `register()` configuration; null when not registered.
pub static USER: [AtomicPtr<UserConfig>; NSIG] = [const { AtomicPtr::new(core::ptr::null_mut()) }; NSIG];

/// The dispositions that were installed before ours, per entry of [`FATAL_SIGNALS`].
pub static PREVIOUS_FATAL: [AtomicPtr<libc::sigaction>; 5] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; 5];

/// Leaks `value` so handlers can hold the reference forever.
pub fn publish<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// Loads a published pointer.
pub fn load<T>(slot: &AtomicPtr<T>) -> Option<&'static T> {
    let p = slot.load(Ordering::Acquire);
    // SAFETY: every non-null pointer stored in these slots came from `publish`, which leaks
    // it: it stays valid and immutable for the rest of the process.
    unsafe { p.as_ref() }
}

/// Stores a value made by [`publish`].
pub fn store<T>(slot: &AtomicPtr<T>, value: Option<&'static T>) {
    slot.store(value.map_or(core::ptr::null_mut(), |v| v as *const T as *mut T), Ordering::Release);
}

/// The main program's path (from /proc/self/exe), NUL-terminated; its link-map entry has an
/// empty name.
struct ExePath(UnsafeCell<[u8; 4096]>);
// SAFETY: written once by `set_exe_path` before EXE_PATH_SET is published, read-only after.
unsafe impl Sync for ExePath {}
static EXE_PATH: ExePath = ExePath(UnsafeCell::new([0; 4096]));
static EXE_PATH_SET: AtomicU64 = AtomicU64::new(0);

/// Records the executable's path; only the first call has an effect.
pub fn set_exe_path(path: &[u8]) {
    if EXE_PATH_SET.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    let n = path.len().min(4095);
    // SAFETY: the compare_exchange above makes this the only writer, and readers only look
    // after EXE_PATH_SET becomes 2.
    unsafe { (&mut *EXE_PATH.0.get())[..n].copy_from_slice(&path[..n]) };
    EXE_PATH_SET.store(2, Ordering::Release);
}

/// Address of the executable's NUL-terminated path (an empty string until known).
pub fn exe_path_ptr() -> u64 {
    EXE_PATH.0.get() as u64
}
