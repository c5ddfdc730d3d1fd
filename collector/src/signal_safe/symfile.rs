//! Function names from a module's on-disk `.symtab` (static functions are there, not in the
//! in-memory `.dynsym`), read with `open`/`pread` into small stack buffers: no mapping that
//! could fault, no allocation. The file is used only if its notes (build id) match the
//! loaded image's.

use super::elf::Module;
use super::memory::SelfMemory;
use pylayout::Memory;

/// Symbols scanned per `pread`.
const SYMS_PER_READ: usize = 128;

struct File(i32);

impl File {
    fn open(path: u64) -> Option<File> {
        // SAFETY: `path` points to a NUL-terminated string owned by ld.so or by us.
        let fd = unsafe { libc::open(path as *const libc::c_char, libc::O_RDONLY | libc::O_CLOEXEC) };
        (fd >= 0).then_some(File(fd))
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            // SAFETY: writes at most buf.len() - done bytes into buf.
            let n = unsafe {
                libc::pread(
                    self.0,
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                    (off + done as u64) as i64,
                )
            };
            if n <= 0 {
                return false;
            }
            done += n as usize;
        }
        true
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor we opened.
        unsafe { libc::close(self.0) };
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The function containing `pc` per the module file's `.symtab`: copies its name into
/// `name` and returns (name length, offset of pc from the symbol).
pub fn nearest_symtab(
    mem: &SelfMemory,
    m: &Module,
    path: u64,
    pc: u64,
    name: &mut [u8],
) -> Option<(usize, u64)> {
    let f = File::open(path)?;
    let mut ehdr = [0u8; 64];
    if !f.read_at(0, &mut ehdr) || ehdr[..4] != *b"\x7fELF" || ehdr[4] != 2 {
        return None;
    }
    if !notes_match(mem, m, &f, &ehdr) {
        return None;
    }
    let (shoff, shentsize, shnum) = (u64_at(&ehdr, 40), u16_at(&ehdr, 58) as u64, u16_at(&ehdr, 60) as u64);
    if shentsize != 64 {
        return None;
    }
    // Find SHT_SYMTAB and its string table.
    let mut sh = [0u8; 64];
    let mut symtab = None;
    for i in 0..shnum.min(4096) {
        if !f.read_at(shoff + i * 64, &mut sh) {
            return None;
        }
        if u32_at(&sh, 4) == 2 {
            symtab = Some((u64_at(&sh, 24), u64_at(&sh, 32), u32_at(&sh, 40) as u64));
            break;
        }
    }
    let (sym_off, sym_size, link) = symtab?;
    if !f.read_at(shoff + link * 64, &mut sh) {
        return None;
    }
    let (str_off, str_size) = (u64_at(&sh, 24), u64_at(&sh, 32));
    let target = pc.wrapping_sub(m.bias);
    let mut best: Option<(u64, u32, bool)> = None; // (value, name offset, contains pc)
    let mut buf = [0u8; SYMS_PER_READ * 24];
    let count = sym_size / 24;
    let mut i = 0u64;
    while i < count {
        let n = (count - i).min(SYMS_PER_READ as u64) as usize;
        if !f.read_at(sym_off + i * 24, &mut buf[..n * 24]) {
            return None;
        }
        for s in buf[..n * 24].chunks_exact(24) {
            let (st_name, st_type, shndx) = (u32_at(s, 0), s[4] & 0xf, u16_at(s, 6));
            let (value, size) = (u64_at(s, 8), u64_at(s, 16));
            if !matches!(st_type, 2 | 10) || shndx == 0 || value > target || value == 0 {
                continue;
            }
            let contains = size != 0 && target < value + size;
            if size != 0 && !contains {
                continue;
            }
            let better = match best {
                None => true,
                Some((v, _, c)) => (contains && !c) || (contains == c && value > v),
            };
            if better {
                best = Some((value, st_name, contains));
            }
        }
        i += n as u64;
    }
    let (value, st_name, _) = best?;
    if st_name as u64 >= str_size {
        return None;
    }
    let len = (str_size - st_name as u64).min(name.len() as u64) as usize;
    if !f.read_at(str_off + st_name as u64, &mut name[..len]) {
        return None;
    }
    let len = name[..len].iter().position(|&b| b == 0).unwrap_or(len);
    Some((len, target - value))
}

/// Whether the file's first PT_NOTE segment (holding the GNU build id) has the same bytes
/// as the loaded image's. Files without notes are accepted.
fn notes_match(mem: &SelfMemory, m: &Module, f: &File, ehdr: &[u8]) -> bool {
    let (phoff, phnum) = (u64_at(ehdr, 32), u16_at(ehdr, 56) as u64);
    let mut ph = [0u8; 56];
    for i in 0..phnum.min(64) {
        if !f.read_at(phoff + i * 56, &mut ph) {
            return false;
        }
        if u32_at(&ph, 0) != 4 {
            continue; // not PT_NOTE
        }
        let (offset, vaddr, size) = (u64_at(&ph, 8), u64_at(&ph, 16), u64_at(&ph, 32).min(128) as usize);
        let (mut on_disk, mut loaded) = ([0u8; 128], [0u8; 128]);
        return f.read_at(offset, &mut on_disk[..size])
            && mem.read(m.bias.wrapping_add(vaddr), &mut loaded[..size])
            && on_disk[..size] == loaded[..size];
    }
    true
}
