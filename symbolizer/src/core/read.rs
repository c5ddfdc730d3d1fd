//! Reading an x86-64 Linux ELF core (the kernel's, systemd-coredump's, gcore's): its
//! PT_LOAD segments and the notes `notes.rs` writes — each thread's NT_PRSTATUS, the
//! NT_SIGINFO of the signal, NT_FILE's file mappings, NT_PRPSINFO and NT_AUXV. Every field is
//! read with bounds checks: a truncated or corrupt core gives what can be read, never a panic.

use super::notes::{NT_AUXV, NT_FILE, NT_PRPSINFO, NT_PRSTATUS, NT_SIGINFO};

const ET_CORE: u16 = 4;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// `pr_reg` in `elf_prstatus`, and where rip, rsp, rbp and fs_base are in it.
const PRSTATUS_REG: usize = 112;
const REG_RBP: usize = 4;
const REG_RIP: usize = 16;
const REG_RSP: usize = 19;
const REG_FS_BASE: usize = 21;
/// Program headers and notes read at most (a corrupt header may claim millions).
const MAX_PHDRS: usize = 1 << 16;
const MAX_NOTES: usize = 1 << 16;

/// One PT_LOAD segment: `memsz` bytes at `vaddr`, of which the first `filesz` are in the
/// core at `offset` (the kernel leaves out what its coredump_filter excludes: filesz 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub flags: u32,
}

/// One thread's NT_PRSTATUS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreThread {
    pub tid: u32,
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
    /// The thread pointer: `pthread_self()` on glibc, how CPython ≤3.10 names the thread.
    pub fs_base: u64,
    /// `pr_cursig`: the signal being delivered to it (the crashing thread's).
    pub signal: u16,
}

/// NT_SIGINFO: the signal that ended the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    pub signo: i32,
    pub code: i32,
    pub addr: u64,
}

/// One NT_FILE entry: `[start, end)` maps `path` from byte `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMap {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub path: String,
}

/// What a core says.
#[derive(Clone, Debug, Default)]
pub struct CoreFile {
    /// Sorted by address.
    pub loads: Vec<Load>,
    /// In the core's order: the crashing thread first (the kernel writes it first).
    pub threads: Vec<CoreThread>,
    pub siginfo: Option<SigInfo>,
    pub files: Vec<FileMap>,
    /// NT_PRPSINFO: the process id, its `comm` and the start of its command line.
    pub pid: Option<u32>,
    pub program_name: Option<String>,
    pub args: Option<String>,
    /// NT_AUXV's (type, value) pairs.
    pub auxv: Vec<(u64, u64)>,
    /// Parts of the core that could not be read (a truncated file).
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("not an ELF file")]
    NotElf,
    #[error(
        "an ELF file, but not a core (its type is {0}; give a core file, or the minidump \
         crashcatch wrote)"
    )]
    NotCore(u16),
    #[error("a core of another architecture (ELF machine {0}): only x86-64 cores are read")]
    Machine(u16),
    #[error(
        "the core has no thread (no NT_PRSTATUS note): it is truncated, or was not written by \
         the Linux kernel, systemd-coredump or gcore"
    )]
    NoThreads,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Whether `bytes` start like an ELF file (any type).
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// A NUL-terminated string in a fixed field.
fn fixed_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl CoreFile {
    pub fn parse(bytes: &[u8]) -> Result<CoreFile, ReadError> {
        if !is_elf(bytes) || bytes.get(4) != Some(&2) {
            return Err(ReadError::NotElf);
        }
        let kind = u16_at(bytes, 16).ok_or(ReadError::NotElf)?;
        if kind != ET_CORE {
            return Err(ReadError::NotCore(kind));
        }
        let machine = u16_at(bytes, 18).ok_or(ReadError::NotElf)?;
        if machine != EM_X86_64 {
            return Err(ReadError::Machine(machine));
        }
        let mut core = CoreFile::default();
        let phoff = u64_at(bytes, 32).unwrap_or(0) as usize;
        let phentsize = u16_at(bytes, 54).unwrap_or(0) as usize;
        let mut phnum = u16_at(bytes, 56).unwrap_or(0) as usize;
        // PN_XNUM: more than 65534 headers, the count is in section header 0's sh_info.
        if phnum == 0xffff {
            let shoff = u64_at(bytes, 40).unwrap_or(0) as usize;
            phnum = shoff.checked_add(44).and_then(|at| u32_at(bytes, at)).unwrap_or(0) as usize;
        }
        let mut notes = Vec::new();
        for i in 0..phnum.min(MAX_PHDRS) {
            let Some(h) = i.checked_mul(phentsize).and_then(|o| o.checked_add(phoff)) else { break };
            // A header near the end of the address space (a corrupt e_phoff) reads as cut.
            let u32_field = |off: usize| h.checked_add(off).and_then(|at| u32_at(bytes, at));
            let u64_field = |off: usize| h.checked_add(off).and_then(|at| u64_at(bytes, at));
            let (Some(kind), Some(flags), Some(offset), Some(vaddr), Some(filesz), Some(memsz)) =
                (u32_field(0), u32_field(4), u64_field(8), u64_field(16), u64_field(32), u64_field(40))
            else {
                core.problems.push(format!("the core is cut inside its program headers (at header {i})"));
                break;
            };
            match kind {
                PT_LOAD => core.loads.push(Load { vaddr, memsz, offset, filesz, flags }),
                PT_NOTE => notes.push((offset, filesz)),
                _ => {}
            }
        }
        core.loads.sort_by_key(|l| l.vaddr);
        let cut =
            core.loads.iter().filter(|l| l.offset.saturating_add(l.filesz) > bytes.len() as u64).count();
        if cut > 0 {
            core.problems.push(format!(
                "the core is truncated: {cut} of its {} memory segments are cut or missing",
                core.loads.len()
            ));
        }
        for (offset, size) in notes {
            let start = (offset as usize).min(bytes.len());
            let end = (offset.saturating_add(size) as usize).min(bytes.len());
            if end - start < size as usize {
                core.problems.push("the core is truncated inside its notes".into());
            }
            core.read_notes(&bytes[start..end]);
        }
        if core.threads.is_empty() {
            return Err(ReadError::NoThreads);
        }
        Ok(core)
    }

    fn read_notes(&mut self, b: &[u8]) {
        let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
        let mut at = 0usize;
        for _ in 0..MAX_NOTES {
            let (Some(namesz), Some(descsz), Some(kind)) =
                (u32_at(b, at), u32_at(b, at + 4), u32_at(b, at + 8))
            else {
                return;
            };
            let Some(desc_at) = align4(namesz as usize).and_then(|n| n.checked_add(at + 12)) else { return };
            let Some(end) = align4(descsz as usize).and_then(|n| n.checked_add(desc_at)) else { return };
            let Some(desc) = b.get(desc_at..desc_at.saturating_add(descsz as usize)) else { return };
            self.note(kind, desc);
            at = end;
        }
    }

    fn note(&mut self, kind: u32, d: &[u8]) {
        let reg = |i: usize| u64_at(d, PRSTATUS_REG + 8 * i);
        match kind {
            NT_PRSTATUS => {
                let (Some(tid), Some(rip), Some(rsp)) = (u32_at(d, 32), reg(REG_RIP), reg(REG_RSP)) else {
                    return;
                };
                self.threads.push(CoreThread {
                    tid,
                    rip,
                    rsp,
                    rbp: reg(REG_RBP).unwrap_or(0),
                    fs_base: reg(REG_FS_BASE).unwrap_or(0),
                    signal: u16_at(d, 12).unwrap_or(0),
                });
            }
            NT_SIGINFO => {
                if let (Some(signo), Some(code)) = (u32_at(d, 0), u32_at(d, 8)) {
                    let addr = u64_at(d, 16).unwrap_or(0);
                    self.siginfo = Some(SigInfo { signo: signo as i32, code: code as i32, addr });
                }
            }
            NT_PRPSINFO => {
                self.pid = u32_at(d, 24);
                self.program_name = d.get(40..56).map(fixed_str);
                self.args = d.get(56..136).map(fixed_str);
            }
            NT_AUXV => {
                self.auxv = d.chunks_exact(16).filter_map(|p| Some((u64_at(p, 0)?, u64_at(p, 8)?))).collect();
            }
            NT_FILE => self.files = file_table(d),
            _ => {}
        }
    }

    /// The PT_LOAD segment holding `addr`.
    pub fn load_at(&self, addr: u64) -> Option<&Load> {
        let after = self.loads.partition_point(|l| l.vaddr <= addr);
        let l = self.loads.get(after.checked_sub(1)?)?;
        (addr - l.vaddr < l.memsz).then_some(l)
    }

    /// The NT_FILE mapping holding `addr`.
    pub fn file_at(&self, addr: u64) -> Option<&FileMap> {
        self.files.iter().find(|f| f.start <= addr && addr < f.end)
    }

    /// An auxiliary vector entry (AT_PHDR = 3, AT_ENTRY = 9…).
    pub fn aux(&self, kind: u64) -> Option<u64> {
        self.auxv.iter().find(|(k, _)| *k == kind).map(|&(_, v)| v)
    }
}

/// NT_FILE: count, page size, `count` × (start, end, page offset), then `count` paths.
fn file_table(d: &[u8]) -> Vec<FileMap> {
    let (Some(count), Some(page)) = (u64_at(d, 0), u64_at(d, 8)) else { return Vec::new() };
    let count = (count as usize).min(d.len() / 24);
    let mut paths = d.get(16 + 24 * count..).unwrap_or(&[]).split(|&c| c == 0);
    (0..count)
        .filter_map(|i| {
            let e = 16 + 24 * i;
            let path = paths.next()?;
            Some(FileMap {
                start: u64_at(d, e)?,
                end: u64_at(d, e + 8)?,
                offset: u64_at(d, e + 16)?.checked_mul(page)?,
                path: String::from_utf8_lossy(path).into_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::layout::Segment;
    use super::super::notes::{
        file_table as write_files, prstatus, siginfo, FileMapping, Notes, ThreadStatus,
    };
    use super::super::writer;
    use super::*;
    use minidump::format::CONTEXT_AMD64;

    /// A core made by `crashcatch core`'s writer: the reader must read back what it wrote.
    fn core_bytes() -> Vec<u8> {
        let mut notes = Notes::default();
        for (tid, signal, rip) in [(7u32, 11u32, 0x1000u64), (8, 0, 0x2000)] {
            let ctx = CONTEXT_AMD64 { rip, rsp: 0x7000, rbp: 0x7100, ..Default::default() };
            let status = ThreadStatus { tid, signal, ppid: 1, pgrp: 0, sid: 0, fs_base: 0x99 + tid as u64 };
            notes.add(NT_PRSTATUS, &prstatus(&status, &ctx, false));
        }
        notes.add(NT_SIGINFO, &siginfo(11, 1, 0xdead));
        let maps = [FileMapping { start: 0x1000, end: 0x3000, offset: 0x2000, path: b"/usr/bin/python3.12" }];
        notes.add(NT_FILE, &write_files(&maps));
        let data = vec![0xabu8; 0x100];
        let segments = [Segment { addr: 0x7000, data: data.into(), flags: 6 }];
        let mut out = Vec::new();
        writer::write(&mut out, notes.bytes(), &segments).unwrap();
        out
    }

    #[test]
    fn a_written_core_reads_back() {
        let core = CoreFile::parse(&core_bytes()).unwrap();
        assert_eq!(core.threads.len(), 2);
        let t = core.threads[0];
        assert_eq!((t.tid, t.rip, t.rsp, t.rbp, t.fs_base, t.signal), (7, 0x1000, 0x7000, 0x7100, 0xa0, 11));
        assert_eq!(core.siginfo, Some(SigInfo { signo: 11, code: 1, addr: 0xdead }));
        let f = &core.files[0];
        assert_eq!(
            (f.start, f.end, f.offset, f.path.as_str()),
            (0x1000, 0x3000, 0x2000, "/usr/bin/python3.12")
        );
        let l = core.load_at(0x7010).unwrap();
        assert_eq!((l.vaddr, l.filesz, l.flags), (0x7000, 0x100, 6));
        assert!(core.load_at(0x8000).is_none());
        assert!(core.problems.is_empty());
    }

    #[test]
    fn bad_and_cut_cores_give_errors_or_problems_never_panics() {
        let bytes = core_bytes();
        assert_eq!(CoreFile::parse(b"MDMP").unwrap_err(), ReadError::NotElf);
        let mut exe = bytes.clone();
        exe[16] = 3; // ET_DYN
        assert_eq!(CoreFile::parse(&exe).unwrap_err(), ReadError::NotCore(3));
        let mut arm = bytes.clone();
        arm[18] = 183;
        assert_eq!(CoreFile::parse(&arm).unwrap_err(), ReadError::Machine(183));
        // Every prefix: an error or a core with problems, never a panic.
        for n in 0..bytes.len() {
            if let Ok(core) = CoreFile::parse(&bytes[..n]) {
                assert!(!core.problems.is_empty() || n == bytes.len(), "{n}");
            }
        }
    }
}
