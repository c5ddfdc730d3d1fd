//! What gdb walks to find the shared libraries of a core: the executable's `_DYNAMIC` →
//! `DT_DEBUG` → `r_debug` → `link_map` chain, in the core's memory. A minidump rarely
//! holds those bytes; minidump-writer's LinuxDsoDebug stream records them (the `_DYNAMIC`
//! copy, and each `link_map`'s load bias, name and dynamic section), so the chain is built
//! again from it, as Breakpad's minidump-2-core does: a copy of `_DYNAMIC` at its address with
//! `DT_DEBUG` pointing at a synthetic `r_debug` + `link_map` list placed where the process
//! had nothing mapped.

use super::layout::{Layout, PF_R, PF_W};
use crate::elf::ElfFile;
use crate::link_map::DT_DEBUG;
use std::path::Path;

/// `sizeof(struct r_debug)` and `sizeof(struct link_map)`'s public part on x86-64.
const R_DEBUG_SIZE: u64 = 40;
const LINK_MAP_SIZE: u64 = 40;
/// Libraries read at most (a corrupt stream may claim billions).
const MAX_OBJECTS: usize = 65_536;
/// The lowest address a synthetic block is put at.
const LOWEST: u64 = 0x10_0000;

/// One `link_map` entry: load bias, file name, address of its dynamic section.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedObject {
    pub l_addr: u64,
    pub name: Vec<u8>,
    pub l_ld: u64,
}

/// The dynamic loader's state at the crash, as the LinuxDsoDebug stream records it.
#[derive(Clone, Debug, PartialEq)]
pub struct DsoDebug {
    pub version: u32,
    pub brk: u64,
    pub ldbase: u64,
    /// The executable's `_DYNAMIC`: its address and bytes (up to and with DT_NULL).
    pub dynamic_addr: u64,
    pub dynamic: Vec<u8>,
    /// The main program first, as the dynamic loader lists it.
    pub objects: Vec<LoadedObject>,
}

impl DsoDebug {
    /// Parses the stream (`stream`); `file` is the whole dump, which the stream's link maps
    /// and names point into. minidump-writer packs the structures (header 36 bytes, link
    /// maps 20); Breakpad aligns them (40, 24): the `_DYNAMIC` copy after the header is a
    /// whole number of 16-byte entries, which tells the two apart.
    pub fn parse(stream: &[u8], file: &[u8]) -> Option<DsoDebug> {
        let (header, map_size, name_at) = match stream.len().checked_sub(36)? % 16 {
            0 => (36usize, 20usize, 8usize),
            4 => (40, 24, 8),
            _ => return None,
        };
        let u32_at = |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
        let u64_at = |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
        let wide = header - 36; // 4 bytes of padding before the 64-bit fields when aligned
        let version = u32_at(stream, 0)?;
        let map_rva = u32_at(stream, 4)? as usize;
        let count = (u32_at(stream, 8)? as usize).min(MAX_OBJECTS);
        let brk = u64_at(stream, 12 + wide)?;
        let ldbase = u64_at(stream, 20 + wide)?;
        let dynamic_addr = u64_at(stream, 28 + wide)?;
        let dynamic = stream[header..].to_vec();
        let mut objects = Vec::new();
        for i in 0..count {
            let at = map_rva.checked_add(i.checked_mul(map_size)?)?;
            let l_addr = u64_at(file, at)?;
            let name_rva = u32_at(file, at + name_at)? as usize;
            let l_ld = u64_at(file, at + map_size - 8)?;
            objects.push(LoadedObject { l_addr, name: minidump_string(file, name_rva)?, l_ld });
        }
        Some(DsoDebug { version, brk, ldbase, dynamic_addr, dynamic, objects })
    }
}

/// A module of the dump: where it was loaded, its file, its build id.
pub struct Module<'a> {
    pub base: u64,
    pub path: &'a str,
    pub build_id: Option<String>,
}

impl DsoDebug {
    /// The loader's state rebuilt from the module list, for dumps without a LinuxDsoDebug
    /// stream: each module's load bias and dynamic section from its program headers, the
    /// executable's `_DYNAMIC` from its file. Files are those at the modules' recorded paths,
    /// used only when their build id is the dump's; modules without one are left out (the
    /// vDSO has no file), and without the executable's there is nothing to build.
    pub fn from_modules(modules: &[Module], executable: usize) -> Option<DsoDebug> {
        let exe = modules.get(executable)?;
        let file = ElfFile::open_checked(Path::new(exe.path), exe.build_id.as_deref()).ok()?;
        let (bias, dynamic) = program_layout(file.data(), exe.base)?;
        let (dyn_vaddr, dyn_offset, dyn_size) = dynamic?;
        let start = usize::try_from(dyn_offset).ok()?;
        let mut bytes = file.data().get(start..start.checked_add(usize::try_from(dyn_size).ok()?)?)?.to_vec();
        // Up to and with DT_NULL, as the loader reads it.
        if let Some(end) = bytes.chunks_exact(16).position(|e| e[..8] == [0; 8]) {
            bytes.truncate(16 * (end + 1));
        }
        let dynamic_addr = bias.wrapping_add(dyn_vaddr);
        let mut objects = vec![LoadedObject { l_addr: bias, name: Vec::new(), l_ld: dynamic_addr }];
        for m in modules.iter().enumerate().filter(|&(i, _)| i != executable).map(|(_, m)| m) {
            let Ok(file) = ElfFile::open_checked(Path::new(m.path), m.build_id.as_deref()) else { continue };
            let Some((bias, dynamic)) = program_layout(file.data(), m.base) else { continue };
            let l_ld = dynamic.map_or(0, |(vaddr, _, _)| bias.wrapping_add(vaddr));
            objects.push(LoadedObject { l_addr: bias, name: m.path.as_bytes().to_vec(), l_ld });
        }
        Some(DsoDebug { version: 1, brk: 0, ldbase: 0, dynamic_addr, dynamic: bytes, objects })
    }
}

/// A PT_DYNAMIC segment: its address in the file, offset, size.
type DynamicSegment = (u64, u64, u64);

/// An ELF file's load bias when its first segment is at `base`, and its PT_DYNAMIC.
fn program_layout(data: &[u8], base: u64) -> Option<(u64, Option<DynamicSegment>)> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let header = object::elf::FileHeader64::<object::Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let headers = header.program_headers(endian, data).ok()?;
    let first = headers
        .iter()
        .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
        .map(|p| p.p_vaddr(endian))
        .min()?;
    let bias = base.wrapping_sub(first & !0xfff);
    let dynamic = headers
        .iter()
        .find(|p| p.p_type(endian) == object::elf::PT_DYNAMIC)
        .map(|p| (p.p_vaddr(endian), p.p_offset(endian), p.p_filesz(endian)));
    Some((bias, dynamic))
}

/// A MINIDUMP_STRING (byte length, then UTF-16LE) as UTF-8.
fn minidump_string(file: &[u8], rva: usize) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(file.get(rva..rva + 4)?.try_into().ok()?) as usize;
    let raw = file.get(rva + 4..rva.checked_add(4)?.checked_add(len)?)?;
    let units: Vec<u16> = raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    Some(String::from_utf16_lossy(&units).into_bytes())
}

/// Whether gdb can walk the chain in `layout` as it is: `_DYNAMIC` → DT_DEBUG → `r_debug`
/// → at least one `link_map`, every entry and name readable.
pub fn walkable(layout: &Layout, dynamic_addr: u64) -> bool {
    let Some(r_debug) = crate::link_map::r_debug(layout, dynamic_addr) else { return false };
    let (links, complete) = crate::link_map::links(layout, r_debug, MAX_OBJECTS);
    complete && !links.is_empty() && links.iter().all(|l| l.l_name == 0 || layout.covers(l.l_name, 1))
}

/// Puts the chain into `layout`: the `_DYNAMIC` copy with DT_DEBUG set, `r_debug`, the
/// link maps and their names. `taken`: the process's mappings, which the synthetic block
/// must not shadow. Returns the `r_debug` address, or None when the copy has no DT_DEBUG
/// entry to point at it or no room was found.
pub fn synthesize(layout: &mut Layout, dso: &DsoDebug, taken: &[(u64, u64)]) -> Option<u64> {
    let n = dso.objects.len() as u64;
    let names_at = R_DEBUG_SIZE + LINK_MAP_SIZE * n;
    let names_len: u64 = dso.objects.iter().map(|o| o.name.len() as u64 + 1).sum();
    let base = layout.free_space(names_at + names_len, LOWEST, taken)?;

    let mut dynamic = dso.dynamic.clone();
    let entry =
        dynamic.chunks_exact(16).position(|e| u64::from_le_bytes(e[..8].try_into().unwrap()) == DT_DEBUG)?;
    dynamic[entry * 16 + 8..entry * 16 + 16].copy_from_slice(&base.to_le_bytes());

    let mut block = Vec::with_capacity((names_at + names_len) as usize);
    let push = |b: &mut Vec<u8>, v: u64| b.extend_from_slice(&v.to_le_bytes());
    // r_debug: r_version, r_map, r_brk, r_state (RT_CONSISTENT), r_ldbase.
    push(&mut block, dso.version.into());
    push(&mut block, if n > 0 { base + R_DEBUG_SIZE } else { 0 });
    push(&mut block, dso.brk);
    push(&mut block, 0);
    push(&mut block, dso.ldbase);
    let mut name = base + names_at;
    for (i, o) in dso.objects.iter().enumerate() {
        let this = base + R_DEBUG_SIZE + LINK_MAP_SIZE * i as u64;
        push(&mut block, o.l_addr);
        push(&mut block, name);
        push(&mut block, o.l_ld);
        push(&mut block, if (i as u64) + 1 < n { this + LINK_MAP_SIZE } else { 0 });
        push(&mut block, if i > 0 { this - LINK_MAP_SIZE } else { 0 });
        name += o.name.len() as u64 + 1;
    }
    for o in &dso.objects {
        block.extend_from_slice(&o.name);
        block.push(0);
    }
    layout.overlay(dso.dynamic_addr, &dynamic, PF_R | PF_W);
    layout.overlay(base, &block, PF_R | PF_W);
    Some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dso() -> DsoDebug {
        let mut dynamic = Vec::new();
        for (tag, val) in [(1u64, 5u64), (DT_DEBUG, 0), (0 /* DT_NULL */, 0)] {
            dynamic.extend_from_slice(&tag.to_le_bytes());
            dynamic.extend_from_slice(&val.to_le_bytes());
        }
        let objects = vec![
            LoadedObject { l_addr: 0x5555_0000, name: Vec::new(), l_ld: 0x5555_3000 },
            LoadedObject { l_addr: 0x7f00_0000, name: b"/lib/libc.so.6".to_vec(), l_ld: 0x7f00_2000 },
        ];
        DsoDebug {
            version: 1,
            brk: 0x7f10_0000,
            ldbase: 0x7f20_0000,
            dynamic_addr: 0x5555_3000,
            dynamic,
            objects,
        }
    }

    #[test]
    fn a_synthesized_chain_is_walkable_and_keeps_clear_of_mappings() {
        let stack = [0u8; 64];
        let mut layout = Layout::from_ranges([(0x7ffc_0000, &stack[..])]);
        let d = dso();
        assert!(!walkable(&layout, d.dynamic_addr));
        let r = synthesize(&mut layout, &d, &[(LOWEST, LOWEST + 0x2000)]).unwrap();
        assert_eq!(r, LOWEST + 0x2000);
        assert!(walkable(&layout, d.dynamic_addr));
        let mut name = [0u8; 14];
        let mut ptr = [0u8; 8];
        assert!(layout.read(r + R_DEBUG_SIZE + LINK_MAP_SIZE + 8, &mut ptr));
        assert!(layout.read(u64::from_le_bytes(ptr), &mut name));
        assert_eq!(&name, b"/lib/libc.so.6");
    }

    #[test]
    fn both_stream_layouts_parse() {
        // Packed (minidump-writer): header 36 bytes + one dynamic entry; one link map.
        let mut file = vec![0u8; 64];
        let name_rva = file.len();
        file.extend_from_slice(&4u32.to_le_bytes());
        file.extend_from_slice(&[b'a', 0, b'b', 0]);
        let map_rva = file.len();
        file.extend_from_slice(&0x1000u64.to_le_bytes());
        file.extend_from_slice(&(name_rva as u32).to_le_bytes());
        file.extend_from_slice(&0x2000u64.to_le_bytes());
        let mut stream = Vec::new();
        for v in [1u32, map_rva as u32, 1] {
            stream.extend_from_slice(&v.to_le_bytes());
        }
        for v in [0x10u64, 0x20, 0x30] {
            stream.extend_from_slice(&v.to_le_bytes());
        }
        stream.extend_from_slice(&[0u8; 16]);
        let d = DsoDebug::parse(&stream, &file).unwrap();
        assert_eq!((d.brk, d.ldbase, d.dynamic_addr, d.dynamic.len()), (0x10, 0x20, 0x30, 16));
        assert_eq!(d.objects, [LoadedObject { l_addr: 0x1000, name: b"ab".to_vec(), l_ld: 0x2000 }]);
        assert_eq!(DsoDebug::parse(&stream[..40], &file), None);
        assert_eq!(DsoDebug::parse(&[], &file), None);
    }
}
