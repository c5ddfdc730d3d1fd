//! `crashcatch symbolize --pid PID --nonblocking`: a running process read into the same
//! [`Crash`] a dump gives, without stopping it (no ptrace): memory with process_vm_readv,
//! the threads from /proc/PID/task, each thread's stack and instruction pointers from
//! /proc/PID/task/TID/syscall (the kernel gives them for a thread blocked in a system call;
//! a running thread's registers cannot be read without stopping it), the modules from
//! /proc/PID/maps and their files through /proc/PID/root (the `modfiles` crate), then the
//! Python target and stacks as for a core (`from_core`).
//!
//! The process goes on running while it is read: a thread's stacks may be torn (a frame
//! pushed or popped between two reads), which the output says.

use crate::crash::{Crash, Options, Thread};
use crate::debugger::{modules, target};
use crate::from_core::{python_state, thread_stacks, unwind_all};
use crate::native::{LoadedModule, Modules};
use crate::unwind::{Registers, Space};
use pylayout::Memory;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;

/// The page size of process_vm_readv reads (x86-64).
const PAGE: u64 = 4096;
/// Pages kept at most (64 MiB); beyond, the cache starts again.
const MAX_CACHED_PAGES: usize = 16 * 1024;
/// Module files read at most (a process maps a few hundred).
const MAX_MODULES: usize = 4096;
/// x86-64 glibc's `struct pthread`: the thread's OS id is at this offset from its pthread_t
/// (after the 0x2c0-byte `tcbhead_t` and a two-pointer list head), stable since glibc 2.x.
const GLIBC_PTHREAD_TID: u64 = 0x2d0;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("no process {0}: check the pid (`ps`); it may have exited")]
    NoProcess(i32),
    #[error("cannot read /proc/{0}/maps: {1} (run as the process's user or as root)")]
    Maps(i32, std::io::Error),
    #[error(
        "process {pid} ({name}) is not a Python process: none of its {files} module files defines \
         `_PyRuntime` (CPython 3.9+){program}; for another program use gcore or a debugger"
    )]
    NotPython { pid: i32, name: String, files: usize, program: String },
    #[error("cannot read the memory of process {pid}: {err}{hint}")]
    Memory { pid: i32, err: std::io::Error, hint: String },
    #[error("process {0} exited while it was being read: nothing to show")]
    Exited(i32),
}

/// Another process's memory read with process_vm_readv, a page at a time: the Python
/// structures and stacks are read in many small pieces, mostly from the same few pages.
pub struct ProcessMemory {
    pid: i32,
    pages: RefCell<HashMap<u64, Option<Box<[u8]>>>>,
    /// The errno of the first read that failed, for the error message.
    first_error: Cell<Option<i32>>,
}

impl ProcessMemory {
    pub fn new(pid: i32) -> ProcessMemory {
        ProcessMemory { pid, pages: RefCell::new(HashMap::new()), first_error: Cell::new(None) }
    }

    /// One page from the process (None: not mapped, or not readable).
    fn read_page(&self, page: u64) -> Option<Box<[u8]>> {
        let mut buf = vec![0u8; PAGE as usize].into_boxed_slice();
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: page as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: the iovecs describe `buf` (ours, PAGE bytes) and a remote range the kernel checks.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if n != PAGE as isize {
            if self.first_error.get().is_none() {
                self.first_error.set(std::io::Error::last_os_error().raw_os_error());
            }
            return None;
        }
        Some(buf)
    }
}

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let mut done = 0usize;
        let mut pages = self.pages.borrow_mut();
        while done < buf.len() {
            let Some(at) = addr.checked_add(done as u64) else { return false };
            let page = at & !(PAGE - 1);
            if !pages.contains_key(&page) {
                if pages.len() >= MAX_CACHED_PAGES {
                    pages.clear();
                }
                let read = self.read_page(page);
                pages.insert(page, read);
            }
            let Some(Some(bytes)) = pages.get(&page) else { return false };
            let off = (at - page) as usize;
            let n = (bytes.len() - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&bytes[off..off + n]);
            done += n;
        }
        true
    }
}

/// A thread's stack pointer and instruction pointer from its /proc/PID/task/TID/syscall:
/// "NR ARG1..ARG6 SP PC" in a system call, "-1 SP PC" when blocked outside one, "running"
/// (nothing to read without stopping it).
pub fn syscall_registers(text: &str) -> Option<(u64, u64)> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if !matches!(fields.len(), 3 | 9) {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Some((hex(fields[fields.len() - 2])?, hex(fields[fields.len() - 1])?))
}

/// The process's threads, the main thread first, then by id.
fn thread_ids(pid: i32) -> Result<Vec<u32>, LiveError> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|_| LiveError::NoProcess(pid))?;
    let mut tids: Vec<u32> = entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    tids.sort_unstable_by_key(|&t| (t != pid as u32, t));
    Ok(tids)
}

fn proc_text(pid: i32, tid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/{file}")).ok()
}

/// Process `pid`'s root when it is not ours (a process in a container or a chroot): its
/// files are looked for there first.
fn other_root(pid: i32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let (theirs, ours) = (std::fs::metadata(format!("/proc/{pid}/root")).ok()?, std::fs::metadata("/").ok()?);
    ((theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino())).then(|| format!("/proc/{pid}/root"))
}

/// The modules mapped in the process, the program first, with the build ids and sizes
/// their loaded ELF headers give (else the extent of their mappings). A process with
/// another root has its module paths under that root when the files are there.
fn modules_of(pid: i32, maps: &[modfiles::Mapping], mem: &dyn Memory) -> Vec<LoadedModule> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.display().to_string());
    let root = other_root(pid);
    let mut found: Vec<(&str, LoadedModule)> = Vec::new();
    for m in maps.iter().filter(|m| m.offset == 0 && m.path.starts_with('/')) {
        if found.len() >= MAX_MODULES || found.iter().any(|(p, _)| *p == m.path) {
            continue;
        }
        let inside =
            root.as_ref().map(|r| format!("{r}{}", m.path)).filter(|p| std::path::Path::new(p).is_file());
        let Some(mut module) = modules::mapped_at(mem, inside.unwrap_or_else(|| m.path.clone()), m.start)
        else {
            continue;
        };
        if module.size == 0 {
            let end = maps.iter().filter(|g| g.path == m.path).map(|g| g.end).max().unwrap_or(m.end);
            module.size = end.saturating_sub(module.base);
        }
        found.push((&m.path, module));
    }
    if let Some(i) = found.iter().position(|(p, _)| Some(*p) == exe.as_deref()) {
        let program = found.remove(i);
        found.insert(0, program);
    }
    found.into_iter().map(|(_, m)| m).collect()
}

fn space_of(maps: &[modfiles::Mapping]) -> Space {
    let ranges = |keep: &dyn Fn(&modfiles::Mapping) -> bool| -> Vec<(u64, u64)> {
        maps.iter().filter(|m| keep(m)).map(|m| (m.start, m.end)).collect()
    };
    Space::new(ranges(&|m| m.is_executable()), Some(ranges(&|m| m.is_readable() && m.is_writable())))
}

/// Why a thread has no native stack.
/// Stack slots looked at above the stack pointer for a frame record, and links of the chain
/// checked before one is believed.
const FRAME_SCAN_BYTES: u64 = 16 * 1024;
const FRAME_CHAIN_CHECKED: usize = 2;
/// Frame records tried per thread.
const FRAME_GUESSES: usize = 4;

/// Frame pointers for a thread stopped in a system call, which the kernel does not show:
/// the first [`FRAME_GUESSES`] stack slots above `sp` holding a frame record (the caller's
/// saved rbp, higher on the same stack, then a return address into code) whose chain holds
/// for [`FRAME_CHAIN_CHECKED`] links. Without one the unwind stops at the first frame whose
/// CFA is computed from rbp (code built with frame pointers).
fn guess_frame_pointers(mem: &dyn Memory, space: &Space, sp: u64) -> Vec<u64> {
    let (_, top) = space.stack_of(sp);
    let is_record = |at: u64| -> Option<u64> {
        let next = mem.read_u64(at)?;
        let ret = mem.read_u64(at.checked_add(8)?)?;
        (space.is_code(ret) && (next == 0 || (next > at && next < top))).then_some(next)
    };
    let holds = |start: u64| {
        let mut at = start;
        for _ in 0..FRAME_CHAIN_CHECKED {
            match is_record(at) {
                Some(0) => return true,
                Some(next) => at = next,
                None => return false,
            }
        }
        true
    };
    let end = sp.saturating_add(FRAME_SCAN_BYTES).min(top.saturating_sub(16));
    (sp..end)
        .step_by(8)
        .filter(|&at| is_record(at).is_some_and(|n| n != 0) && holds(at))
        .take(FRAME_GUESSES)
        .collect()
}

const RUNNING: &str = "the thread was running (not blocked in a system call): its registers cannot be read \
                       without stopping it (`crashcatch symbolize --pid PID` without --nonblocking stops it)";

/// Reads process `pid` without stopping it.
pub fn load(pid: i32, options: &Options) -> Result<Crash, LiveError> {
    if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(LiveError::NoProcess(pid));
    }
    let maps_text = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LiveError::NoProcess(pid),
        _ => LiveError::Maps(pid, e),
    })?;
    let maps = modfiles::mappings(&maps_text);
    let name =
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim_end().to_string();
    let files = modfiles::mapped_files(&maps_text);
    let types: Vec<&str> = pylayout::objects::ObjectTypes::SYMBOLS.iter().map(|(_, s)| *s).collect();
    let program_path = std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.display().to_string());
    let python_module =
        modfiles::python_module(&files, Some(pid), &types).ok_or_else(|| LiveError::NotPython {
            pid,
            name: name.clone(),
            files: files.len(),
            program: program_path.as_deref().map(|p| format!("; it runs {p}")).unwrap_or_default(),
        })?;
    let mem = ProcessMemory::new(pid);
    if !mem.read(python_module.get("_PyRuntime").unwrap_or(0), &mut [0u8; 8]) {
        let err = std::io::Error::from_raw_os_error(mem.first_error.get().unwrap_or(libc::EIO));
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Err(LiveError::Exited(pid));
        }
        let hint =
            if err.raw_os_error() == Some(libc::EPERM) { modfiles::ptrace_hint() } else { String::new() };
        return Err(LiveError::Memory { pid, err, hint });
    }
    let symbol = |name: &str| python_module.get(name);
    let target =
        target::discover(&symbol, &mem, Some(&python_module.file.path), options.layout_table.as_deref());

    let listed = modules_of(pid, &maps, &mem);
    // The process's own files: /proc/PID/map_files and /proc/PID/root unless told otherwise.
    let sysroot = options.sysroot.clone().unwrap_or_else(|| format!("/proc/{pid}/root").into());
    let modules = Modules::from_list(&listed, &options.symbol_dirs, Some(&sysroot));
    let space = space_of(&maps);
    let tids = thread_ids(pid)?;
    let registers: Vec<Option<Registers>> = tids
        .iter()
        .map(|&tid| syscall_registers(&proc_text(pid, tid, "syscall")?).map(|(sp, pc)| (pc, sp, 0)))
        .collect();
    let (mut natives, cut) = unwind_all(&modules, &mem, &space, &registers);
    // The kernel gives no rbp: code built with frame pointers (CFA from rbp) stops the unwind.
    // Again with each frame pointer the stack itself suggests; the longest unwind is kept.
    let guesses: Vec<Vec<u64>> = registers
        .iter()
        .map(|r| r.map(|(_, sp, _)| guess_frame_pointers(&mem, &space, sp)).unwrap_or_default())
        .collect();
    for round in 0..FRAME_GUESSES {
        let guessed: Vec<Option<Registers>> =
            registers.iter().zip(&guesses).map(|(r, g)| Some(((*r)?.0, (*r)?.1, *g.get(round)?))).collect();
        if guessed.iter().all(Option::is_none) {
            break;
        }
        let (again, _) = unwind_all(&modules, &mem, &space, &guessed);
        for (native, other) in natives.iter_mut().zip(again) {
            if other.frames.len() > native.frames.len() {
                *native = other;
            }
        }
    }
    for (native, regs) in natives.iter_mut().zip(&registers) {
        if regs.is_none() {
            native.stopped = Some(RUNNING.to_string());
        }
    }
    let stacks_of_threads = thread_stacks(&space, &registers, &natives);
    let on_c_stack = |addr: u64| stacks_of_threads.iter().any(|&(lo, hi)| addr >= lo && addr < hi);
    let mut state = python_state(&mem, &target, &symbol, &on_c_stack, options);
    state.complete_version(&python_module.data);
    // ≤3.10 thread states record the thread's pthread_t, which glibc's struct pthread
    // (at that address) says the OS id of.
    let pthread_tids: Vec<(u64, u32)> = state
        .pthreads()
        .into_iter()
        .filter_map(|p| Some((p, mem.read_u32(p.checked_add(GLIBC_PTHREAD_TID)?)?)))
        .collect();
    let threads: Vec<Thread> = tids
        .iter()
        .zip(natives)
        .map(|(&tid, native)| {
            let pthread = pthread_tids.iter().find(|(_, t)| *t == tid).map(|(p, _)| *p);
            let py = state.stack_of(tid, pthread);
            let os_name = proc_text(pid, tid, "comm").map(|n| n.trim_end().to_string());
            state.thread(tid, os_name, py, native)
        })
        .collect();
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(LiveError::Exited(pid));
    }
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let version = state.version.clone();
    let metadata = json!({
        "kind": "live",
        "signal": 0,
        "pid": pid,
        "python": {"argv": argv, "executable": program_path, "version": version},
    });
    Ok(Crash {
        path: PathBuf::from(format!("/proc/{pid}")),
        input: "process",
        metadata,
        kind: "live".to_string(),
        exits_after_dump: false,
        signal: 0,
        fault_address: 0,
        crashed_tid: None,
        python_version: version,
        threads,
        python_problem: state.problem,
        python_layout: state.note,
        modules_without_symbols: modules.problems(),
        plumbing: modules.plumbing(),
        left_out: cut.into_iter().collect(),
        damaged: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack of 8-byte words from `base`.
    struct Words(u64, Vec<u64>);
    impl Memory for Words {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            let bytes: Vec<u8> = self.1.iter().flat_map(|w| w.to_le_bytes()).collect();
            let Some(off) = addr.checked_sub(self.0).map(|o| o as usize) else { return false };
            let Some(src) = bytes.get(off..off + buf.len()) else { return false };
            buf.copy_from_slice(src);
            true
        }
    }

    #[test]
    fn frame_pointers_are_the_frame_records_whose_chain_holds() {
        let (base, code) = (0x7000u64, 0x1000u64);
        let space = Space::new(vec![(code, code + 0x1000)], Some(vec![(base, base + 0x100)]));
        let slot = |i: u64| base + 8 * i;
        let mut words = vec![0u64; 0x20];
        // A stale pair that looks like a record but whose next link is not one.
        words[1] = slot(4);
        words[2] = code + 0x10;
        // The real chain: slot 6 → slot 10 → slot 14 → end (0), each with a return address.
        for (at, next) in [(6usize, slot(10)), (10, slot(14)), (14, 0)] {
            words[at] = next;
            words[at + 1] = code + 0x20;
        }
        let mem = Words(base, words);
        assert_eq!(guess_frame_pointers(&mem, &space, base), vec![slot(6), slot(10)]);
        // Nothing that looks like a record: no guess.
        let empty = Words(base, vec![0u64; 0x20]);
        assert!(guess_frame_pointers(&empty, &space, base).is_empty());
    }

    #[test]
    fn registers_of_blocked_threads_only() {
        let in_read = "0 0x3 0x7ffd1 0x2 0x0 0x0 0x0 0x7ffc8a3b1e48 0x7f1c2d4e57e2";
        assert_eq!(syscall_registers(in_read), Some((0x7ffc8a3b1e48, 0x7f1c2d4e57e2)));
        assert_eq!(syscall_registers("-1 0x7ffc8a3b1e48 0x401000\n"), Some((0x7ffc8a3b1e48, 0x401000)));
        assert_eq!(syscall_registers("running\n"), None);
        assert_eq!(syscall_registers(""), None);
    }

    #[test]
    fn memory_of_this_process_across_pages() {
        // A buffer spanning a page boundary, read through process_vm_readv of ourselves.
        let data: Vec<u8> = (0..3 * PAGE).map(|i| (i % 251) as u8).collect();
        let mem = ProcessMemory::new(std::process::id() as i32);
        let start = data.as_ptr() as u64 + PAGE - 5;
        let mut buf = [0u8; 10];
        assert!(mem.read(start, &mut buf));
        assert_eq!(&buf[..], &data[(PAGE - 5) as usize..(PAGE + 5) as usize]);
        assert!(!mem.read(8, &mut buf), "page 0 is never mapped");
        assert_eq!(mem.first_error.get(), Some(libc::EFAULT));
    }

    #[test]
    fn a_process_without_python_is_refused() {
        let me = std::process::id() as i32;
        assert!(matches!(load(me, &Options::default()), Err(LiveError::NotPython { .. })));
        assert!(matches!(load(0, &Options::default()), Err(LiveError::NoProcess(0))));
    }
}
