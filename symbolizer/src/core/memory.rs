//! A core's memory as a `pylayout::Memory`: its PT_LOAD segments, and for read-only file
//! mappings the kernel left out (coredump_filter skips them: they can be read back from the
//! file), the module files' bytes at the offsets NT_FILE gives.

use super::layout::PF_W;
use super::read::CoreFile;
use memmap2::Mmap;
use pylayout::Memory;
use std::collections::HashMap;
use std::path::PathBuf;

/// Files mapped at most to fill in left-out pages (a process maps a few hundred).
const MAX_FILES: usize = 4096;

pub struct CoreMemory<'a> {
    pub core: &'a CoreFile,
    bytes: &'a [u8],
    /// Path → the file's bytes, for the files allowed to fill in pages (`allow_files`).
    files: HashMap<String, Mmap>,
}

impl<'a> CoreMemory<'a> {
    /// The core's own bytes only.
    pub fn new(core: &'a CoreFile, bytes: &'a [u8]) -> CoreMemory<'a> {
        CoreMemory { core, bytes, files: HashMap::new() }
    }

    /// Lets the files (those whose build id is the one in the core, or that the core cannot
    /// check) fill in the read-only pages the core left out: each a path NT_FILE records
    /// and where its file is here (the same path, or under a sysroot).
    pub fn allow_files<'p>(&mut self, paths: impl IntoIterator<Item = (&'p str, PathBuf)>) {
        for (path, local) in paths.into_iter().take(MAX_FILES) {
            if self.files.contains_key(path) {
                continue;
            }
            let Ok(file) = std::fs::File::open(local) else { continue };
            if !file.metadata().is_ok_and(|m| m.is_file()) {
                continue;
            }
            // SAFETY: read-only private mapping of a module file, as `elf::ElfFile::open`
            // maps them (a file truncated meanwhile could fault, as for gdb).
            if let Ok(map) = unsafe { Mmap::map(&file) } {
                self.files.insert(path.to_string(), map);
            }
        }
    }

    /// Bytes readable at `addr` without crossing a segment: a slice of the core or a file.
    fn chunk(&self, addr: u64) -> Option<&[u8]> {
        let load = self.core.load_at(addr)?;
        let off = addr - load.vaddr;
        if off < load.filesz {
            let start = usize::try_from(load.offset.checked_add(off)?).ok()?;
            let end = usize::try_from(load.offset.checked_add(load.filesz)?).ok()?.min(self.bytes.len());
            return self.bytes.get(start..end).filter(|b| !b.is_empty());
        }
        // Left out of the core: only a read-only file mapping is what its file holds.
        if load.flags & PF_W != 0 {
            return None;
        }
        let map = self.core.file_at(addr)?;
        let file = self.files.get(&map.path)?;
        let start = usize::try_from(map.offset.checked_add(addr - map.start)?).ok()?;
        let end = usize::try_from(map.offset.checked_add(map.end - map.start)?).ok()?.min(file.len());
        let seg_end = usize::try_from(load.memsz - off).ok()?.saturating_add(start);
        file.get(start..end.min(seg_end)).filter(|b| !b.is_empty())
    }
}

impl Memory for CoreMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(at) = addr.checked_add(done as u64) else { return false };
            let Some(chunk) = self.chunk(at) else { return false };
            let n = chunk.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&chunk[..n]);
            done += n;
        }
        true
    }
}
