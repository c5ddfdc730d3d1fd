//! Loading a dump into a [`Crash`]: the event, the threads and their Python stacks.

use crate::memory::DumpMemory;
use crate::native::{Modules, NativeFrame};
use minidump::{Minidump, MinidumpException, MinidumpMiscInfo, MinidumpSystemInfo, MinidumpThreadList};
use pylayout::text::{for_each_char, StrRead};
use pylayout::{lines, walk, Layout, Memory};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// crashcatch's metadata stream ("CC" + 1).
pub const METADATA_STREAM: u32 = 0x4343_0001;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} is not a minidump (or is truncated): {1}")]
    NotMinidump(PathBuf, String),
    #[error("{0} has no crashcatch metadata stream: was it written by crashcatch? (other minidumps are not supported yet)")]
    NoMetadata(PathBuf),
    #[error("{0}: crashcatch metadata is not valid JSON: {1}")]
    BadMetadata(PathBuf, String),
}

/// One Python frame, innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyFrame {
    pub file: Option<String>,
    /// `co_name`, and `co_qualname` where the version has one (3.11+).
    pub name: Option<String>,
    pub qualname: Option<String>,
    pub line: Option<i32>,
}

impl PyFrame {
    /// The most precise function name the version records.
    pub fn function(&self) -> Option<&str> {
        self.qualname.as_deref().or(self.name.as_deref())
    }
}

/// The Python stack of one thread state, as decoded from the dump.
#[derive(Clone, Debug)]
pub struct PyThreadStack {
    pub tstate: u64,
    pub thread_id: Option<u64>,
    pub native_thread_id: Option<u64>,
    pub frames: Vec<PyFrame>,
    /// Why the stack may be incomplete.
    pub problem: Option<String>,
}

/// One thread of the dumped process.
#[derive(Clone, Debug)]
pub struct Thread {
    pub tid: u32,
    pub name: Option<String>,
    pub python_name: Option<String>,
    pub holds_gil: bool,
    /// Python frames, innermost first; empty for threads without Python.
    pub python: Vec<PyFrame>,
    /// Why the Python stack may be incomplete.
    pub python_problem: Option<String>,
    /// Native frames, innermost first (inlined calls as frames of their own).
    pub native: Vec<NativeFrame>,
}

/// Everything `crashcatch symbolize` shows.
#[derive(Clone, Debug)]
pub struct Crash {
    pub path: PathBuf,
    pub metadata: Value,
    pub kind: String,
    pub signal: i64,
    pub fault_address: u64,
    pub crashed_tid: Option<u32>,
    pub python_version: String,
    /// Crashing (or requesting) thread first.
    pub threads: Vec<Thread>,
    /// Set when the Python structures could not be decoded at all.
    pub python_problem: Option<String>,
    /// Modules whose files could not be used for symbols, and why.
    pub modules_without_symbols: Vec<String>,
}

impl Crash {
    /// Loads a dump; module files are looked for at their recorded paths, then in
    /// `symbol_dirs` (by file name), and used only with the dump's build id.
    pub fn load(path: &Path, symbol_dirs: &[PathBuf]) -> Result<Crash, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Io(path.to_path_buf(), e))?;
        Crash::from_bytes(path, &bytes, symbol_dirs)
    }

    /// Like [`Crash::load`], from the dump's bytes (`path` only names it in messages).
    pub fn from_bytes(path: &Path, bytes: &[u8], symbol_dirs: &[PathBuf]) -> Result<Crash, LoadError> {
        let dump =
            Minidump::read(bytes).map_err(|e| LoadError::NotMinidump(path.to_path_buf(), e.to_string()))?;
        let raw =
            dump.get_raw_stream(METADATA_STREAM).map_err(|_| LoadError::NoMetadata(path.to_path_buf()))?;
        let metadata: Value = serde_json::from_slice(raw)
            .map_err(|e| LoadError::BadMetadata(path.to_path_buf(), e.to_string()))?;
        let exception = dump.get_stream::<MinidumpException>().ok();
        let crashed_tid = exception
            .as_ref()
            .map(|e| e.get_crashing_thread_id())
            .or_else(|| metadata["requesting_tid"].as_u64().map(|t| t as u32));
        let python_version = metadata["python"]["version"].as_str().unwrap_or("").to_string();
        let memory = dump.get_memory().map(DumpMemory);
        let (python, python_problem) = match &memory {
            Some(m) => decode_python(m, &metadata, &python_version),
            None => (Vec::new(), Some("the dump has no memory list".into())),
        };

        // Each thread's registers: the crashing thread's from the exception record.
        let modules = Modules::load(&dump, symbol_dirs);
        let system = dump.get_stream::<MinidumpSystemInfo>().ok();
        let misc = dump.get_stream::<MinidumpMiscInfo>().ok();
        let registers = |ctx: &minidump::MinidumpContext| {
            (ctx.get_instruction_pointer(), ctx.get_stack_pointer(), ctx.get_register("rbp").unwrap_or(0))
        };
        let crash_regs = match (&exception, &system) {
            (Some(e), Some(sys)) => e.context(sys, misc.as_ref()).map(|c| registers(&c)),
            _ => None,
        };
        let thread_list = dump.get_stream::<MinidumpThreadList>().ok();
        let os_threads: Vec<(u32, Option<Registers>)> = thread_list
            .as_ref()
            .map(|l| {
                l.threads
                    .iter()
                    .map(|t| {
                        let regs = if Some(t.raw.thread_id) == crashed_tid && crash_regs.is_some() {
                            crash_regs
                        } else {
                            system
                                .as_ref()
                                .and_then(|sys| t.context(sys, misc.as_ref()))
                                .map(|c| registers(&c))
                        };
                        (t.raw.thread_id, regs)
                    })
                    .collect()
            })
            .unwrap_or_default();

        let meta_thread = |tid: u32| {
            metadata["threads"]
                .as_array()
                .and_then(|a| a.iter().find(|t| t["tid"].as_u64() == Some(tid as u64)))
        };
        let mut threads: Vec<Thread> = os_threads
            .iter()
            .map(|&(tid, regs)| {
                let m = meta_thread(tid);
                let tstate = m.and_then(|m| m["python"]["tstate"].as_u64());
                let py = tstate.and_then(|ts| python.iter().find(|p| p.tstate == ts));
                Thread {
                    tid,
                    name: m.and_then(|m| m["name"].as_str()).map(String::from),
                    python_name: m.and_then(|m| m["python_name"].as_str()).map(String::from),
                    holds_gil: m.is_some_and(|m| m["python"]["holds_gil"].as_bool() == Some(true)),
                    python: py.map(|p| p.frames.clone()).unwrap_or_default(),
                    python_problem: py.and_then(|p| p.problem.clone()),
                    native: match (&memory, regs) {
                        (Some(mem), Some((ip, sp, bp))) => modules.stack(mem, ip, sp, bp),
                        _ => Vec::new(),
                    },
                }
            })
            .collect();
        threads.sort_by_key(|t| Some(t.tid) != crashed_tid);
        Ok(Crash {
            path: path.to_path_buf(),
            kind: metadata["kind"].as_str().unwrap_or("unknown").to_string(),
            signal: metadata["signal"].as_i64().unwrap_or(0),
            fault_address: exception
                .as_ref()
                .map(|e| e.raw.exception_record.exception_address)
                .unwrap_or_else(|| metadata["fault_address"].as_u64().unwrap_or(0)),
            crashed_tid,
            python_version,
            threads,
            python_problem,
            modules_without_symbols: modules.problems(),
            metadata,
        })
    }
}

/// (instruction pointer, stack pointer, frame pointer) of a thread.
type Registers = (u64, u64, u64);

/// Every Python thread of the interpreter named in crashcatch's metadata, decoded from the
/// dump's memory alone; with why the thread list may be incomplete.
pub fn decode_python(mem: &DumpMemory, meta: &Value, version: &str) -> (Vec<PyThreadStack>, Option<String>) {
    let mut parts = version.split('.').map(|p| p.parse::<u8>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let layout = match Layout::for_version(major, minor) {
        Ok(l) => l,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let str_type = meta["types"]["str"].as_u64().unwrap_or(0);
    let interp = meta["python"]["interp"].as_u64().unwrap_or(0);
    let text = |obj: u64| {
        let mut s = String::new();
        let r = for_each_char(mem, &layout, str_type, obj, 4096, &mut |c| {
            s.push(char::from_u32(c).unwrap_or('?'))
        });
        matches!(r, StrRead::Done { .. }).then_some(s)
    };
    let mut out = Vec::new();
    let complete = walk::for_each_thread(mem, &layout, interp, &mut |ts| {
        let mut frames = Vec::new();
        let end = walk::for_each_frame(mem, &layout, ts, 0, &mut |f| {
            let field = |off: Option<u32>| off.and_then(|o| mem.ptr_at(f.code, o)).and_then(text);
            frames.push(PyFrame {
                file: field(layout.code_filename),
                name: field(layout.code_name),
                qualname: field(layout.code_qualname),
                line: lines::addr_to_line(mem, &layout, f.code, f.addr),
            });
            frames.len() < 10_000
        });
        let problem =
            (end == walk::WalkEnd::Unreadable).then(|| "a frame is missing from the dump".to_string());
        out.push(PyThreadStack {
            tstate: ts,
            thread_id: walk::thread_id(mem, &layout, ts),
            native_thread_id: walk::native_thread_id(mem, &layout, ts),
            frames,
            problem,
        });
        true
    });
    let problem = (!complete).then(|| "the interpreter's thread list is incomplete in the dump".to_string());
    (out, problem)
}
