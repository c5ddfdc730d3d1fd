//! `crashcatch symbolize CORE`: a kernel core (or gcore's, systemd-coredump's) read into the
//! same [`Crash`] a crashcatch minidump gives, so the output is the same: the signal from
//! NT_SIGINFO, every thread's registers from its NT_PRSTATUS (the crashing thread first),
//! the modules from NT_FILE, the Python target from the interpreter file's symbols
//! (the `modfiles` crate), and the Python stacks decoded from the core's memory with the decoder the
//! debugger helper uses (`debugger::target`, `python::decode_python`).

use crate::core::layout::{PF_W, PF_X};
use crate::core::memory::CoreMemory;
use crate::core::read::CoreFile;
use crate::crash::{Crash, LoadError, Options, Thread};
use crate::debugger::{modules, target, values};
use crate::native::{LoadedModule, Modules};
use crate::python::{decode_python, PyThreadStack};
use crate::sources;
use crate::unwind::{self, NativeStack, Registers, Space};
use pylayout::thread_names::python_thread_names;
use pylayout::{walk, Memory};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `AT_PHDR`: the program's program headers, which tell the program among the mappings.
const AT_PHDR: u64 = 3;
/// Module files read at most (a process maps a few hundred).
const MAX_MODULES: usize = 4096;
/// Native frames unwound at most per thread, and for all threads together.
const MAX_FRAMES_ALL_THREADS: usize = crate::crash::MAX_NATIVE_FRAMES_ALL_THREADS;

/// The modules NT_FILE lists (each path once, where its file's start is mapped), the
/// program first; build ids from the ELF headers the core holds.
fn modules_of(core: &CoreFile, mem: &dyn Memory) -> Vec<LoadedModule> {
    let mut seen = HashMap::new();
    let mut found: Vec<LoadedModule> = Vec::new();
    for f in core.files.iter().filter(|f| f.offset == 0) {
        if found.len() >= MAX_MODULES || seen.contains_key(&f.path) {
            continue;
        }
        let Some(mut m) = modules::mapped_at(mem, f.path.clone(), f.start) else { continue };
        // Where the ELF header does not say (it was cut), the mappings of the file do.
        let end = core.files.iter().filter(|g| g.path == f.path).map(|g| g.end).max().unwrap_or(f.end);
        if m.size == 0 {
            m.size = end.saturating_sub(m.base);
        }
        seen.insert(f.path.clone(), found.len());
        found.push(m);
    }
    let program = core.aux(AT_PHDR).and_then(|phdr| core.file_at(phdr)).and_then(|f| seen.get(&f.path));
    if let Some(&i) = program {
        let p = found.remove(i);
        found.insert(0, p);
    }
    found
}

/// Where the file a core recorded at `path` is here: under `sysroot` (the process's root
/// file system, `--sysroot`), else at `path`; the first with build id `want` when the core
/// has it, else the first that is a file.
fn local_file(sysroot: Option<&Path>, path: &str, want: Option<&str>) -> Option<PathBuf> {
    let in_sysroot = sysroot.and_then(|root| Some(root.join(path.strip_prefix('/')?)));
    in_sysroot.into_iter().chain(std::iter::once(PathBuf::from(path))).find(|local| match want {
        Some(id) => crate::elf::ElfFile::open(local).is_ok_and(|e| e.build_id.as_deref() == Some(id)),
        None => local.is_file(),
    })
}

/// The core's modules with build ids: from the core's copy of each ELF header, else (the
/// kernel left the header page out, or the core is cut) the file's own, trusted by its
/// path. Fills `mem` with the left-out read-only pages of the files whose build id matches.
/// Also where each module's file is here (`local_file`), by the path the core records.
fn modules_with_files(
    core: &CoreFile,
    mem: &mut CoreMemory,
    sysroot: Option<&Path>,
) -> (Vec<LoadedModule>, HashMap<String, PathBuf>) {
    let from_core = modules_of(core, mem);
    let mut paths: Vec<&str> = core.files.iter().map(|f| f.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    let trusted: Vec<(&str, PathBuf)> = paths
        .into_iter()
        .filter_map(|path| {
            let checked = from_core.iter().find(|m| m.path == *path).and_then(|m| m.build_id.as_deref());
            Some((path, local_file(sysroot, path, checked)?))
        })
        .collect();
    let locals = trusted.iter().map(|(path, local)| (path.to_string(), local.clone())).collect();
    mem.allow_files(trusted);
    // With the files' pages, headers the core left out are read too.
    let mut listed = modules_of(core, mem);
    for m in &mut listed {
        if let Some(known) = from_core.iter().find(|k| k.path == m.path && k.build_id.is_some()) {
            m.build_id.clone_from(&known.build_id);
        }
    }
    (listed, locals)
}

fn space_of(core: &CoreFile, mem: &CoreMemory) -> Space {
    let ranges = |keep: &dyn Fn(u32) -> bool| -> Vec<(u64, u64)> {
        core.loads
            .iter()
            .filter(|l| keep(l.flags))
            .map(|l| (l.vaddr, l.vaddr.saturating_add(l.memsz)))
            .collect()
    };
    let mut code = ranges(&|f| f & PF_X != 0);
    code.extend(mem.file_code());
    Space::new(code, Some(ranges(&|f| f & PF_W != 0)))
}

/// What the core says of the process (the metadata a minidump records), for `render`.
fn metadata(
    core: &CoreFile,
    program: Option<&str>,
    version: &str,
    kind: &str,
    signal: i64,
) -> serde_json::Value {
    let argv: Vec<&str> = core.args.as_deref().unwrap_or("").split_whitespace().collect();
    json!({
        "kind": kind,
        "signal": signal,
        "pid": core.pid,
        "python": {"argv": argv, "executable": program, "version": version},
    })
}

/// The Python version "3.X.Y" from `Py_Version` (3.11+), else the target's "3.X".
fn full_version(mem: &dyn Memory, symbol: Option<u64>, short: &str) -> String {
    match symbol.and_then(|a| mem.read_u32(a)).filter(|v| v >> 24 == 3) {
        Some(v) => format!("3.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff),
        None => short.to_string(),
    }
}

/// Loads a core from its bytes (`path` names it in messages).
pub fn load(path: &Path, bytes: &[u8], options: &Options) -> Result<Crash, LoadError> {
    let core = CoreFile::parse(bytes).map_err(|e| LoadError::NotCore(path.to_path_buf(), e.to_string()))?;
    let mut mem = CoreMemory::new(&core, bytes);
    let sysroot = options.sysroot.as_deref();
    let (listed, locals) = modules_with_files(&core, &mut mem, sysroot);
    let modules = Modules::from_list(&listed, &options.symbol_dirs, sysroot);
    let space = space_of(&core, &mem);
    let signal = core.siginfo.map_or(i64::from(core.threads[0].signal), |s| i64::from(s.signo));
    let kind = if signal != 0 { "fatal-signal" } else { "core" };
    let crashed_tid = (signal != 0).then_some(core.threads[0].tid);

    let types: Vec<&str> = pylayout::objects::ObjectTypes::SYMBOLS.iter().map(|(_, s)| *s).collect();
    // The interpreter's symbols from its file here (under the sysroot, if there).
    let files: Vec<modfiles::MappedFile> = listed
        .iter()
        .filter_map(|m| {
            let path = locals.get(&m.path)?.to_string_lossy().into_owned();
            Some(modfiles::MappedFile { path, start: m.base })
        })
        .collect();
    let python_module = modfiles::python_module(&files, None, &types);
    let symbol = |name: &str| python_module.as_ref().and_then(|m| m.get(name));
    let target = match &python_module {
        None => Err(format!(
            "not a Python process, or its interpreter's files are not here: no module file of the \
             core defines _PyRuntime (CPython 3.9+ exports it; {} module files were looked at — \
             run where the program ran, or copy its files to the same paths)",
            listed.len()
        )),
        Some(m) => target::discover(&symbol, &mem, Some(&m.file.path), options.layout_table.as_deref()),
    };

    let mut notes = core.problems.clone();
    let registers: Vec<Option<Registers>> =
        core.threads.iter().map(|t| Some((t.rip, t.rsp, t.rbp))).collect();
    let (natives, cut) = unwind_all(&modules, &mem, &space, &registers);
    notes.extend(cut);
    let stacks_of_threads = thread_stacks(&space, &registers, &natives);
    let on_c_stack = |addr: u64| stacks_of_threads.iter().any(|&(lo, hi)| addr >= lo && addr < hi);
    let mut state = python_state(&mem, &target, &symbol, &on_c_stack, options);
    if let Some(m) = &python_module {
        state.complete_version(&m.data);
    }
    let version = state.version.clone();
    // ≤3.10 names a thread state's thread by pthread_t: its fs_base.
    let threads: Vec<Thread> = core
        .threads
        .iter()
        .zip(natives)
        .map(|(t, native)| {
            let py = state.stack_of(t.tid, (t.fs_base != 0).then_some(t.fs_base));
            let os_name = (core.pid == Some(t.tid)).then(|| core.program_name.clone()).flatten();
            state.thread(t.tid, os_name, py, native)
        })
        .collect();
    let program = listed.first().map(|m| m.path.as_str());
    let mut metadata = metadata(&core, program, &version, kind, signal);
    if let Some(t) = threads.first().filter(|_| crashed_tid.is_some()) {
        let (found, missing) = sources::from_disk(&t.python);
        metadata["source"] = found;
        notes.extend(missing);
    }
    Ok(Crash {
        path: path.to_path_buf(),
        input: "core",
        metadata,
        kind: kind.to_string(),
        exits_after_dump: true,
        signal,
        fault_address: core.siginfo.map_or(0, |s| s.addr),
        crashed_tid,
        python_version: version,
        threads,
        python_problem: state.problem,
        python_layout: state.note,
        modules_without_symbols: modules.problems(),
        plumbing: modules.plumbing(),
        left_out: notes,
        damaged: None,
    })
}

/// Each thread's native stack unwound from its registers (None: not known, nothing
/// unwound), at most [`MAX_FRAMES_ALL_THREADS`] frames for all threads together; and the
/// note saying so when that cut them.
pub(crate) fn unwind_all(
    modules: &Modules,
    mem: &dyn Memory,
    space: &Space,
    registers: &[Option<Registers>],
) -> (Vec<NativeStack>, Option<String>) {
    let mut budget = MAX_FRAMES_ALL_THREADS;
    let natives = registers
        .iter()
        .map(|r| {
            let Some(r) = *r else { return NativeStack::default() };
            let stack = unwind::unwind(modules, mem, space, r, budget, None);
            budget = budget.saturating_sub(stack.frames.len());
            stack
        })
        .collect();
    let cut = (budget == 0).then(|| {
        format!("native stacks cut: at most {MAX_FRAMES_ALL_THREADS} native frames are read for all threads together")
    });
    (natives, cut)
}

/// The threads' stacks [lo, hi), each thread's and its own under a handler's alternate one
/// (the frames' stack pointers): a Python frame in one was pushed by C code.
pub(crate) fn thread_stacks(
    space: &Space,
    registers: &[Option<Registers>],
    natives: &[NativeStack],
) -> Vec<(u64, u64)> {
    let mut stacks: Vec<(u64, u64)> =
        registers.iter().flatten().map(|&(_, sp, _)| space.stack_of(sp)).collect();
    stacks.extend(natives.iter().flat_map(|n| n.frames.iter()).map(|f| space.stack_of(f.sp)));
    stacks.sort_unstable();
    stacks.dedup();
    stacks
}

/// The Python side of a target read from memory: every thread state's stack, threading's
/// thread names, the GIL holder.
pub(crate) struct PythonState {
    stacks: Vec<PyThreadStack>,
    pub problem: Option<String>,
    pub note: crate::python::LayoutNote,
    /// "3.X.Y" when the target says, else "3.X"; empty without a target.
    pub version: String,
    names: Vec<(u64, String)>,
    gil: Option<u64>,
    /// Thread states name their thread by its OS id (3.11+), else by pthread_t.
    by_tid: bool,
}

/// Decodes the Python stacks of `target` (or says why there are none).
pub(crate) fn python_state(
    mem: &dyn Memory,
    target: &Result<target::Target, String>,
    symbol: &dyn Fn(&str) -> Option<u64>,
    on_c_stack: &dyn Fn(u64) -> bool,
    options: &Options,
) -> PythonState {
    let t = match target {
        Ok(t) => t,
        Err(e) => {
            return PythonState {
                stacks: Vec::new(),
                problem: Some(e.clone()),
                note: Default::default(),
                version: String::new(),
                names: Vec::new(),
                gil: None,
                by_tid: false,
            }
        }
    };
    let (stacks, problem, note) =
        decode_python(mem, &t.py, &t.version, on_c_stack, options.layout_table.as_deref());
    let types = values::types_from(symbol);
    let names: Vec<(u64, String)> =
        t.py.interpreters.iter().flat_map(|&i| python_thread_names(mem, &t.layout, &types, i)).collect();
    let gil = t.py.interpreters.first().and_then(|&i| walk::gil_holder(mem, &t.layout, t.py.runtime, i));
    let version = full_version(mem, symbol("Py_Version"), &t.version);
    PythonState {
        stacks,
        problem,
        note,
        version,
        names,
        gil,
        by_tid: t.layout.tstate_native_thread_id.is_some(),
    }
}

impl PythonState {
    /// "3.X" made "3.X.Y" from the version string in the interpreter's file `data` (≤3.10
    /// has no `Py_Version`).
    pub(crate) fn complete_version(&mut self, data: &[u8]) {
        if self.version.matches('.').count() != 1 {
            return;
        }
        let minor = self.version.strip_prefix("3.").and_then(|m| m.parse().ok());
        if let Some(micro) = minor.and_then(|m| modfiles::micro_version_in(data, m)) {
            self.version = format!("{}.{micro}", self.version);
        }
    }

    /// The Python stack of OS thread `tid`, whose pthread_t is `pthread` when known
    /// (≤3.10 thread states record only that).
    pub(crate) fn stack_of(&self, tid: u32, pthread: Option<u64>) -> Option<PyThreadStack> {
        let found = self.stacks.iter().find(|s| {
            if self.by_tid {
                s.native_thread_id == Some(u64::from(tid))
            } else {
                pthread.is_some() && s.thread_id == pthread
            }
        });
        found.cloned()
    }

    /// The pthread_t values the ≤3.10 thread states record (empty for 3.11+).
    pub(crate) fn pthreads(&self) -> Vec<u64> {
        if self.by_tid {
            return Vec::new();
        }
        self.stacks.iter().filter_map(|s| s.thread_id).collect()
    }

    /// OS thread `tid` (named `os_name`) with its Python stack `py` and native stack.
    pub(crate) fn thread(
        &self,
        tid: u32,
        os_name: Option<String>,
        py: Option<PyThreadStack>,
        native: unwind::NativeStack,
    ) -> Thread {
        let python_name = py
            .as_ref()
            .and_then(|p| p.thread_id)
            .and_then(|id| self.names.iter().find(|(i, _)| *i == id))
            .map(|(_, n)| n.clone());
        Thread {
            tid,
            name: os_name,
            python_name,
            holds_gil: py.as_ref().is_some_and(|p| Some(p.tstate) == self.gil),
            python: py.as_ref().map(|p| p.frames.clone()).unwrap_or_default(),
            python_problem: py.as_ref().and_then(|p| p.problem.clone()),
            python_calls: py.and_then(|p| p.eval_calls),
            native: native.frames,
            native_stopped: native.stopped,
            native_gap: native.gap,
        }
    }
}
