//! Whole pages in file-backed mappings. gdb answers a read that starts where a core holds no
//! bytes from the mapped file (the executable's or a library's sections), for the whole read,
//! even where a core segment begins further in: a 4 KiB read of a `.data` page whose dump
//! range starts mid-page (crashcatch's dumps hold `_PyRuntime` from its first byte) gives
//! the file's initial values, not the process's. The kernel's cores are made of whole pages,
//! so readers (gdb's own commands, crashcatch's page cache) may read whole pages: each range
//! of the dump is widened to the pages it touches, the added bytes taken from the mapped
//! file — the bytes gdb shows there anyway.

use super::layout::{Layout, PF_R, PF_W, PF_X};
use crate::elf::ElfFile;
use minidump::{MinidumpLinuxMaps, MinidumpModuleList, Module};
use procfs_core::process::MMapPath;
use std::collections::HashMap;
use std::path::Path;

const PAGE: u64 = 4096;

/// Fills the rest of each page a segment starts or ends in, where that page is mapped from a
/// module's file (build id checked, as for the ELF headers). At most `max_files` files opened.
pub fn widen_in_module_files(
    layout: &mut Layout,
    maps: &MinidumpLinuxMaps,
    modules: &MinidumpModuleList,
    max_files: usize,
) {
    let mut pages: Vec<u64> = layout
        .segments()
        .iter()
        .flat_map(|s| [s.addr & !(PAGE - 1), s.end().saturating_sub(1) & !(PAGE - 1)])
        .collect();
    pages.dedup();
    let mut files: HashMap<String, Option<ElfFile>> = HashMap::new();
    for page in pages {
        if layout.covers(page, PAGE) {
            continue;
        }
        let Some(m) = maps.memory_info_at_address(page) else { continue };
        let MMapPath::Path(path) = &m.map.pathname else { continue };
        let (start, end) = m.map.address;
        let name = path.to_string_lossy().into_owned();
        if !files.contains_key(&name) && files.len() >= max_files {
            continue;
        }
        let file = files.entry(name).or_insert_with_key(|name| {
            let module = modules.iter().find(|md| md.name == *name)?;
            let build_id = module.code_identifier().map(|c| c.to_string().to_lowercase());
            ElfFile::open_checked(Path::new(name), build_id.as_deref()).ok()
        });
        let Some(file) = file else { continue };
        let Some(offset) = m.map.offset.checked_add(page - start) else { continue };
        let len = PAGE.min(end - page);
        let Some(bytes) =
            usize::try_from(offset).ok().and_then(|o| file.data().get(o..o.checked_add(len as usize)?))
        else {
            continue;
        };
        let bit = |yes: bool, flag: u32| if yes { flag } else { 0 };
        let flags = bit(m.is_readable(), PF_R) | bit(m.is_writable(), PF_W) | bit(m.is_executable(), PF_X);
        layout.fill(page, bytes, flags);
    }
}
