//! A core's memory as a `pylayout::Memory`: its PT_LOAD segments, and for read-only file
//! mappings the kernel left out (coredump_filter skips them: they can be read back from the
//! file), the module files' bytes at the offsets NT_FILE gives.
//!
//! A core may also list a file mapping in NT_FILE with no PT_LOAD over it at all: the cores
//! `crashcatch core` writes from a minidump hold only the dump's ranges. Such a mapping's
//! permissions are its file's segment's (`p_flags` of the PT_LOAD holding that file offset):
//! read-only ones are read from the file where no PT_LOAD is, and executable ones count as
//! code.

use super::layout::{PF_W, PF_X};
use super::read::{CoreFile, FileMap};
use memmap2::Mmap;
use object::{Object, ObjectSegment, SegmentFlags};
use pylayout::Memory;
use std::collections::HashMap;
use std::path::PathBuf;

const PAGE: u64 = 4096;
/// Files mapped at most to fill in left-out pages (a process maps a few hundred).
const MAX_FILES: usize = 4096;

pub struct CoreMemory<'a> {
    pub core: &'a CoreFile,
    bytes: &'a [u8],
    /// Path → the file's bytes, for the files allowed to fill in pages (`allow_files`).
    files: HashMap<String, Mmap>,
    /// Path → the file's loadable segments: (file offset, size in the file, p_flags).
    segments: HashMap<String, Vec<(u64, u64, u32)>>,
}

impl<'a> CoreMemory<'a> {
    /// The core's own bytes only.
    pub fn new(core: &'a CoreFile, bytes: &'a [u8]) -> CoreMemory<'a> {
        CoreMemory { core, bytes, files: HashMap::new(), segments: HashMap::new() }
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
                self.segments.insert(path.to_string(), file_segments(&map));
                self.files.insert(path.to_string(), map);
            }
        }
    }

    /// The `p_flags` of the file segment `map` was mapped for, if its file is allowed: the one
    /// whose page-aligned start is the mapping's offset (a mapping begins with the page that
    /// holds its segment's first byte, often the end of the segment before), else the one
    /// holding that offset (a segment split in parts by mprotect).
    fn file_flags(&self, map: &FileMap) -> Option<u32> {
        let segments = self.segments.get(&map.path)?;
        let aligned = segments.iter().find(|&&(start, _, _)| start & !(PAGE - 1) == map.offset);
        let holding =
            || segments.iter().find(|&&(start, size, _)| map.offset >= start && map.offset - start < size);
        aligned.or_else(holding).map(|s| s.2)
    }

    /// The file mappings whose file segment is executable, whether or not PT_LOADs cover
    /// them (a converted core holds only bits of its code): code for the unwinder, besides
    /// the PF_X loads.
    pub fn file_code(&self) -> Vec<(u64, u64)> {
        self.core
            .files
            .iter()
            .filter(|f| self.file_flags(f).is_some_and(|flags| flags & PF_X != 0))
            .map(|f| (f.start, f.end))
            .collect()
    }

    /// Bytes of a read-only file mapping at `addr` that no PT_LOAD holds, up to the next
    /// PT_LOAD (whose bytes are the process's).
    fn uncovered_file_chunk(&self, addr: u64) -> Option<&[u8]> {
        let map = self.core.file_at(addr)?;
        if self.file_flags(map)? & PF_W != 0 {
            return None;
        }
        let next_load =
            self.core.loads.iter().map(|l| l.vaddr).filter(|&v| v > addr).min().unwrap_or(u64::MAX);
        let file = self.files.get(&map.path)?;
        let start = usize::try_from(map.offset.checked_add(addr - map.start)?).ok()?;
        let end = map.offset.checked_add(map.end.min(next_load) - map.start)?;
        let end = usize::try_from(end).ok()?.min(file.len());
        file.get(start..end).filter(|b| !b.is_empty())
    }

    /// Bytes readable at `addr` without crossing a segment: a slice of the core or a file.
    fn chunk(&self, addr: u64) -> Option<&[u8]> {
        let Some(load) = self.core.load_at(addr) else { return self.uncovered_file_chunk(addr) };
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

/// The PT_LOAD segments of an ELF file: (file offset, size in the file, p_flags); none if
/// it is not ELF.
fn file_segments(data: &[u8]) -> Vec<(u64, u64, u32)> {
    let Ok(file) = object::File::parse(data) else { return Vec::new() };
    file.segments()
        .filter_map(|s| match s.flags() {
            SegmentFlags::Elf { p_flags, .. } => Some((s.file_range().0, s.file_range().1, p_flags.0)),
            _ => None,
        })
        .collect()
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
