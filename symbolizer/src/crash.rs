//! Loading a dump into a [`Crash`]: the event, the threads and their Python stacks.

use crate::memory::DumpMemory;
use crate::native::{Modules, NativeFrame};
use crate::python::{decode_python, EvalCall, LayoutNote, PyFrame, PyTarget, PyThreadStack};
use crate::unwind::{self, Gap, NativeStack, Registers, Resume, Space};
use minidump::{Minidump, MinidumpException, MinidumpMiscInfo, MinidumpSystemInfo, MinidumpThreadList};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
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
    #[error("{0}: {1}")]
    NotCore(PathBuf, String),
    #[error(
        "{0}: cannot decompress it: {1} (is the copy complete? `zstd -t`, `lz4 -t` or `xz -t` tests it)"
    )]
    Decompress(PathBuf, String),
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
    /// Why the native unwind ended before the thread's start (None: it got there).
    pub native_stopped: Option<String>,
    /// The middle of an overflowed stack, not in the dump, between two parts of `native`.
    pub native_gap: Option<Gap>,
}

/// How to read a dump.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Directories to look for module files in (by file name), after their recorded paths.
    pub symbol_dirs: Vec<PathBuf>,
    /// Where the target's files are, as gdb's `set sysroot`: a module recorded at /p is looked
    /// for at SYSROOT/p first, its separate debug files under SYSROOT/usr/lib/debug (a
    /// container's root file system, /proc/PID/root of a running process).
    pub sysroot: Option<PathBuf>,
    /// A CPython layout table (tools/layouts/gen_layouts.py's format) to use instead of the
    /// built-in one, for interpreter builds the built-in table does not describe.
    pub layout_table: Option<String>,
    /// Python stacks only (`--python-only`): no native stack is unwound, so no module's
    /// DWARF or symbol table is read.
    pub python_only: bool,
}

/// Everything `crashcatch symbolize` shows.
#[derive(Clone, Debug)]
pub struct Crash {
    pub path: PathBuf,
    /// What was read: "minidump", "core" (an ELF core file), "debugger", "process" (a
    /// running process read without stopping it).
    pub input: &'static str,
    pub metadata: Value,
    pub kind: String,
    /// The process ended right after the dump (a crash, or a timeout with exit=True).
    pub exits_after_dump: bool,
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
    /// What was left out to keep the work bounded (threads, native frames), said to the user.
    pub left_out: Vec<String>,
    /// Why the input could not be read to its end (a cut compressed core): what it held up
    /// to there is shown, and the run still fails.
    pub damaged: Option<String>,
}

impl Crash {
    /// Loads a dump; module files are looked for at their recorded paths, then in
    /// `symbol_dirs` (by file name), and used only with the dump's build id.
    pub fn load(path: &Path, symbol_dirs: &[PathBuf]) -> Result<Crash, LoadError> {
        let options = Options { symbol_dirs: symbol_dirs.to_vec(), ..Options::default() };
        Crash::load_with(path, &options)
    }

    /// [`Crash::load`] with every option. The file may also be an ELF core, or a
    /// compressed one (systemd-coredump's `.zst`, `.lz4`, `.xz`): told by its content, not its
    /// name.
    pub fn load_with(path: &Path, options: &Options) -> Result<Crash, LoadError> {
        let io = |e| LoadError::Io(path.to_path_buf(), e);
        let file = std::fs::File::open(path).map_err(io)?;
        if !file.metadata().map_err(io)?.is_file() {
            return Err(LoadError::NotMinidump(path.to_path_buf(), "not a regular file".into()));
        }
        // SAFETY: a read-only private mapping; a core may be gigabytes, of which only the
        // pages read are loaded. A file truncated while it is read could fault (as for gdb).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Crash::from_bytes_with(path, &map, options)
    }

    /// Like [`Crash::load`], from the dump's bytes (`path` only names it in messages).
    pub fn from_bytes(path: &Path, bytes: &[u8], symbol_dirs: &[PathBuf]) -> Result<Crash, LoadError> {
        let options = Options { symbol_dirs: symbol_dirs.to_vec(), ..Options::default() };
        Crash::from_bytes_with(path, bytes, &options)
    }

    /// [`Crash::from_bytes`] with every option.
    pub fn from_bytes_with(path: &Path, bytes: &[u8], options: &Options) -> Result<Crash, LoadError> {
        if crate::compressed::is_compressed(bytes) {
            let plain = crate::compressed::decompress(bytes)
                .map_err(|e| LoadError::Decompress(path.to_path_buf(), e))?;
            let mut crash = Crash::from_bytes_with(path, &plain.bytes, options)?;
            crash.damaged = plain.cut;
            return Ok(crash);
        }
        if crate::core::read::is_elf(bytes) {
            return crate::from_core::load(path, bytes, options);
        }
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
            Some(m) => {
                decode_python(m, &PyTarget::from_metadata(&metadata), &python_version, &on_c_stack, table)
            }
            None => (Vec::new(), Some("the dump has no memory list".into()), LayoutNote::default()),
        };

        // Each thread's registers: the crashing thread's from the exception record.
        let modules = Modules::load(&dump, symbol_dirs, options.sysroot.as_deref());
        let space = Space::of(&dump);
        // A capped stack is the crashed thread's (dumper/src/shrink.rs).
        let resume = Resume::from_metadata(&metadata);
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
        let (os_threads, mut notes) = limit_threads(os_threads, crashed_tid);

        // Looked up by key, not searched: a dump may list any number of threads.
        let mut meta_threads: HashMap<u64, &Value> = HashMap::new();
        for m in metadata["threads"].as_array().into_iter().flatten() {
            if let Some(tid) = m["tid"].as_u64() {
                meta_threads.entry(tid).or_insert(m);
            }
        }
        // Each decoded Python stack goes to the one thread that names its thread state.
        let mut python_stacks: HashMap<u64, PyThreadStack> = HashMap::new();
        for stack in python {
            python_stacks.entry(stack.tstate).or_insert(stack);
        }
        let mut frame_budget = MAX_NATIVE_FRAMES_ALL_THREADS;
        let mut not_unwound = 0;
        let threads: Vec<Thread> = os_threads
            .into_iter()
            .map(|(tid, regs)| {
                let m = meta_threads.get(&(tid as u64)).copied();
                let mut stack_of = |key: &str| {
                    m.and_then(|m| m[key]["tstate"].as_u64()).and_then(|ts| python_stacks.remove(&ts))
                };
                let named = m.and_then(|m| m["python"]["tstate"].as_u64());
                let py = stack_of("python");
                // A thread running a subinterpreter: its frames, then the ones that called it.
                let py = match (py, stack_of("python_outer")) {
                    (Some(inner), Some(outer)) => Some(inner.followed_by(outer)),
                    (py, _) => py,
                };
                let native = match (&memory, regs) {
                    _ if options.python_only => NativeStack::default(),
                    (Some(_), Some(_)) if frame_budget == 0 => {
                        not_unwound += 1;
                        NativeStack::default()
                    }
                    (Some(mem), Some(regs)) => {
                        let resume = resume.as_ref().filter(|_| Some(tid) == crashed_tid);
                        unwind::unwind(&modules, mem, &space, regs, frame_budget, resume)
                    }
                    _ => NativeStack::default(),
                };
                frame_budget -= native.frames.len();
                let (python, python_problem, python_calls) = match (py, named) {
                    (Some(p), _) => (p.frames, p.problem, p.eval_calls),
                    // The metadata names a thread state the dump's interpreters do not list.
                    (None, Some(ts)) => (
                        Vec::new(),
                        Some(format!(
                            "its thread state {ts:#x} is in no interpreter's thread list in the dump"
                        )),
                        None,
                    ),
                    (None, None) => Default::default(),
                };
                Thread {
                    tid,
                    name: m.and_then(|m| m["name"].as_str()).map(String::from),
                    python_name: m.and_then(|m| m["python_name"].as_str()).map(String::from),
                    holds_gil: m.is_some_and(|m| m["python"]["holds_gil"].as_bool() == Some(true)),
                    python,
                    python_problem,
                    python_calls,
                    native: native.frames,
                    native_stopped: native.stopped,
                    native_gap: native.gap,
                }
            })
            .collect();
        if frame_budget == 0 {
            notes.push(format!(
                "native stacks cut: at most {MAX_NATIVE_FRAMES_ALL_THREADS} native frames are read for all \
                 threads together, and {not_unwound} thread(s) were left without one"
            ));
        }
        Ok(Crash {
            path: path.to_path_buf(),
            input: "minidump",
            kind: metadata["kind"].as_str().unwrap_or("unknown").to_string(),
            exits_after_dump: metadata["exits_after_dump"].as_bool().unwrap_or(false),
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
            left_out: notes,
            damaged: None,
            plumbing: modules.plumbing(),
            metadata,
        })
    }
}

/// Threads read at most (a process rarely has more than a few hundred; a corrupt or hostile
/// dump may list millions).
pub const MAX_THREADS: usize = 4096;
/// Native frames unwound at most, all threads together (unwind::MAX_FRAMES is per thread):
/// room for two stacks as deep as a thread's limit, or thousands of ordinary ones.
pub const MAX_NATIVE_FRAMES_ALL_THREADS: usize = 131_072;

/// The threads to read, crashing thread first, then in the dump's order: each thread id once
/// (a repeated one is a corrupt entry), at most [`MAX_THREADS`]; with a note on what was
/// left out.
fn limit_threads<R>(threads: Vec<(u32, R)>, crashed: Option<u32>) -> (Vec<(u32, R)>, Vec<String>) {
    let listed = threads.len();
    let (first, others): (Vec<_>, Vec<_>) = threads.into_iter().partition(|(tid, _)| Some(*tid) == crashed);
    let mut seen = HashSet::new();
    let mut kept: Vec<(u32, R)> =
        first.into_iter().chain(others).filter(|(tid, _)| seen.insert(*tid)).collect();
    let mut notes = Vec::new();
    let repeated = listed - kept.len();
    if repeated > 0 {
        notes.push(format!(
            "{repeated} repeated thread entr{} of the dump ignored",
            if repeated == 1 { "y" } else { "ies" }
        ));
    }
    if kept.len() > MAX_THREADS {
        notes.push(format!(
            "only {MAX_THREADS} of the dump's {} threads are read (the crashing thread first)",
            kept.len()
        ));
        kept.truncate(MAX_THREADS);
    }
    (kept, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_read_crashing_one_first_each_once_and_at_most_max_threads() {
        let listed: Vec<(u32, ())> = [5, 7, 5, 9].iter().map(|&t| (t, ())).collect();
        let (kept, notes) = limit_threads(listed, Some(9));
        assert_eq!(kept.iter().map(|t| t.0).collect::<Vec<_>>(), [9, 5, 7]);
        assert_eq!(notes, ["1 repeated thread entry of the dump ignored"]);
        let many: Vec<(u32, ())> = (0..MAX_THREADS as u32 + 10).map(|t| (t, ())).collect();
        let (kept, notes) = limit_threads(many, Some(MAX_THREADS as u32 + 5));
        assert_eq!((kept.len(), kept[0].0, kept[1].0), (MAX_THREADS, MAX_THREADS as u32 + 5, 0));
        assert_eq!(
            notes,
            [format!("only {MAX_THREADS} of the dump's 4106 threads are read (the crashing thread first)")]
        );
    }
}
