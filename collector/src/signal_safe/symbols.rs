//! Function names for a whole C stack at once. Frames are grouped by module and each
//! module's symbol table is scanned once, in chunks, for all of its frames: from the file's
//! `.symtab` on disk (it has static functions) when the file still matches the loaded image
//! (same notes, hence same build id), else from the in-memory `.dynsym`. Reads go through
//! `pread` or the fault-proof `SelfMemory` into stack buffers: nothing is mapped or
//! allocated.

use super::cstack::lookup_pc;
use super::demangle;
use super::elf::Module;
use super::memory::SelfMemory;
use super::mounts;
use super::unwind::Frame;
use pylayout::Memory;

/// Symbols read per chunk (8 KiB of the alternate stack; libpython's `.symtab` takes ~45).
const CHUNK_SYMS: usize = 341;
/// Section headers read per `pread` (4 KiB; most files have fewer).
const SHDRS_PER_READ: u64 = 64;
/// Program headers looked at, all read at once.
const MAX_PHDRS: u64 = 64;
const SYM_SIZE: u64 = 24;

/// Where a symbol table's bytes come from: a file (offsets) or our memory (addresses).
trait Source {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> bool;
}

impl Source for SelfMemory {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> bool {
        self.read(off, buf)
    }
}

struct File(i32);

impl File {
    /// Opens a module's file, unless it is on a network or FUSE filesystem (reading it
    /// could block the dying process without bound).
    fn open(mem: &SelfMemory, path: u64) -> Option<File> {
        let mut name = [0u8; 4096];
        if !read_cstr(mem, path, &mut name) {
            return None;
        }
        let len = name.iter().position(|&b| b == 0)?;
        if mounts::is_remote(&name[..len]) {
            return None;
        }
        // The copy just checked, not the string in memory again. SAFETY: `name` holds a NUL
        // at `len`.
        let fd = unsafe { libc::open(name.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        (fd >= 0).then_some(File(fd))
    }
}

impl Source for File {
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

/// A symbol table: where its entries and strings are, in its source's terms.
#[derive(Clone, Copy)]
struct Table {
    symtab: u64,
    count: u64,
    strtab: u64,
    strsz: u64,
}

/// The best symbol found so far for one frame.
#[derive(Clone, Copy, Default)]
pub struct Hit {
    value: u64,
    name: u32,
    contains: bool,
    /// STB_GLOBAL: among aliases at one address, the canonical name (`raise`, not its weak
    /// alias `gsignal`), as gdb and the symbolizer print it.
    global: bool,
    pub found: bool,
}

/// A resolved name: `len` bytes at `start` of the caller's arena, and the frame's offset
/// from the symbol. `complete`: the whole name (not cut to the arena or [`MAX_NAME`]).
#[derive(Clone, Copy, Default)]
pub struct Name {
    pub start: usize,
    pub len: usize,
    pub offset: u64,
    pub found: bool,
    pub complete: bool,
}

/// Most bytes of a symbol name kept: one more than the demangler looks at, so a longer
/// name is known to be incomplete.
pub const MAX_NAME: usize = demangle::MAX_MANGLED + 1;

/// Names `frames[i]` into `names[i]`, copying the strings into `arena`.
pub fn resolve(mem: &SelfMemory, frames: &[Option<Frame>], names: &mut [Name], arena: &mut [u8]) {
    let module = |i: usize| frames.get(i).copied().flatten().and_then(|f| f.module);
    let lookup = |i: usize| frames.get(i).copied().flatten().map_or(0, |f| lookup_pc(&f));
    let mut used = 0usize;
    let n = frames.len().min(names.len());
    let mut done = [false; 256];
    for i in 0..n.min(done.len()) {
        let Some(m) = module(i) else { continue };
        if done[i] {
            continue;
        }
        // This module's frames.
        let mut targets = [0u64; 256];
        let mut which = [0usize; 256];
        let mut k = 0;
        for j in i..n.min(done.len()) {
            if !done[j] && module(j).is_some_and(|o| o.start == m.start) {
                targets[k] = lookup(j).wrapping_sub(m.bias);
                which[k] = j;
                k += 1;
                done[j] = true;
            }
        }
        let mut hits = [Hit::default(); 256];
        let (targets, hits) = (&targets[..k], &mut hits[..k]);
        let path = if m.name != 0 && mem.read_u8(m.name).is_some_and(|b| b != 0) { m.name } else { 0 };
        let file = if path != 0 { File::open(mem, path) } else { None };
        let mut src: &dyn Source = mem;
        let mut table = None;
        if let Some(f) = file.as_ref() {
            if let Some(t) = file_table(f, mem, &m) {
                scan(f, &t, targets, hits);
                if hits.iter().any(|h| h.found) {
                    (src, table) = (f, Some(t));
                }
            }
        }
        if table.is_none() {
            hits.fill(Hit::default());
            table = dynsym_table(mem, &m);
            if let Some(t) = table {
                scan(mem, &t, targets, hits);
            }
        }
        let Some(table) = table else { continue };
        for (slot, (hit, &target)) in which.iter().zip(hits.iter().zip(targets)) {
            if !hit.found || hit.name as u64 >= table.strsz {
                continue;
            }
            let room = arena.len().saturating_sub(used).min(MAX_NAME);
            let len = ((table.strsz - hit.name as u64) as usize).min(room);
            let buf = &mut arena[used..used + len];
            if len == 0 || !read_cstr(src, table.strtab + hit.name as u64, buf) {
                continue;
            }
            let nul = buf.iter().position(|&b| b == 0);
            let len = nul.unwrap_or(len);
            let (offset, complete) = (target - hit.value, nul.is_some());
            names[*slot] = Name { start: used, len, offset, found: true, complete };
            used += len;
        }
    }
}

/// Reads up to buf.len() bytes of a NUL-terminated string, tolerating a short tail.
fn read_cstr(src: &dyn Source, at: u64, buf: &mut [u8]) -> bool {
    let mut len = buf.len();
    while len > 0 {
        if src.read_at(at, &mut buf[..len]) {
            return true;
        }
        len /= 2; // the string may end near the end of a mapping
    }
    false
}

/// Scans every symbol once, keeping for each target the function that contains it (or
/// the nearest below when sizes are missing).
fn scan(src: &dyn Source, t: &Table, targets: &[u64], hits: &mut [Hit]) {
    let mut buf = [0u8; CHUNK_SYMS * SYM_SIZE as usize];
    let mut i = 0u64;
    let count = t.count.min(1 << 22);
    while i < count {
        let n = (count - i).min(CHUNK_SYMS as u64) as usize;
        let bytes = &mut buf[..n * SYM_SIZE as usize];
        if !src.read_at(t.symtab + i * SYM_SIZE, bytes) {
            return;
        }
        for s in bytes.chunks_exact(SYM_SIZE as usize) {
            let (st_name, st_type, shndx) = (u32_at(s, 0), s[4] & 0xf, u16_at(s, 6));
            let global = s[4] >> 4 == 1; // STB_GLOBAL
            let (value, size) = (u64_at(s, 8), u64_at(s, 16));
            if !matches!(st_type, 2 | 10) || shndx == 0 || value == 0 {
                continue; // not a defined function (STT_FUNC, STT_GNU_IFUNC)
            }
            for (hit, &target) in hits.iter_mut().zip(targets) {
                if value > target {
                    continue;
                }
                let contains = size != 0 && target < value + size;
                if size != 0 && !contains {
                    continue;
                }
                let better = !hit.found
                    || (contains && !hit.contains)
                    || (contains == hit.contains && value > hit.value)
                    || (contains == hit.contains && value == hit.value && global && !hit.global);
                if better {
                    *hit = Hit { value, name: st_name, contains, global, found: true };
                }
            }
        }
        i += n as u64;
    }
}

/// The `.symtab` of the module's file, if the file's notes match the loaded image's.
fn file_table(f: &File, mem: &SelfMemory, m: &Module) -> Option<Table> {
    let mut ehdr = [0u8; 64];
    if !f.read_at(0, &mut ehdr) || ehdr[..4] != *b"\x7fELF" || ehdr[4] != 2 {
        return None;
    }
    if !notes_match(mem, m, f, &ehdr) {
        return None;
    }
    let (shoff, shentsize, shnum) = (u64_at(&ehdr, 40), u16_at(&ehdr, 58) as u64, u16_at(&ehdr, 60) as u64);
    if shentsize != 64 {
        return None;
    }
    // The headers a batch at a time: one `pread` for most files, not one per section.
    let mut batch = [0u8; (SHDRS_PER_READ * 64) as usize];
    let shnum = shnum.min(4096);
    let mut first = 0u64;
    while first < shnum {
        let n = (shnum - first).min(SHDRS_PER_READ);
        let bytes = &mut batch[..(n * 64) as usize];
        if !f.read_at(shoff + first * 64, bytes) {
            return None;
        }
        for sh in bytes.chunks_exact(64) {
            if u32_at(sh, 4) != 2 {
                continue;
            }
            // SHT_SYMTAB; sh_link names its string table.
            let (symtab, size, link) = (u64_at(sh, 24), u64_at(sh, 32), u32_at(sh, 40) as u64);
            let mut strsh = [0u8; 64];
            if !f.read_at(shoff + link * 64, &mut strsh) {
                return None;
            }
            return Some(Table {
                symtab,
                count: size / SYM_SIZE,
                strtab: u64_at(&strsh, 24),
                strsz: u64_at(&strsh, 32),
            });
        }
        first += n;
    }
    None
}

/// Whether the file's first PT_NOTE segment (holding the GNU build id) has the same bytes
/// as the loaded image's. Files without notes are accepted.
fn notes_match(mem: &SelfMemory, m: &Module, f: &File, ehdr: &[u8]) -> bool {
    let (phoff, phnum) = (u64_at(ehdr, 32), u16_at(ehdr, 56) as u64);
    let mut all = [0u8; (MAX_PHDRS * 56) as usize];
    let bytes = &mut all[..(phnum.min(MAX_PHDRS) * 56) as usize];
    if !f.read_at(phoff, bytes) {
        return false;
    }
    for ph in bytes.chunks_exact(56) {
        if u32_at(ph, 0) != 4 {
            continue; // not PT_NOTE
        }
        let (offset, vaddr, size) = (u64_at(ph, 8), u64_at(ph, 16), u64_at(ph, 32).min(128) as usize);
        let (mut on_disk, mut loaded) = ([0u8; 128], [0u8; 128]);
        return f.read_at(offset, &mut on_disk[..size])
            && mem.read(m.bias.wrapping_add(vaddr), &mut loaded[..size])
            && on_disk[..size] == loaded[..size];
    }
    true
}

// Dynamic section tags (elf.h).
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_STRSZ: i64 = 10;
const DT_GNU_HASH: i64 = 0x6fff_fef5;

/// The in-memory `.dynsym` of a loaded module, found through its dynamic section.
fn dynsym_table(mem: &SelfMemory, m: &Module) -> Option<Table> {
    let (mut symtab, mut strtab, mut strsz, mut hash, mut gnu_hash) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut d = m.dynamic;
    if d == 0 {
        return None;
    }
    let mut entries = [0u8; 16 * 64];
    'outer: for _ in 0..8 {
        if !mem.read(d, &mut entries) && !mem.read(d, &mut entries[..16 * 8]) {
            return None;
        }
        for e in entries.chunks_exact(16) {
            let (tag, val) = (u64_at(e, 0) as i64, u64_at(e, 8));
            match tag {
                0 => break 'outer,
                DT_SYMTAB => symtab = val,
                DT_STRTAB => strtab = val,
                DT_STRSZ => strsz = val,
                DT_HASH => hash = val,
                DT_GNU_HASH => gnu_hash = val,
                _ => {}
            }
            d += 16;
        }
    }
    // ld.so relocates these entries in place for normal objects, not for the vDSO.
    let fix = |v: u64| if v != 0 && v < m.bias { v + m.bias } else { v };
    let count = if hash != 0 {
        mem.read_u32(fix(hash) + 4)? as u64
    } else if gnu_hash != 0 {
        gnu_hash_count(mem, fix(gnu_hash))?
    } else {
        return None;
    };
    Some(Table { symtab: fix(symtab), count, strtab: fix(strtab), strsz })
}

/// Number of symbols in a DT_GNU_HASH table: one past the highest chained index.
fn gnu_hash_count(mem: &SelfMemory, table: u64) -> Option<u64> {
    let nbuckets = mem.read_u32(table)? as u64;
    let symoffset = mem.read_u32(table + 4)? as u64;
    let bloom_size = mem.read_u32(table + 8)? as u64;
    let buckets = table + 16 + bloom_size * 8;
    let chains = buckets + nbuckets * 4;
    let mut last = 0u64;
    let mut chunk = [0u8; 1024];
    let mut b = 0u64;
    while b < nbuckets.min(1 << 20) {
        let n = (nbuckets - b).min(256);
        let bytes = &mut chunk[..(n * 4) as usize];
        if !mem.read(buckets + b * 4, bytes) {
            return None;
        }
        for w in bytes.chunks_exact(4) {
            last = last.max(u32_at(w, 0) as u64);
        }
        b += n;
    }
    if last < symoffset {
        return Some(symoffset);
    }
    for _ in 0..(1 << 22) {
        if mem.read_u32(chains + (last - symoffset) * 4)? & 1 != 0 {
            break;
        }
        last += 1;
    }
    Some(last + 1)
}
