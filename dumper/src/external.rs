//! `crashcatch-dump --pid PID [-o FILE]`: a dump of a running Python process that never
//! asked for one. What the in-process path records in its `handoff::Request` (versions,
//! `_PyRuntime`, the interpreter, the builtin types) is found here from outside: the
//! modules' symbols (the `modfiles` crate) and the process's memory.

use crate::procmem::ProcessMemory;
use handoff::{Kind, Request};
use pylayout::{Layout, Memory, TypeAddrs};
use std::path::PathBuf;

/// Source lines kept around each Python frame of the main thread (as `enable()` does).
const SOURCE_CONTEXT_LINES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("usage: crashcatch-dump --pid PID [-o FILE]")]
    Usage,
    #[error("no process {0}: check the pid (`ps`); it may have exited")]
    NoProcess(i32),
    #[error("cannot read /proc/{0}/maps: {1} (run as the process's user or as root)")]
    Maps(i32, std::io::Error),
    #[error("process {pid} ({name}) is not a Python process: none of its modules defines `_PyRuntime` (CPython 3.9+); for another program use gcore or a debugger")]
    NotPython { pid: i32, name: String },
    #[error("process {pid} is already traced by process {tracer} (a debugger?): only one tracer may attach; detach it (gdb: `detach`) and try again")]
    Traced { pid: i32, tracer: i32 },
    #[error("cannot tell the CPython version of process {0}: no Py_Version and {1} is not named python3.X")]
    Version(i32, String),
    #[error("{0}")]
    Layout(String),
    #[error("cannot read the memory of process {pid}: {err}{hint}")]
    Memory { pid: i32, err: std::io::Error, hint: String },
    #[error("Python {0} in process {1} has no interpreter yet (or any more): it is starting or exiting")]
    NoInterpreter(String, i32),
}

/// What was asked for on the command line.
pub struct Options {
    pub pid: i32,
    pub output: Option<PathBuf>,
}

/// `--pid PID [-o FILE]` (in either order); None if the arguments are not these.
pub fn parse_args(args: &[String]) -> Option<Result<Options, ExternalError>> {
    if !args.iter().any(|a| a == "--pid") {
        return None;
    }
    let mut pid = None;
    let mut output = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pid" => pid = it.next().and_then(|p| p.parse().ok()).filter(|&p: &i32| p > 0),
            "-o" => output = it.next().map(PathBuf::from),
            _ => return Some(Err(ExternalError::Usage)),
        }
    }
    Some(pid.map(|pid| Options { pid, output }).ok_or(ExternalError::Usage))
}

/// Symbols read from the module defining `_PyRuntime`.
const PY_SYMBOLS: [&str; 8] = [
    "_PyRuntime",
    "Py_Version",
    "PyUnicode_Type",
    "PyCode_Type",
    "PyModule_Type",
    "PyDict_Type",
    "PyFrozenSet_Type",
    "PyFrame_Type",
];

/// The request the in-process path would have made, for process `opts.pid`.
pub fn request(opts: &Options) -> Result<Request, ExternalError> {
    let pid = opts.pid;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| ExternalError::NoProcess(pid))?;
    if let Some(tracer) = status_field(&status, "TracerPid").filter(|&t| t != 0) {
        return Err(ExternalError::Traced { pid, tracer });
    }
    let maps =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| ExternalError::Maps(pid, e))?;
    let name =
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim_end().to_string();
    let module = python_module(pid, &maps).ok_or(ExternalError::NotPython { pid, name: name.clone() })?;
    let sym = |n: &str| module.get(n).unwrap_or(0);
    let mem = ProcessMemory::new(pid);
    let runtime = sym("_PyRuntime");
    if !mem.read(runtime, &mut [0u8; 8]) {
        return Err(memory_error(pid));
    }
    let hex = mem.read_u32(sym("Py_Version")).filter(|_| sym("Py_Version") != 0);
    let version = match hex.and_then(|v| pylayout::version::from_hex(v.into())) {
        Some(v) => v,
        None => {
            let path = &module.file.path;
            let minor = pylayout::version::minor_in_file_name(path)
                .ok_or_else(|| ExternalError::Version(pid, path.clone()))?;
            [3, minor, modfiles::micro_version_in(&module.data, minor).unwrap_or(0)]
        }
    };
    let layout =
        Layout::for_version(3, version[1] as u8).map_err(|e| ExternalError::Layout(e.to_string()))?;
    let interp = main_interpreter(&mem, &layout, runtime)
        .ok_or_else(|| ExternalError::NoInterpreter(format!("3.{}", version[1]), pid))?;

    let mut req = Request::zeroed();
    req.kind = Kind::External as u32;
    req.tid = pid;
    req.time_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    req.py_version = version;
    req.runtime = runtime;
    req.interp = interp;
    req.types = TypeAddrs {
        str_type: sym("PyUnicode_Type"),
        code_type: sym("PyCode_Type"),
        module_type: sym("PyModule_Type"),
        dict_type: sym("PyDict_Type"),
        frozenset_type: sym("PyFrozenSet_Type"),
        frame_type: sym("PyFrame_Type"),
    };
    for (slot, (_, symbol)) in req.object_types.iter_mut().zip(pylayout::objects::ObjectTypes::SYMBOLS) {
        *slot = sym(symbol);
    }
    req.source_context = SOURCE_CONTEXT_LINES;
    handoff::set_field(&mut req.prog_name, name.as_bytes());
    match &opts.output {
        Some(path) => handoff::set_field(&mut req.dump_path, path.as_os_str().as_encoded_bytes()),
        None => handoff::set_field(&mut req.dump_dir, b"."),
    };
    Ok(req)
}

/// The module defining `_PyRuntime` (the executable first, then files named like python,
/// then any other), with the symbols of [`PY_SYMBOLS`] and of the builtin objects
/// (`ObjectTypes::SYMBOLS`) it defines.
fn python_module(pid: i32, maps: &str) -> Option<modfiles::PythonModule> {
    let mut files = modfiles::mapped_files(maps);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.display().to_string());
    files.sort_by_key(|f| Some(&f.path) != exe.as_ref());
    let objects = pylayout::objects::ObjectTypes::SYMBOLS.map(|(_, symbol)| symbol);
    modfiles::python_module(&files, Some(pid), &[&PY_SYMBOLS[..], &objects[..]].concat())
}

/// The main interpreter of the runtime at `runtime`.
fn main_interpreter(mem: &dyn Memory, layout: &Layout, runtime: u64) -> Option<u64> {
    layout
        .runtime_interpreters_main
        .and_then(|o| mem.ptr_at(runtime, o))
        .filter(|&i| i != 0)
        .or_else(|| mem.ptr_at(runtime, layout.runtime_interpreters_head?))
        .filter(|&i| i != 0)
}

/// A number field of /proc/PID/status.
fn status_field(status: &str, field: &str) -> Option<i32> {
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok())
}

/// Why the process's memory cannot be read, with what to do about it.
fn memory_error(pid: i32) -> ExternalError {
    let err = std::io::Error::last_os_error();
    let hint = if err.raw_os_error() == Some(libc::EPERM) { modfiles::ptrace_hint() } else { String::new() };
    ExternalError::Memory { pid, err, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn command_lines() {
        assert!(parse_args(&args("0x1234 5000")).is_none());
        let o = parse_args(&args("--pid 42 -o x.dmp")).expect("pid mode").expect("valid");
        assert_eq!((o.pid, o.output), (42, Some(PathBuf::from("x.dmp"))));
        let o = parse_args(&args("-o y --pid 7")).expect("pid mode").expect("valid");
        assert_eq!(o.pid, 7);
        assert!(matches!(parse_args(&args("--pid")), Some(Err(ExternalError::Usage))));
        assert!(matches!(parse_args(&args("--pid -3")), Some(Err(ExternalError::Usage))));
        assert!(matches!(parse_args(&args("--pid 3 --what")), Some(Err(ExternalError::Usage))));
    }

    #[test]
    fn status_fields() {
        assert_eq!(status_field("Name:\tx\nTracerPid:\t1234\n", "TracerPid"), Some(1234));
        assert_eq!(status_field("TracerPid:\t0\n", "TracerPid"), Some(0));
    }

    #[test]
    fn a_process_without_python_is_refused() {
        // This test program has no _PyRuntime.
        let opts = Options { pid: std::process::id() as i32, output: None };
        assert!(matches!(request(&opts), Err(ExternalError::NotPython { .. })));
    }
}
