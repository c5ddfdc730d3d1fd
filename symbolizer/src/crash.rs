//! Loading a dump into a [`Crash`]: the event, the threads and their Python stacks.

use crate::memory::DumpMemory;
use crate::native::{Modules, NativeFrame};
use crate::python::{decode_python, EvalCall, LayoutNote, PyFrame};
use minidump::{Minidump, MinidumpException, MinidumpMiscInfo, MinidumpSystemInfo, MinidumpThreadList};
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
    /// The C-level eval-loop calls that ran `python`'s frames, innermost first (None when
    /// their boundaries could not be read).
    pub python_calls: Option<Vec<EvalCall>>,
    /// Native frames, innermost first (inlined calls as frames of their own).
    pub native: Vec<NativeFrame>,
}

/// How to read a dump.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Directories to look for module files in (by file name), after their recorded paths.
    pub symbol_dirs: Vec<PathBuf>,
    /// A CPython layout table (tools/layouts/gen_layouts.py's format) to use instead of the
    /// built-in one, for interpreter builds the built-in table does not describe.
    pub layout_table: Option<String>,
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
    /// Where the structure offsets came from (table, the dump's own debug offsets).
    pub python_layout: LayoutNote,
    /// Modules whose files could not be used for symbols, and why.
    pub modules_without_symbols: Vec<String>,
    /// Modules whose frames are interpreter glue (hidden between Python frames).
    pub plumbing: crate::merge::Plumbing,
}

impl Crash {
    /// Loads a dump; module files are looked for at their recorded paths, then in
    /// `symbol_dirs` (by file name), and used only with the dump's build id.
    pub fn load(path: &Path, symbol_dirs: &[PathBuf]) -> Result<Crash, LoadError> {
        let options = Options { symbol_dirs: symbol_dirs.to_vec(), ..Options::default() };
        Crash::load_with(path, &options)
    }

    /// [`Crash::load`] with every option.
    pub fn load_with(path: &Path, options: &Options) -> Result<Crash, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Io(path.to_path_buf(), e))?;
        Crash::from_bytes_with(path, &bytes, options)
    }

    /// Like [`Crash::load`], from the dump's bytes (`path` only names it in messages).
    pub fn from_bytes(path: &Path, bytes: &[u8], symbol_dirs: &[PathBuf]) -> Result<Crash, LoadError> {
        let options = Options { symbol_dirs: symbol_dirs.to_vec(), ..Options::default() };
        Crash::from_bytes_with(path, bytes, &options)
    }

    /// [`Crash::from_bytes`] with every option.
    pub fn from_bytes_with(path: &Path, bytes: &[u8], options: &Options) -> Result<Crash, LoadError> {
        let symbol_dirs = &options.symbol_dirs[..];
        let dump =
            Minidump::read(bytes).map_err(|e| LoadError::NotMinidump(path.to_path_buf(), e.to_string()))?;
        let raw =
            dump.get_raw_stream(METADATA_STREAM).map_err(|_| LoadError::NoMetadata(path.to_path_buf()))?;
        // Bytes that are not UTF-8 (crashcatch's writer never leaves any) are shown as U+FFFD
        // rather than refusing the whole dump.
        let metadata: Value = serde_json::from_slice(raw)
            .or_else(|e| serde_json::from_str(&String::from_utf8_lossy(raw)).map_err(|_| e))
            .map_err(|e| LoadError::BadMetadata(path.to_path_buf(), e.to_string()))?;
        let exception = dump.get_stream::<MinidumpException>().ok();
        let crashed_tid = exception
            .as_ref()
            .map(|e| e.get_crashing_thread_id())
            .or_else(|| metadata["requesting_tid"].as_u64().map(|t| t as u32));
        let python_version = metadata["python"]["version"].as_str().unwrap_or("").to_string();
        let memory = dump.get_memory().map(DumpMemory);
        let thread_list = dump.get_stream::<MinidumpThreadList>().ok();
        let stacks: Vec<(u64, u64)> = thread_list
            .as_ref()
            .map(|l| {
                let range = |t: &minidump::MinidumpThread| {
                    let d = &t.raw.stack;
                    (
                        d.start_of_memory_range,
                        d.start_of_memory_range.saturating_add(d.memory.data_size as u64),
                    )
                };
                l.threads.iter().map(range).collect()
            })
            .unwrap_or_default();
        // A capped stack (dumper/src/shrink.rs) lost its middle, but addresses there are still
        // on the C stack: Python's entry frames in it were kept as memory ranges of their own.
        let capped = &metadata["stack_capped"];
        let original = capped["start"].as_u64().zip(capped["original_size"].as_u64());
        let on_c_stack = |addr: u64| {
            stacks.iter().any(|&(lo, hi)| addr >= lo && addr < hi)
                || original.is_some_and(|(lo, size)| addr >= lo && addr - lo < size)
        };
        let table = options.layout_table.as_deref();
        let (python, python_problem, python_layout) = match &memory {
            Some(m) => decode_python(m, &metadata, &python_version, &on_c_stack, table),
            None => (Vec::new(), Some("the dump has no memory list".into()), LayoutNote::default()),
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
                    python_calls: py.and_then(|p| p.eval_calls.clone()),
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
            python_layout,
            modules_without_symbols: modules.problems(),
            plumbing: modules.plumbing(),
            metadata,
        })
    }
}

/// (instruction pointer, stack pointer, frame pointer) of a thread.
type Registers = (u64, u64, u64);
