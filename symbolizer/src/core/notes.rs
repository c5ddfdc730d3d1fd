//! The PT_NOTE of an x86-64 Linux core: the kernel's structures (`elf_prstatus`,
//! `elf_prpsinfo`, `siginfo_t`, the NT_FILE table), byte for byte as
//! `fs/binfmt_elf.c` writes them.

use minidump::format::CONTEXT_AMD64;

pub const NT_PRSTATUS: u32 = 1;
pub const NT_FPREGSET: u32 = 2;
pub const NT_PRPSINFO: u32 = 3;
pub const NT_AUXV: u32 = 6;
pub const NT_SIGINFO: u32 = 0x5349_4749;
pub const NT_FILE: u32 = 0x4649_4c45;

/// `sizeof(struct elf_prstatus)` on x86-64; `pr_reg` (27 registers) starts at 112.
const PRSTATUS_SIZE: usize = 336;
const PRSTATUS_REG: usize = 112;
/// `sizeof(struct elf_prpsinfo)` on x86-64.
const PRPSINFO_SIZE: usize = 136;
const SIGINFO_SIZE: usize = 128;

/// The notes, in order, encoded as the kernel does (name "CORE", 4-byte padding).
#[derive(Default)]
pub struct Notes(Vec<u8>);

impl Notes {
    pub fn add(&mut self, kind: u32, desc: &[u8]) {
        let name = b"CORE\0";
        self.0.extend_from_slice(&(name.len() as u32).to_le_bytes());
        self.0.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        self.0.extend_from_slice(&kind.to_le_bytes());
        self.0.extend_from_slice(name);
        pad4(&mut self.0);
        self.0.extend_from_slice(desc);
        pad4(&mut self.0);
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

fn pad4(v: &mut Vec<u8>) {
    v.resize(v.len().next_multiple_of(4), 0);
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// What a thread's NT_PRSTATUS says besides its registers.
pub struct ThreadStatus {
    pub tid: u32,
    /// The signal that killed the process, on the crashing thread only (0 elsewhere).
    pub signal: u32,
    pub ppid: u32,
    pub pgrp: u32,
    pub sid: u32,
    /// The thread pointer (FS base), which the minidump context does not hold: 0 if unknown.
    pub fs_base: u64,
}

/// `struct elf_prstatus` with `pr_reg` in `user_regs_struct` order.
pub fn prstatus(status: &ThreadStatus, ctx: &CONTEXT_AMD64, has_fpregs: bool) -> Vec<u8> {
    let mut b = vec![0u8; PRSTATUS_SIZE];
    put(&mut b, 0, &status.signal.to_le_bytes()); // pr_info.si_signo
    put(&mut b, 12, &(status.signal as u16).to_le_bytes()); // pr_cursig
    put(&mut b, 32, &status.tid.to_le_bytes()); // pr_pid
    put(&mut b, 36, &status.ppid.to_le_bytes());
    put(&mut b, 40, &status.pgrp.to_le_bytes());
    put(&mut b, 44, &status.sid.to_le_bytes());
    let regs: [u64; 27] = [
        ctx.r15,
        ctx.r14,
        ctx.r13,
        ctx.r12,
        ctx.rbp,
        ctx.rbx,
        ctx.r11,
        ctx.r10,
        ctx.r9,
        ctx.r8,
        ctx.rax,
        ctx.rcx,
        ctx.rdx,
        ctx.rsi,
        ctx.rdi,
        u64::MAX, // orig_rax: not recorded; -1 is "not in a system call"
        ctx.rip,
        ctx.cs.into(),
        ctx.eflags.into(),
        ctx.rsp,
        ctx.ss.into(),
        status.fs_base,
        0, // gs_base
        ctx.ds.into(),
        ctx.es.into(),
        ctx.fs.into(),
        ctx.gs.into(),
    ];
    for (i, r) in regs.iter().enumerate() {
        put(&mut b, PRSTATUS_REG + 8 * i, &r.to_le_bytes());
    }
    put(&mut b, PRSTATUS_REG + 27 * 8, &u32::from(has_fpregs).to_le_bytes()); // pr_fpvalid
    b
}

/// The process as NT_PRPSINFO describes it.
pub struct Process<'a> {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The command's base name (at most 15 bytes are kept, as the kernel's `comm`).
    pub name: &'a [u8],
    /// The arguments, NUL-separated (the kernel keeps the first 80 bytes, spaces between).
    pub args: &'a [u8],
}

pub fn prpsinfo(p: &Process) -> Vec<u8> {
    let mut b = vec![0u8; PRPSINFO_SIZE];
    b[1] = b'R'; // pr_sname: it was running when it crashed
    put(&mut b, 16, &p.uid.to_le_bytes());
    put(&mut b, 20, &p.gid.to_le_bytes());
    put(&mut b, 24, &p.pid.to_le_bytes());
    put(&mut b, 28, &p.ppid.to_le_bytes());
    let name = &p.name[..p.name.len().min(15)];
    put(&mut b, 40, name);
    let args: Vec<u8> =
        p.args.strip_suffix(b"\0").unwrap_or(p.args).iter().map(|&c| if c == 0 { b' ' } else { c }).collect();
    let args = &args[..args.len().min(79)];
    put(&mut b, 56, args);
    b
}

/// `siginfo_t` of a fault: signal, code and (for SIGSEGV, SIGBUS, SIGILL, SIGFPE) address.
pub fn siginfo(signal: u32, code: i32, addr: u64) -> Vec<u8> {
    let mut b = vec![0u8; SIGINFO_SIZE];
    put(&mut b, 0, &signal.to_le_bytes());
    put(&mut b, 8, &code.to_le_bytes());
    put(&mut b, 16, &addr.to_le_bytes());
    b
}

/// One file-backed mapping for NT_FILE.
pub struct FileMapping<'a> {
    pub start: u64,
    pub end: u64,
    /// Offset in the file, in bytes (NT_FILE counts pages).
    pub offset: u64,
    pub path: &'a [u8],
}

/// The NT_FILE table: count, page size, (start, end, page offset) each, then the paths.
pub fn file_table(maps: &[FileMapping]) -> Vec<u8> {
    const PAGE: u64 = 4096;
    let mut b = Vec::new();
    b.extend_from_slice(&(maps.len() as u64).to_le_bytes());
    b.extend_from_slice(&PAGE.to_le_bytes());
    for m in maps {
        for v in [m.start, m.end, m.offset / PAGE] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    for m in maps {
        b.extend_from_slice(m.path);
        b.push(0);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_padded_and_prstatus_puts_registers_where_the_kernel_does() {
        let mut notes = Notes::default();
        notes.add(NT_AUXV, &[1, 2, 3]);
        assert_eq!(notes.bytes().len(), 12 + 8 + 4);
        let ctx = CONTEXT_AMD64 { rip: 0x1122, rsp: 0x3344, r15: 7, ..Default::default() };
        let status = ThreadStatus { tid: 42, signal: 11, ppid: 1, pgrp: 0, sid: 0, fs_base: 0x99 };
        let b = prstatus(&status, &ctx, true);
        let word = |i: usize| {
            u64::from_le_bytes(b[PRSTATUS_REG + 8 * i..PRSTATUS_REG + 8 * i + 8].try_into().unwrap())
        };
        assert_eq!((word(0), word(16), word(19), word(21)), (7, 0x1122, 0x3344, 0x99));
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 42);
        assert_eq!(u16::from_le_bytes(b[12..14].try_into().unwrap()), 11);
        assert_eq!(b[328], 1);
    }

    #[test]
    fn prpsinfo_joins_arguments_with_spaces_and_cuts_them() {
        let long = [b'a'; 200];
        let p = Process {
            pid: 5,
            ppid: 1,
            uid: 0,
            gid: 0,
            name: b"python3.12-with-a-long-name",
            args: b"python\0x.py\0",
        };
        let b = prpsinfo(&p);
        assert_eq!(&b[40..55], b"python3.12-with");
        assert_eq!(b[55], 0);
        assert_eq!(&b[56..67], b"python x.py");
        assert_eq!(b[67], 0);
        let b = prpsinfo(&Process { args: &long, ..p });
        assert_eq!(b[56 + 78], b'a');
        assert_eq!(b[56 + 79], 0);
    }
}
