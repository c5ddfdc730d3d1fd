//! Functions, inlined calls and file:line from DWARF, parsing only the compilation units that
//! hold the addresses asked for.
//!
//! addr2line's `Context` parses the header, abbreviations and line-program header of every
//! unit up front: for libpython and libc's debug file that alone is ~25 MB of heap and most
//! of the symbolizer's time, for the handful of units a crash's frames fall in. Here the unit
//! of an address comes from `.debug_aranges` (every unit's root ranges are read once,
//! and dropped, only for addresses aranges do not cover); then that unit's DIE tree is
//! descended only into the entries that contain the address.

use crate::elf::Reader;
use gimli::{AttributeValue, DebugInfoOffset, DwAt, Reader as _, Unit, UnitOffset};
use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// One frame at an address: the function, or a call inlined in it (`inlined`).
#[derive(Clone, Debug)]
pub struct Named {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub inlined: bool,
}

/// Names followed through abstract origins and specifications at most this deep.
const MAX_NAME_HOPS: usize = 16;
/// DIE nesting followed at most (guards against corrupt trees).
const MAX_DEPTH: usize = 256;

pub struct LazyDwarf {
    dwarf: gimli::Dwarf<Reader>,
    /// (start, end, unit) address ranges, sorted by start: from .debug_aranges.
    aranges: Vec<(u64, u64, DebugInfoOffset)>,
    /// The same from every unit's root entry, made the first time aranges miss.
    scanned: OnceCell<Vec<(u64, u64, DebugInfoOffset)>>,
    units: RefCell<HashMap<DebugInfoOffset, Rc<Unit<Reader>>>>,
}

impl LazyDwarf {
    pub fn new(dwarf: gimli::Dwarf<Reader>) -> LazyDwarf {
        let mut aranges = Vec::new();
        let mut headers = dwarf.debug_aranges.headers();
        while let Ok(Some(header)) = headers.next() {
            let unit = header.debug_info_offset();
            let mut entries = header.entries();
            while let Ok(Some(e)) = entries.next() {
                if e.length() > 0 {
                    aranges.push((e.address(), e.address().saturating_add(e.length()), unit));
                }
            }
        }
        aranges.sort_unstable_by_key(|r| r.0);
        LazyDwarf { dwarf, aranges, scanned: OnceCell::new(), units: RefCell::new(HashMap::new()) }
    }

    /// The frames at file address `probe`, innermost (most deeply inlined) first; empty when
    /// no unit covers it.
    pub fn frames(&self, probe: u64) -> Vec<Named> {
        let candidates = covering(&self.aranges, probe);
        let candidates = if candidates.is_empty() { covering(self.scan(), probe) } else { candidates };
        for offset in candidates {
            let Some(unit) = self.unit(offset) else { continue };
            let frames = self.frames_in(&unit, probe).unwrap_or_default();
            if !frames.is_empty() {
                return frames;
            }
        }
        Vec::new()
    }

    fn unit(&self, offset: DebugInfoOffset) -> Option<Rc<Unit<Reader>>> {
        if let Some(u) = self.units.borrow().get(&offset) {
            return Some(u.clone());
        }
        let header = self.dwarf.debug_info.header_from_offset(offset).ok()?;
        let unit = Rc::new(self.dwarf.unit(header).ok()?);
        self.units.borrow_mut().insert(offset, unit.clone());
        Some(unit)
    }

    /// Every unit's root ranges (each unit parsed, then dropped).
    fn scan(&self) -> &[(u64, u64, DebugInfoOffset)] {
        self.scanned.get_or_init(|| {
            let mut out = Vec::new();
            let mut headers = self.dwarf.units();
            while let Ok(Some(header)) = headers.next() {
                let Some(offset) = header.debug_info_offset() else { continue };
                let Ok(unit) = self.dwarf.unit(header) else { continue };
                let mut entries = unit.entries();
                let Ok(Some(root)) = entries.next_dfs().map(|e| e.cloned()) else { continue };
                if let Ok(mut ranges) = self.dwarf.die_ranges(&unit, &root) {
                    while let Ok(Some(r)) = ranges.next() {
                        out.push((r.begin, r.end, offset));
                    }
                }
            }
            out.sort_unstable_by_key(|r| r.0);
            out
        })
    }

    fn frames_in(&self, unit: &Unit<Reader>, probe: u64) -> gimli::Result<Vec<Named>> {
        // The chain of entries containing `probe`: a subprogram, then inlined calls in it.
        let mut chain: Vec<(UnitOffset, Option<(u64, u32)>)> = Vec::new();
        let mut tree = unit.entries_tree(None)?;
        descend(&self.dwarf, unit, tree.root()?, probe, &mut chain, 0)?;
        if chain.is_empty() {
            return Ok(Vec::new());
        }
        let mut frames = Vec::with_capacity(chain.len());
        // The innermost frame's line is the line table's; each outer frame's is the call
        // site of the frame it holds.
        let mut location = self.line_at(unit, probe);
        for (depth, (offset, call_site)) in chain.iter().enumerate().rev() {
            let entry = unit.entry(*offset)?;
            frames.push(Named {
                function: self.name(&self.dwarf, unit, &entry, 0),
                file: location.as_ref().map(|l| l.0.clone()),
                line: location.as_ref().map(|l| l.1),
                // The chain's first entry is the function; the rest are inlined into it.
                inlined: depth > 0,
            });
            location = call_site.and_then(|(file, line)| Some((self.file_name(unit, file)?, line)));
        }
        Ok(frames)
    }

    /// The function name of a subprogram or inlined call (linkage name first, demangled),
    /// following abstract origins and specifications — into other units, and into the dwz
    /// supplementary file (`dwarf` is the file `unit` belongs to).
    fn name(
        &self,
        dwarf: &gimli::Dwarf<Reader>,
        unit: &Unit<Reader>,
        entry: &gimli::DebuggingInformationEntry<Reader>,
        hops: usize,
    ) -> Option<String> {
        for at in [gimli::DW_AT_linkage_name, gimli::DW_AT_MIPS_linkage_name, gimli::DW_AT_name] {
            if let Some(value) = entry.attr_value(at) {
                let raw = dwarf.attr_string(unit, value).ok()?;
                let raw = raw.to_string_lossy().ok()?.into_owned();
                return Some(addr2line::demangle_auto(Cow::Owned(raw), None).into_owned());
            }
        }
        if hops >= MAX_NAME_HOPS {
            return None;
        }
        for at in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
            match entry.attr_value(at) {
                Some(AttributeValue::UnitRef(offset)) => {
                    return self.name(dwarf, unit, &unit.entry(offset).ok()?, hops + 1);
                }
                Some(AttributeValue::DebugInfoRef(offset)) => {
                    let (other, in_unit) = self.unit_holding(dwarf, offset)?;
                    return self.name(dwarf, &other, &other.entry(in_unit).ok()?, hops + 1);
                }
                Some(AttributeValue::DebugInfoRefSup(offset)) => {
                    let sup = dwarf.sup()?;
                    let (other, in_unit) = self.unit_holding(sup, offset)?;
                    return self.name(sup, &other, &other.entry(in_unit).ok()?, hops + 1);
                }
                _ => {}
            }
        }
        None
    }

    /// The unit of `dwarf` holding .debug_info offset `offset`, and the offset within it
    /// (units of the module's own file are cached, a supplementary file's are not).
    fn unit_holding(
        &self,
        dwarf: &gimli::Dwarf<Reader>,
        offset: DebugInfoOffset,
    ) -> Option<(Rc<Unit<Reader>>, UnitOffset)> {
        let mut headers = dwarf.units();
        let mut holder = None;
        while let Ok(Some(header)) = headers.next() {
            match header.debug_info_offset() {
                Some(start) if start.0 <= offset.0 => holder = Some(start),
                _ => break,
            }
        }
        let unit = if std::ptr::eq(dwarf, &self.dwarf) {
            self.unit(holder?)?
        } else {
            Rc::new(dwarf.unit(dwarf.debug_info.header_from_offset(holder?).ok()?).ok()?)
        };
        let in_unit = offset.to_unit_offset(&unit.header)?;
        Some((unit, in_unit))
    }

    /// (file, line) of the line-table row covering `probe`.
    fn line_at(&self, unit: &Unit<Reader>, probe: u64) -> Option<(String, u32)> {
        let program = unit.line_program.clone()?;
        let mut rows = program.rows();
        let mut previous: Option<(u64, u64, u32)> = None;
        while let Ok(Some((_, row))) = rows.next_row() {
            if let Some((address, file, line)) = previous {
                if address <= probe && probe < row.address() {
                    // Line 0: code with no source line (compiler-generated).
                    return (line != 0).then(|| Some((self.file_name(unit, file)?, line))).flatten();
                }
            }
            previous = (!row.end_sequence())
                .then(|| (row.address(), row.file_index(), row.line().map_or(0, |l| l.get() as u32)));
        }
        None
    }

    /// A line-program file as addr2line writes it: comp_dir, then the directory, then the
    /// name, each replacing what came before when absolute.
    fn file_name(&self, unit: &Unit<Reader>, index: u64) -> Option<String> {
        let header = unit.line_program.as_ref()?.header();
        let file = header.file(index)?;
        let text = |value| -> Option<String> {
            Some(self.dwarf.attr_string(unit, value).ok()?.to_string_lossy().ok()?.into_owned())
        };
        let mut path = match &unit.comp_dir {
            Some(dir) => dir.to_string_lossy().ok()?.into_owned(),
            None => String::new(),
        };
        if file.directory_index() != 0 {
            if let Some(dir) = file.directory(header).and_then(text) {
                push_path(&mut path, &dir);
            }
        }
        push_path(&mut path, &text(file.path_name())?);
        Some(path)
    }
}

fn push_path(path: &mut String, part: &str) {
    if part.starts_with('/') {
        *path = part.to_string();
    } else {
        if !path.is_empty() && !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(part);
    }
}

/// Units whose ranges (sorted by start) contain `probe`.
fn covering(ranges: &[(u64, u64, DebugInfoOffset)], probe: u64) -> Vec<DebugInfoOffset> {
    let end = ranges.partition_point(|r| r.0 <= probe);
    let mut out: Vec<DebugInfoOffset> =
        ranges[..end].iter().rev().filter(|r| probe < r.1).map(|r| r.2).collect();
    out.dedup();
    out
}

/// Walks down from `node` into the entries containing `probe`, appending each subprogram
/// or inlined call on the way (with the call site of inlined ones) to `chain`.
fn descend(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &Unit<Reader>,
    node: gimli::EntriesTreeNode<'_, '_, Reader>,
    probe: u64,
    chain: &mut Vec<(UnitOffset, Option<(u64, u32)>)>,
    depth: usize,
) -> gimli::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let mut children = node.children();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        let tag = entry.tag();
        let is_code = matches!(tag, gimli::DW_TAG_subprogram | gimli::DW_TAG_inlined_subroutine);
        let scope = matches!(
            tag,
            gimli::DW_TAG_lexical_block
                | gimli::DW_TAG_namespace
                | gimli::DW_TAG_module
                | gimli::DW_TAG_try_block
        ) || matches!(tag, gimli::DW_TAG_catch_block);
        if !is_code && !scope {
            continue;
        }
        let mut ranges = dwarf.die_ranges(unit, entry)?;
        let mut has_ranges = false;
        let mut contains = false;
        while let Some(r) = ranges.next()? {
            has_ranges = true;
            contains |= r.begin <= probe && probe < r.end;
        }
        // Scopes without ranges (namespaces) may hold code; code without ranges is abstract.
        if contains || (scope && !has_ranges) {
            if is_code {
                let call_site = (tag == gimli::DW_TAG_inlined_subroutine).then(|| call_site(entry)).flatten();
                chain.push((entry.offset(), call_site));
            }
            let before = chain.len();
            descend(dwarf, unit, child, probe, chain, depth + 1)?;
            if contains && (is_code || chain.len() > before) {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn call_site(entry: &gimli::DebuggingInformationEntry<Reader>) -> Option<(u64, u32)> {
    let udata = |at: DwAt| match entry.attr_value(at)? {
        AttributeValue::FileIndex(index) => Some(index),
        other => other.udata_value(),
    };
    Some((udata(gimli::DW_AT_call_file)?, udata(gimli::DW_AT_call_line)? as u32))
}
