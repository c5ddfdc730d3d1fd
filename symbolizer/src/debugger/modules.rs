//! The target's loaded modules, found as gdb finds them: the program headers the auxv
//! points at (AT_PHDR) → PT_DYNAMIC → DT_DEBUG → `r_debug` → the `link_map` list.

use crate::link_map;
use crate::native::LoadedModule;
use pylayout::Memory;

// ELF constants (the `elf.h` values).
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_NOTE: u32 = 4;
const PT_PHDR: u32 = 6;
const NT_GNU_BUILD_ID: u32 = 3;

/// Modules listed at most (a corrupt or cyclic list ends here).
const MAX_MODULES: usize = 4096;
/// Bytes of a module's path read at most.
const MAX_PATH: usize = 4096;

/// What gdb tells of the program: `info auxv`'s AT_PHDR and AT_PHNUM, and its file.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub phdr: u64,
    pub phnum: u64,
    pub path: String,
}

/// One program header, as the loaded image has it.
#[derive(Clone, Copy)]
struct Phdr {
    kind: u32,
    vaddr: u64,
    memsz: u64,
}

fn phdrs(mem: &dyn Memory, at: u64, count: u64) -> Vec<Phdr> {
    (0..count.min(256))
        .filter_map(|i| {
            let h = at.checked_add(i * 56)?;
            Some(Phdr { kind: mem.read_u32(h)?, vaddr: mem.read_u64(h + 16)?, memsz: mem.read_u64(h + 40)? })
        })
        .collect()
}

/// The image a module's loaded program headers describe: (start, size) of its PT_LOAD
/// segments, and the build id of its PT_NOTE segments, with `bias` the load bias.
fn image(mem: &dyn Memory, headers: &[Phdr], bias: u64) -> (u64, u64, Option<String>) {
    let loads = headers.iter().filter(|h| h.kind == PT_LOAD);
    let lo = loads.clone().map(|h| h.vaddr).min().unwrap_or(0);
    let hi = loads.map(|h| h.vaddr.saturating_add(h.memsz)).max().unwrap_or(0);
    let build_id = headers
        .iter()
        .filter(|h| h.kind == PT_NOTE)
        .find_map(|h| note_build_id(mem, bias.wrapping_add(h.vaddr), h.memsz.min(4096)));
    (bias.wrapping_add(lo) & !0xfff, hi.saturating_sub(lo & !0xfff), build_id)
}

/// The NT_GNU_BUILD_ID note in the loaded note segment at `addr`.
fn note_build_id(mem: &dyn Memory, addr: u64, size: u64) -> Option<String> {
    let mut bytes = vec![0u8; size as usize];
    if !mem.read(addr, &mut bytes) {
        return None;
    }
    let mut at = 0usize;
    let align4 = |n: usize| (n + 3) & !3;
    while at + 12 <= bytes.len() {
        let word = |o: usize| u32::from_le_bytes(bytes[at + o..at + o + 4].try_into().unwrap_or_default());
        let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
        let name_at = at + 12;
        let desc_at = name_at.checked_add(align4(namesz))?;
        let end = desc_at.checked_add(align4(descsz))?;
        if end > bytes.len() + 3 {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && bytes.get(name_at..name_at + namesz)? == b"GNU\0" {
            return Some(crate::elf::hex(bytes.get(desc_at..desc_at + descsz)?));
        }
        at = end;
    }
    None
}

/// The module at load bias `bias` whose ELF header is mapped at `base`.
fn module_at(mem: &dyn Memory, path: String, bias: u64, elf_header: u64) -> Option<LoadedModule> {
    let phoff = mem.read_u64(elf_header + 32)?;
    let phnum = mem.read_u16(elf_header + 56)? as u64;
    let headers = phdrs(mem, elf_header.checked_add(phoff)?, phnum);
    let (base, size, build_id) = image(mem, &headers, bias);
    Some(LoadedModule { path, base, size, build_id })
}

/// The module whose file's start (its ELF header) is mapped at `header`, as a core's
/// NT_FILE shows it: the load bias is where the lowest PT_LOAD's page went.
pub(crate) fn mapped_at(mem: &dyn Memory, path: String, header: u64) -> Option<LoadedModule> {
    let mut magic = [0u8; 4];
    if !mem.read(header, &mut magic) || &magic != b"\x7fELF" {
        return None;
    }
    let phoff = mem.read_u64(header + 32)?;
    let phnum = mem.read_u16(header + 56)? as u64;
    let headers = phdrs(mem, header.checked_add(phoff)?, phnum);
    let lowest = headers.iter().filter(|h| h.kind == PT_LOAD).map(|h| h.vaddr).min()?;
    module_at(mem, path, header.wrapping_sub(lowest & !0xfff), header)
}

/// Every loaded module, the program first. Without a readable `r_debug` (a static program,
/// a process stopped before the dynamic loader ran), only the program.
pub fn loaded(mem: &dyn Memory, program: &Program) -> Vec<LoadedModule> {
    let headers = phdrs(mem, program.phdr, program.phnum);
    let Some(phdr_self) = headers.iter().find(|h| h.kind == PT_PHDR) else {
        return Vec::new();
    };
    let bias = program.phdr.wrapping_sub(phdr_self.vaddr);
    let (base, size, build_id) = image(mem, &headers, bias);
    let mut found = vec![LoadedModule { path: program.path.clone(), base, size, build_id }];
    let Some(dynamic) = headers.iter().find(|h| h.kind == PT_DYNAMIC) else { return found };
    let Some(r_debug) = link_map::r_debug(mem, bias.wrapping_add(dynamic.vaddr)) else { return found };
    for link in link_map::links(mem, r_debug, MAX_MODULES).0 {
        let path = c_string(mem, link.l_name);
        // The program is listed first with an empty name; the vDSO by a pseudo name.
        if path.starts_with('/') {
            // A library's first PT_LOAD maps the file's start at address 0: its ELF header
            // is at the load bias.
            found.extend(module_at(mem, path, link.l_addr, link.l_addr));
        }
    }
    found
}

fn c_string(mem: &dyn Memory, addr: u64) -> String {
    let mut out = Vec::new();
    let mut chunk = [0u8; 64];
    while addr != 0 && out.len() < MAX_PATH {
        let at = addr + out.len() as u64;
        // A short string may end near the end of its mapping: read byte by byte there.
        let n = if mem.read(at, &mut chunk) { chunk.len() } else { mem.read(at, &mut chunk[..1]) as usize };
        let part = &chunk[..n];
        match part.iter().position(|&b| b == 0) {
            Some(end) => {
                out.extend_from_slice(&part[..end]);
                break;
            }
            None if n == 0 => break,
            None => out.extend_from_slice(part),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory holding `bytes` at `base`.
    struct At(u64, Vec<u8>);
    impl Memory for At {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            let Some(off) = addr.checked_sub(self.0).map(|o| o as usize) else { return false };
            match self.1.get(off..off + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        for word in [name.len() as u32, desc.len() as u32, kind] {
            n.extend_from_slice(&word.to_le_bytes());
        }
        for part in [name, desc] {
            n.extend_from_slice(part);
            n.resize(n.len().next_multiple_of(4), 0);
        }
        n
    }

    #[test]
    fn the_build_id_note_is_found_after_other_notes() {
        let mut segment = note(b"GNU\0", 1, &[0; 16]); // NT_GNU_ABI_TAG
        segment.extend(note(b"GNU\0", NT_GNU_BUILD_ID, &[0xde, 0xad, 0xbe, 0xef, 0x01]));
        let mem = At(0x1000, segment.clone());
        assert_eq!(note_build_id(&mem, 0x1000, segment.len() as u64).as_deref(), Some("deadbeef01"));
        // Another vendor's note of the same type is not a build id; a cut segment has none.
        let other = note(b"XYZ\0", NT_GNU_BUILD_ID, &[1, 2]);
        assert_eq!(note_build_id(&At(0, other.clone()), 0, other.len() as u64), None);
        assert_eq!(note_build_id(&mem, 0x1000, 8), None);
    }
}
