//! The loaded modules of this process, found at crash time without locks or allocation:
//! the dynamic linker's `_r_debug` list gives each module's load bias and name; its ELF
//! program headers, read from memory, give its address ranges, its `.eh_frame_hdr` (for
//! unwinding) and its `.dynsym` (for symbol names).

use super::config::{self, ProcessFacts};
use super::memory::SelfMemory;
use pylayout::Memory;

/// glibc's `struct r_debug`; `r_map` (offset 8) heads the `struct link_map` list, whose
/// entries hold `l_addr` at 0, `l_name` at 8 and `l_next` at 24.
#[repr(C)]
struct RDebug {
    r_version: i32,
    r_map: u64,
}

extern "C" {
    // glibc's debugger interface: the list of loaded objects, maintained by ld.so.
    static _r_debug: RDebug;
}

/// Most program headers a module may have for us to look at it.
const MAX_PHDRS: usize = 32;
/// Most loaded modules walked.
const MAX_MODULES: usize = 4096;

/// One loaded ELF object.
#[derive(Clone, Copy, Debug, Default)]
pub struct Module {
    /// Load bias: runtime address = file virtual address + bias.
    pub bias: u64,
    /// NUL-terminated path (the main program's comes from /proc/self/exe at enable time).
    pub name: u64,
    /// Lowest and highest runtime address of its PT_LOAD segments.
    pub start: u64,
    pub end: u64,
    /// Lowest and highest runtime address of its executable PT_LOAD segments: where a
    /// return address into it may point.
    pub text_start: u64,
    pub text_end: u64,
    /// Runtime address and size of `.eh_frame_hdr`, if any.
    pub eh_frame_hdr: u64,
    pub eh_frame_hdr_len: u64,
    /// End of the PT_LOAD segment holding `.eh_frame_hdr` (bounds `.eh_frame`).
    pub eh_segment_end: u64,
    /// Runtime address of the dynamic section.
    pub dynamic: u64,
}

impl Module {
    /// Whether `addr` lies in one of its executable segments.
    pub fn has_code_at(&self, addr: u64) -> bool {
        addr >= self.text_start && addr < self.text_end
    }
}

/// Finds the module containing `pc`.
pub fn module_for(mem: &SelfMemory, facts: &ProcessFacts, pc: u64) -> Option<Module> {
    let mut found = None;
    for_each_module(mem, facts, &mut |m| {
        if pc >= m.start && pc < m.end {
            found = Some(m);
            false
        } else {
            true
        }
    });
    found
}

/// Calls `f` for each loaded module until it returns `false`.
pub fn for_each_module(mem: &SelfMemory, facts: &ProcessFacts, f: &mut dyn FnMut(Module) -> bool) {
    // `_r_debug` is a static owned by ld.so for the whole process lifetime; we only take its
    // address and read it through the fault-proof SelfMemory.
    let rdebug = core::ptr::addr_of!(_r_debug) as u64;
    let Some(mut lm) = mem.read_u64(rdebug + 8) else {
        return;
    };
    let mut first = true;
    let mut n = 0;
    while lm != 0 && n < MAX_MODULES {
        let (Some(l_addr), Some(l_name), Some(next)) =
            (mem.read_u64(lm), mem.read_u64(lm + 8), mem.read_u64(lm + 24))
        else {
            return;
        };
        let module = if first {
            describe(mem, l_addr, facts.exe_phdr, facts.exe_phnum, config::exe_path_ptr())
        } else {
            elf_header_phdrs(mem, l_addr)
                .and_then(|(phdr, phnum)| describe(mem, l_addr, phdr, phnum, l_name))
                // The vDSO's header need not sit at its bias; the aux vector says where it is.
                .or_else(|| {
                    let (phdr, phnum) = elf_header_phdrs(mem, facts.vdso_ehdr)?;
                    let bias = facts.vdso_ehdr.wrapping_sub(first_load_vaddr(mem, phdr, phnum)?);
                    describe(mem, bias, phdr, phnum, l_name)
                })
        };
        first = false;
        if let Some(m) = module {
            if !f(m) {
                return;
            }
        }
        lm = next;
        n += 1;
    }
}

/// (address of program headers, count) of the ELF image whose header is at `ehdr`.
fn elf_header_phdrs(mem: &SelfMemory, ehdr: u64) -> Option<(u64, u16)> {
    let mut h = [0u8; 64];
    if ehdr == 0 || !mem.read(ehdr, &mut h) || h[..4] != *b"\x7fELF" || h[4] != 2 {
        return None;
    }
    let phoff = u64::from_le_bytes(h[32..40].try_into().ok()?);
    let phnum = u16::from_le_bytes(h[56..58].try_into().ok()?);
    Some((ehdr.checked_add(phoff)?, phnum))
}

fn first_load_vaddr(mem: &SelfMemory, phdr: u64, phnum: u16) -> Option<u64> {
    for i in 0..(phnum as usize).min(MAX_PHDRS) {
        let p = phdr + (i as u64) * 56;
        if mem.read_u32(p)? == 1 {
            return mem.read_u64(p + 16);
        }
    }
    None
}

fn describe(mem: &SelfMemory, bias: u64, phdr: u64, phnum: u16, name: u64) -> Option<Module> {
    let mut m = Module { bias, name, start: u64::MAX, text_start: u64::MAX, ..Module::default() };
    let mut loads = [(0u64, 0u64); MAX_PHDRS];
    let mut nloads = 0;
    for i in 0..(phnum as usize).min(MAX_PHDRS) {
        let mut p = [0u8; 56];
        if !mem.read(phdr + (i as u64) * 56, &mut p) {
            return None;
        }
        let word = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().unwrap_or([0; 8]));
        let p_type = u32::from_le_bytes(p[0..4].try_into().unwrap_or([0; 4]));
        let (vaddr, memsz) = (bias.wrapping_add(word(16)), word(40));
        match p_type {
            libc::PT_LOAD => {
                m.start = m.start.min(vaddr);
                m.end = m.end.max(vaddr.saturating_add(memsz));
                if u32::from_le_bytes(p[4..8].try_into().unwrap_or([0; 4])) & libc::PF_X != 0 {
                    m.text_start = m.text_start.min(vaddr);
                    m.text_end = m.text_end.max(vaddr.saturating_add(memsz));
                }
                if let Some(slot) = loads.get_mut(nloads) {
                    *slot = (vaddr, vaddr.saturating_add(memsz));
                    nloads += 1;
                }
            }
            libc::PT_GNU_EH_FRAME => {
                m.eh_frame_hdr = vaddr;
                m.eh_frame_hdr_len = memsz;
            }
            libc::PT_DYNAMIC => m.dynamic = vaddr,
            _ => {}
        }
    }
    if m.start >= m.end {
        return None;
    }
    if let Some(&(_, end)) = loads[..nloads].iter().find(|(s, e)| m.eh_frame_hdr >= *s && m.eh_frame_hdr < *e)
    {
        m.eh_segment_end = end;
    }
    Some(m)
}
