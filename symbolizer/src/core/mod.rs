//! `crashcatch core`: a minidump as an ELF core file that gdb opens with the program
//! (`gdb /usr/bin/python3.12 FILE`).
//!
//! The core has what the kernel would have written, as far as the dump knows it: an
//! NT_PRSTATUS (+ NT_FPREGSET) per thread, the crashing thread first; NT_PRPSINFO, NT_SIGINFO,
//! NT_AUXV, NT_FILE; one PT_LOAD per memory range of the dump (thread stacks and the Python
//! memory crashcatch adds); and the `r_debug`/`link_map` chain gdb walks to find the shared
//! libraries, rebuilt from the LinuxDsoDebug stream when the dump does not hold it
//! (`link_map`). Memory the dump does not hold is absent: gdb reads file-backed mappings from
//! the files NT_FILE names (as for a kernel core, whose read-only file pages are not dumped
//! either) and anything else as unreadable.
//!
//! Any minidump of an x86-64 Linux process with a thread list is converted; crashcatch's
//! metadata stream is optional (it gives the Python threads' thread pointers).

pub mod layout;
pub mod link_map;
pub mod memory;
pub mod notes;
pub mod pages;
pub mod process;
pub mod read;
pub mod writer;

use crate::crash::METADATA_STREAM;
use layout::{Layout, PF_R, PF_W, PF_X};
use minidump::format::{CONTEXT_AMD64, MINIDUMP_STREAM_TYPE as ST};
use minidump::system_info::{Cpu, Os};
use minidump::{
    Minidump, MinidumpException, MinidumpLinuxMaps, MinidumpMemory64List, MinidumpMemoryList,
    MinidumpMiscInfo, MinidumpModuleList, MinidumpRawContext, MinidumpSystemInfo, MinidumpThreadList, Module,
};
use notes::Notes;
use std::path::{Path, PathBuf};

/// Module files opened at most (a process maps a few hundred; a damaged dump may list
/// millions, each a file to open and parse).
pub const MAX_MODULE_FILES: usize = 4096;

/// `CONTEXT_AMD64 | CONTEXT_FLOATING_POINT`'s bit: the FXSAVE area is valid.
const CONTEXT_FLOATING_POINT: u32 = 0x8;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    BadDump(PathBuf, String),
    #[error("cannot write {0}: {1} (choose another -o path)")]
    Write(PathBuf, std::io::Error),
}

/// A converted dump, ready to write.
pub struct Core<'a> {
    notes: Notes,
    layout: Layout<'a>,
    pub threads: usize,
    /// What the core lacks, for the user (no library chain, threads without registers).
    pub warnings: Vec<String>,
    /// The executable, as the dump names it (for the `gdb PROGRAM CORE` hint).
    pub program: Option<String>,
}

impl<'a> Core<'a> {
    /// Converts the dump's bytes. The error says what is missing or damaged.
    pub fn from_dump(bytes: &'a [u8]) -> Result<Core<'a>, String> {
        let dump = Minidump::read(bytes).map_err(|e| format!("not a minidump ({e})"))?;
        for entry in dump.all_streams() {
            let end = u64::from(entry.location.rva) + u64::from(entry.location.data_size);
            if end > bytes.len() as u64 {
                return Err(format!(
                    "truncated or damaged: stream {:#x} ends at byte {end}, past the end of the file ({} bytes)",
                    entry.stream_type,
                    bytes.len()
                ));
            }
        }
        let system = dump
            .get_stream::<MinidumpSystemInfo>()
            .map_err(|e| format!("no usable system info stream ({e}): cannot tell the CPU"))?;
        if system.cpu != Cpu::X86_64 || system.os != Os::Linux {
            return Err(format!(
                "a dump of a {:?} {:?} process: only x86-64 Linux dumps can become ELF cores",
                system.os, system.cpu
            ));
        }
        let misc = dump.get_stream::<MinidumpMiscInfo>().ok();
        let threads =
            dump.get_stream::<MinidumpThreadList>().map_err(|e| format!("no usable thread list ({e})"))?;
        let exception = dump.get_stream::<MinidumpException>().ok();
        let metadata: serde_json::Value = dump
            .get_raw_stream(METADATA_STREAM)
            .ok()
            .and_then(|raw| serde_json::from_slice(raw).ok())
            .unwrap_or_default();
        let amd64 = |ctx: Option<std::borrow::Cow<'_, minidump::MinidumpContext>>| match ctx?.into_owned().raw
        {
            MinidumpRawContext::Amd64(c) => Some(c),
            _ => None,
        };
        let crashed_tid = exception
            .as_ref()
            .map(|e| e.get_crashing_thread_id())
            .or_else(|| metadata["requesting_tid"].as_u64().map(|t| t as u32));
        let crash_context = exception.as_ref().and_then(|e| amd64(e.context(&system, misc.as_ref())));
        // A signal: minidump-writer records the signal number as the exception code and
        // si_code as its flags; a live dump records DUMP_REQUESTED (no signal).
        let record = exception.as_ref().map(|e| &e.raw.exception_record);
        let record = record.filter(|r| (1..=64).contains(&r.exception_code));
        let signal = record.map_or(0, |r| r.exception_code);
        let siginfo = record.map(|r| notes::siginfo(signal, r.exception_flags as i32, r.exception_address));

        let mut warnings = Vec::new();
        let contexts = thread_contexts(&threads, crashed_tid, crash_context, &mut warnings, |t| {
            amd64(t.context(&system, misc.as_ref()))
        });
        if contexts.is_empty() {
            return Err("no thread with registers: there is nothing for gdb to show".into());
        }

        let ranges = memory_ranges(&dump, bytes)?;
        if ranges.iter().all(|(_, b)| b.is_empty()) {
            return Err("no memory (no stacks): gdb could not unwind any thread".into());
        }
        let mut layout = Layout::from_ranges(ranges);

        let maps = dump.get_stream::<MinidumpLinuxMaps>().ok();
        let modules = dump.get_stream::<MinidumpModuleList>().ok();
        let mut taken: Vec<(u64, u64)> = Vec::new();
        if let Some(maps) = &maps {
            taken.extend(maps.iter().map(|m| m.map.address));
            layout.set_flags(|addr| {
                let m = maps.memory_info_at_address(addr)?;
                let bit = |yes: bool, flag: u32| if yes { flag } else { 0 };
                Some(bit(m.is_readable(), PF_R) | bit(m.is_writable(), PF_W) | bit(m.is_executable(), PF_X))
            });
        }
        if let Some(modules) = &modules {
            taken.extend(
                modules.iter().map(|m| (m.base_address(), m.base_address().saturating_add(m.size()))),
            );
            add_elf_headers(&mut layout, modules);
        }

        let dso = match dump.get_raw_stream(ST::LinuxDsoDebug as u32) {
            Ok(raw) => link_map::DsoDebug::parse(raw, bytes).ok_or("its LinuxDsoDebug stream is damaged"),
            Err(_) => modules
                .as_ref()
                .and_then(|m| dso_from_modules(&dump, m))
                .ok_or("the dump has no LinuxDsoDebug stream, and the executable's file (with the dump's build id) was not found"),
        };
        let linked = dso.and_then(|dso| {
            if link_map::walkable(&layout, dso.dynamic_addr) {
                return Ok(());
            }
            link_map::synthesize(&mut layout, &dso, &taken)
                .map(|_| ())
                .ok_or("its executable's _DYNAMIC has no DT_DEBUG entry")
        });
        if let Err(why) = linked {
            warnings.push(format!("gdb will not find the shared libraries: {why}"));
        }
        // Last: the patched _DYNAMIC entry is a range of its own too.
        if let (Some(maps), Some(modules)) = (&maps, &modules) {
            pages::widen_in_module_files(&mut layout, maps, modules, MAX_MODULE_FILES);
        }

        let process = process::Process::of(&dump, misc.as_ref(), contexts[0].0);
        let mut notes = Notes::default();
        let fs_bases = process::thread_pointers(&metadata);
        for (i, (tid, ctx)) in contexts.iter().enumerate() {
            let status = notes::ThreadStatus {
                tid: *tid,
                signal: if i == 0 { signal } else { 0 },
                ppid: process.ppid,
                pgrp: 0,
                sid: 0,
                fs_base: fs_bases.get(tid).copied().unwrap_or(0),
            };
            let has_fp = ctx.context_flags & CONTEXT_FLOATING_POINT != 0;
            notes.add(notes::NT_PRSTATUS, &notes::prstatus(&status, ctx, has_fp));
            if i == 0 {
                notes.add(notes::NT_PRPSINFO, &notes::prpsinfo(&process.info()));
                if let Some(info) = &siginfo {
                    notes.add(notes::NT_SIGINFO, info);
                }
                if let Ok(auxv) = dump.get_raw_stream(ST::LinuxAuxv as u32) {
                    notes.add(notes::NT_AUXV, auxv);
                }
                if let Some(maps) = &maps {
                    notes.add(notes::NT_FILE, &notes::file_table(&process::file_mappings(maps)));
                }
            }
            if has_fp {
                notes.add(notes::NT_FPREGSET, &ctx.float_save);
            }
        }
        let program = metadata["python"]["executable"]
            .as_str()
            .map(String::from)
            .or_else(|| modules.as_ref()?.main_module().map(|m| m.code_file().into_owned()));
        Ok(Core { notes, layout, threads: contexts.len(), warnings, program })
    }

    /// The core file's bytes, to `out`; returns how many.
    pub fn write(&self, out: &mut impl std::io::Write) -> std::io::Result<u64> {
        writer::write(out, self.notes.bytes(), self.layout.segments())
    }

    /// PT_LOAD segments.
    pub fn segments(&self) -> usize {
        self.layout.segments().len()
    }
}

/// Each thread's registers, once per thread id, the crashing thread's from the exception
/// record (`crash_context`: the fault's, not the signal handler's), and that thread first
/// (gdb takes the first as the one that crashed). Threads without x86-64 registers are left
/// out, with a warning.
fn thread_contexts(
    threads: &MinidumpThreadList,
    crashed_tid: Option<u32>,
    crash_context: Option<CONTEXT_AMD64>,
    warnings: &mut Vec<String>,
    context_of: impl Fn(&minidump::MinidumpThread) -> Option<CONTEXT_AMD64>,
) -> Vec<(u32, CONTEXT_AMD64)> {
    let mut seen = std::collections::HashSet::new();
    let mut contexts = Vec::new();
    for t in &threads.threads {
        let tid = t.raw.thread_id;
        if !seen.insert(tid) {
            continue; // a repeated entry of a damaged dump
        }
        let ctx = match crash_context.as_ref().filter(|_| Some(tid) == crashed_tid) {
            Some(c) => Some(c.clone()),
            None => context_of(t),
        };
        match ctx {
            Some(c) => contexts.push((tid, c)),
            None => {
                warnings.push(format!("thread {tid} has no x86-64 registers in the dump and is left out"))
            }
        }
    }
    if let Some(i) = contexts.iter().position(|(tid, _)| Some(*tid) == crashed_tid) {
        contexts[..=i].rotate_right(1);
    }
    contexts
}

/// Every memory range of both memory lists (a dump may have either or both), as parts of
/// `bytes`; a list that is there but cannot be read is an error.
fn memory_ranges<'a>(dump: &Minidump<&'a [u8]>, bytes: &'a [u8]) -> Result<Vec<(u64, &'a [u8])>, String> {
    let mut ranges = Vec::new();
    if dump.get_raw_stream(ST::MemoryListStream as u32).is_ok() {
        let list =
            dump.get_stream::<MinidumpMemoryList>().map_err(|e| format!("damaged memory list ({e})"))?;
        ranges.extend(list.iter().filter_map(|m| Some((m.base_address, within(bytes, m.bytes)?))));
    }
    if dump.get_raw_stream(ST::Memory64ListStream as u32).is_ok() {
        let list = dump
            .get_stream::<MinidumpMemory64List>()
            .map_err(|e| format!("damaged 64-bit memory list ({e})"))?;
        ranges.extend(list.iter().filter_map(|m| Some((m.base_address, within(bytes, m.bytes)?))));
    }
    Ok(ranges)
}

/// The first page of each module (ELF header, program headers, build-id note), as the
/// kernel writes it into a core: gdb, lldb and debuginfod read a mapping's build id there.
/// The dump rarely holds it; it is taken from the module's file at its recorded path, when
/// that file's build id is the dump's. Bytes the dump holds are kept.
fn add_elf_headers(layout: &mut Layout, modules: &MinidumpModuleList) {
    const PAGE: u64 = 4096;
    for m in modules.iter().take(MAX_MODULE_FILES) {
        let build_id = m.code_identifier().map(|c| c.to_string().to_lowercase());
        let Ok(file) = crate::elf::ElfFile::open_checked(Path::new(&m.name), build_id.as_deref()) else {
            continue;
        };
        let len = PAGE.min(m.size()).min(file.data().len() as u64) as usize;
        layout.fill(m.base_address(), &file.data()[..len], PF_R);
    }
}

/// The loader's state from the module list and the files on disk; the executable is the
/// module holding AT_PHDR (the auxv's), else the first one listed.
fn dso_from_modules<T: std::ops::Deref<Target = [u8]>>(
    dump: &Minidump<T>,
    modules: &MinidumpModuleList,
) -> Option<link_map::DsoDebug> {
    const AT_PHDR: u64 = 3;
    let list: Vec<link_map::Module> = modules
        .iter()
        .take(MAX_MODULE_FILES)
        .map(|m| link_map::Module {
            base: m.base_address(),
            path: &m.name,
            build_id: m.code_identifier().map(|c| c.to_string().to_lowercase()),
        })
        .collect();
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or_default());
    let phdr = dump
        .get_raw_stream(ST::LinuxAuxv as u32)
        .ok()
        .and_then(|auxv| auxv.chunks_exact(16).find(|e| word(&e[..8]) == AT_PHDR).map(|e| word(&e[8..])));
    let executable = phdr
        .and_then(|at| {
            modules.iter().position(|m| at >= m.base_address() && at - m.base_address() < m.size())
        })
        .unwrap_or(0);
    link_map::DsoDebug::from_modules(&list, executable)
}

/// `sub`, a part of `all` that the minidump reader handed out with its own (shorter)
/// lifetime, as a part of `all` again.
fn within<'a>(all: &'a [u8], sub: &[u8]) -> Option<&'a [u8]> {
    let start = (sub.as_ptr() as usize).wrapping_sub(all.as_ptr() as usize);
    all.get(start..start.checked_add(sub.len())?)
}

/// What `convert_file` wrote.
pub struct Summary {
    pub threads: usize,
    pub segments: usize,
    pub bytes: u64,
    pub warnings: Vec<String>,
    pub program: Option<String>,
}

/// Converts the dump at `dump` into a core at `out`. The core is written to a temporary file
/// beside `out` (mode 0600: it holds the process's memory) and renamed into place when
/// complete: a failure never leaves a partial file under `out`'s name.
pub fn convert_file(dump: &Path, out: &Path) -> Result<Summary, CoreError> {
    let bytes = std::fs::read(dump).map_err(|e| CoreError::Read(dump.to_path_buf(), e))?;
    let core = Core::from_dump(&bytes).map_err(|why| CoreError::BadDump(dump.to_path_buf(), why))?;
    let size =
        write_atomically(out, |file| core.write(file)).map_err(|e| CoreError::Write(out.to_path_buf(), e))?;
    let segments = core.segments();
    Ok(Summary {
        threads: core.threads,
        segments,
        bytes: size,
        warnings: core.warnings,
        program: core.program,
    })
}

fn write_atomically(
    out: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<u64>,
) -> std::io::Result<u64> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = out.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".crashcatch-{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
    let written = (|| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &file);
        let n = fill(&mut w)?;
        w.flush()?;
        drop(w);
        file.sync_all()?;
        std::fs::rename(&temp, out)?;
        Ok(n)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}
