//! Functions, inlined calls and file:line from DWARF, parsing only the compilation units that
//! hold the addresses asked for.
//!
//! addr2line's `Context` parses the header, abbreviations and line-program header of every
//! unit up front: for libpython and libc's debug file that alone is ~25 MB of heap and most
//! of the symbolizer's time, for the handful of units a crash's frames fall in. Here the unit
//! of an address comes from `.debug_aranges` (every unit's root ranges are read once,
//! and dropped, only for addresses aranges do not cover); then that unit's DIE tree is
//! descended only into the entries that contain the address.
//!
//! Nothing is read up front beyond .debug_aranges: a unit's abbreviations are parsed when the
//! unit is (and kept, for dwz'd files whose units share them), not for every unit as gimli's
//! `populate_abbreviations_cache` does by reading every unit's header, which faults most of a
//! large .debug_info into memory (a page per unit, and the kernel maps 64 KiB around each).
//!
//! A function can also sit where no containing entry leads: C++ puts the functions of a
//! lambda's closure type or of a local class inside the class, inside the function that
//! defines it, whose own code is elsewhere (pybind11's dispatch lambda `_FUN`, in
//! `cpp_function::initialize<…>`). When the descent finds nothing, every subprogram of the
//! unit, at any depth, is indexed once by its ranges.

use crate::demangle::demangle;
use crate::elf::Reader;
use crate::line_table::LineTable;
use gimli::{
    Abbreviations, AttributeValue, DebugAbbrevOffset, DebugInfoOffset, DwAt, Reader as _, Unit, UnitOffset,
};
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// One frame at an address: the function, or a call inlined in it (`inlined`).
#[derive(Clone, Debug)]
pub struct Named {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub inlined: bool,
    /// `function` is a demangled linkage name (qualified, with parameter types), not just
    /// the source's name (`_FUN`, `operator()`, `add` of a local class).
    pub qualified: bool,
}

/// (start, end, what) address ranges.
type Ranges<T> = Vec<(u64, u64, T)>;

/// Names followed through abstract origins and specifications at most this deep.
const MAX_NAME_HOPS: usize = 16;
/// DIE nesting followed at most (guards against corrupt trees).
const MAX_DEPTH: usize = 256;

pub struct LazyDwarf {
    dwarf: gimli::Dwarf<Reader>,
    /// (start, end, unit) address ranges, sorted by start: from .debug_aranges.
    aranges: Ranges<DebugInfoOffset>,
    /// The same from every unit's root entry, made the first time aranges miss.
    scanned: OnceCell<Ranges<DebugInfoOffset>>,
    units: RefCell<HashMap<DebugInfoOffset, Rc<Unit<Reader>>>>,
    /// The abbreviations of the units parsed so far, by .debug_abbrev offset.
    abbreviations: RefCell<HashMap<DebugAbbrevOffset, Arc<Abbreviations>>>,
    /// Where each unit starts, sorted: made the first time a reference crosses units.
    unit_starts: OnceCell<Vec<DebugInfoOffset>>,
    /// See `top_level`.
    top_level: RefCell<HashMap<DebugInfoOffset, Rc<Vec<gimli::Result<Candidate>>>>>,
    /// (start, end, subprogram) of every subprogram of a unit, sorted by start: made for the
    /// units where the descent from the root missed an address.
    subprograms: RefCell<HashMap<DebugInfoOffset, Rc<Ranges<UnitOffset>>>>,
    /// The line tables of the units looked up so far, decoded as far as the lookups needed.
    line_tables: RefCell<HashMap<DebugInfoOffset, LineTable>>,
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
        LazyDwarf {
            dwarf,
            aranges,
            scanned: OnceCell::new(),
            units: RefCell::new(HashMap::new()),
            abbreviations: RefCell::new(HashMap::new()),
            unit_starts: OnceCell::new(),
            top_level: RefCell::new(HashMap::new()),
            subprograms: RefCell::new(HashMap::new()),
            line_tables: RefCell::new(HashMap::new()),
        }
    }

    /// The frames at file address `probe`, innermost (most deeply inlined) first; empty when
    /// no unit covers it.
    pub fn frames(&self, probe: u64) -> Vec<Named> {
        let candidates = covering(&self.aranges, probe);
        let candidates = if candidates.is_empty() { covering(self.scan(), probe) } else { candidates };
        for offset in candidates {
            let Some(unit) = self.unit(offset) else { continue };
            let frames = self.frames_in(offset, &unit, probe).unwrap_or_default();
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
        let abbreviations = self.abbreviations(header.debug_abbrev_offset())?;
        let unit = Rc::new(Unit::new_with_abbreviations(&self.dwarf, header, abbreviations).ok()?);
        self.units.borrow_mut().insert(offset, unit.clone());
        Some(unit)
    }

    /// The abbreviations at `offset`, parsed the first time a unit uses them.
    fn abbreviations(&self, offset: DebugAbbrevOffset) -> Option<Arc<Abbreviations>> {
        if let Some(known) = self.abbreviations.borrow().get(&offset) {
            return Some(known.clone());
        }
        let parsed = Arc::new(self.dwarf.debug_abbrev.abbreviations(offset).ok()?);
        self.abbreviations.borrow_mut().insert(offset, parsed.clone());
        Some(parsed)
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

    /// The code and scope entries right under the root of the unit at `offset`, in order (an
    /// error where reading them failed): the first level of `descend`, whose every lookup read
    /// all of them again (with the types and declarations between them).
    fn top_level(&self, offset: DebugInfoOffset, unit: &Unit<Reader>) -> Rc<Vec<gimli::Result<Candidate>>> {
        if let Some(known) = self.top_level.borrow().get(&offset) {
            return known.clone();
        }
        let mut found = Vec::new();
        let read = (|| -> gimli::Result<()> {
            for at in root_children_to_read(unit)? {
                found.extend(candidate(&self.dwarf, unit, &unit.entry(at)?));
            }
            Ok(())
        })();
        if let Err(e) = read {
            found.push(Err(e));
        }
        let found = Rc::new(found);
        self.top_level.borrow_mut().insert(offset, found.clone());
        found
    }

    /// Every subprogram of the unit at `offset` with its ranges (the whole tree walked once).
    fn subprograms(&self, offset: DebugInfoOffset, unit: &Unit<Reader>) -> Rc<Ranges<UnitOffset>> {
        if let Some(known) = self.subprograms.borrow().get(&offset) {
            return known.clone();
        }
        let mut found = Vec::new();
        let mut entries = unit.entries();
        while let Ok(Some(entry)) = entries.next_dfs() {
            if entry.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            let Ok(mut ranges) = self.dwarf.die_ranges(unit, entry) else { continue };
            while let Ok(Some(r)) = ranges.next() {
                if r.begin < r.end {
                    found.push((r.begin, r.end, entry.offset()));
                }
            }
        }
        found.sort_unstable_by_key(|r| r.0);
        let found = Rc::new(found);
        self.subprograms.borrow_mut().insert(offset, found.clone());
        found
    }

    fn frames_in(
        &self,
        offset: DebugInfoOffset,
        unit: &Unit<Reader>,
        probe: u64,
    ) -> gimli::Result<Vec<Named>> {
        // The chain of entries containing `probe`: a subprogram, then inlined calls in it.
        let mut chain: Vec<(UnitOffset, Option<(u64, u32)>)> = Vec::new();
        // `descend` from the root, its first level read once per unit.
        for child in self.top_level(offset, unit).iter() {
            let inside = |chain: &mut Vec<_>| {
                let mut tree = unit.entries_tree(Some(child.as_ref().map_err(|e| *e)?.offset))?;
                descend(&self.dwarf, unit, tree.root()?, probe, chain, 1)
            };
            if step(child.as_ref().map_err(|e| *e)?, probe, &mut chain, inside)? {
                break;
            }
        }
        if chain.is_empty() {
            // A function nested in a class or another function: found by its ranges.
            if let Some(&function) = covering(&self.subprograms(offset, unit), probe).first() {
                chain.push((function, None));
                let mut tree = unit.entries_tree(Some(function))?;
                descend(&self.dwarf, unit, tree.root()?, probe, &mut chain, 0)?;
            }
        }
        if chain.is_empty() {
            return Ok(Vec::new());
        }
        let mut frames = Vec::with_capacity(chain.len());
        // The innermost frame's line is the line table's; each outer frame's is the call
        // site of the frame it holds.
        let mut location = self.line_at(offset, unit, probe);
        for (depth, (offset, call_site)) in chain.iter().enumerate().rev() {
            let entry = unit.entry(*offset)?;
            let name = self.name(&self.dwarf, unit, &entry, 0);
            frames.push(Named {
                qualified: name.as_ref().is_some_and(|n| n.linkage),
                function: name.map(|n| demangle(&n.text)),
                file: location.as_ref().map(|l| l.0.clone()),
                line: location.as_ref().map(|l| l.1),
                // The chain's first entry is the function; the rest are inlined into it.
                inlined: depth > 0,
            });
            location = call_site.and_then(|(file, line)| Some((self.file_name(unit, file)?, line)));
        }
        Ok(frames)
    }

    /// The name of a subprogram or inlined call, following abstract origins and
    /// specifications — into other units, and into the dwz supplementary file (`dwarf` is
    /// the file `unit` belongs to): the first linkage name on the way, else the first name.
    fn name(
        &self,
        dwarf: &gimli::Dwarf<Reader>,
        unit: &Unit<Reader>,
        entry: &gimli::DebuggingInformationEntry<Reader>,
        hops: usize,
    ) -> Option<RawName> {
        let text = |at| -> Option<String> {
            let raw = dwarf.attr_string(unit, entry.attr_value(at)?).ok()?;
            Some(raw.to_string_lossy().ok()?.into_owned())
        };
        if let Some(text) = text(gimli::DW_AT_linkage_name).or_else(|| text(gimli::DW_AT_MIPS_linkage_name)) {
            return Some(RawName { text, linkage: true });
        }
        let own = text(gimli::DW_AT_name).map(|text| RawName { text, linkage: false });
        let mut origin = None;
        for at in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
            if hops >= MAX_NAME_HOPS {
                break;
            }
            origin = match entry.attr_value(at) {
                Some(AttributeValue::UnitRef(offset)) => {
                    unit.entry(offset).ok().and_then(|e| self.name(dwarf, unit, &e, hops + 1))
                }
                Some(AttributeValue::DebugInfoRef(offset)) => self
                    .unit_holding(dwarf, offset)
                    .and_then(|(other, at)| self.name(dwarf, &other, &other.entry(at).ok()?, hops + 1)),
                Some(AttributeValue::DebugInfoRefSup(offset)) => dwarf.sup().and_then(|sup| {
                    let (other, at) = self.unit_holding(sup, offset)?;
                    self.name(sup, &other, &other.entry(at).ok()?, hops + 1)
                }),
                _ => continue,
            };
            break;
        }
        match (origin, own) {
            (Some(origin), _) if origin.linkage => Some(origin),
            (origin, own) => own.or(origin),
        }
    }

    /// The unit of `dwarf` holding .debug_info offset `offset`, and the offset within it
    /// (units of the module's own file are cached, a supplementary file's are not).
    fn unit_holding(
        &self,
        dwarf: &gimli::Dwarf<Reader>,
        offset: DebugInfoOffset,
    ) -> Option<(Rc<Unit<Reader>>, UnitOffset)> {
        let unit = if std::ptr::eq(dwarf, &self.dwarf) {
            let starts = self.unit_starts.get_or_init(|| unit_starts(dwarf, None));
            let holder = starts.get(starts.partition_point(|s| s.0 <= offset.0).checked_sub(1)?)?;
            self.unit(*holder)?
        } else {
            let holder = *unit_starts(dwarf, Some(offset)).last()?;
            Rc::new(dwarf.unit(dwarf.debug_info.header_from_offset(holder).ok()?).ok()?)
        };
        let in_unit = offset.to_unit_offset(&unit.header)?;
        Some((unit, in_unit))
    }

    /// (file, line) of the line-table row covering `probe` in the unit at `offset`.
    fn line_at(&self, offset: DebugInfoOffset, unit: &Unit<Reader>, probe: u64) -> Option<(String, u32)> {
        let row = {
            let mut tables = self.line_tables.borrow_mut();
            let table = match tables.entry(offset) {
                std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                std::collections::hash_map::Entry::Vacant(new) => {
                    new.insert(LineTable::new(unit.line_program.clone()?))
                }
            };
            table.find(probe)?
        };
        // Line 0: code with no source line (compiler-generated).
        (row.line != 0).then(|| Some((self.file_name(unit, row.file)?, row.line))).flatten()
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
        // Directory 0 is the compilation directory: DW_AT_comp_dir before DWARF 5 (gimli
        // gives it), the line table's own first entry from DWARF 5 on, which replaces
        // comp_dir (GCC 16 sets it to the source's directory while comp_dir says "/").
        if let Some(dir) = file.directory(header).and_then(text) {
            if file.directory_index() == 0 {
                path = dir;
            } else {
                push_path(&mut path, &dir);
            }
        }
        push_path(&mut path, &text(file.path_name())?);
        Some(path)
    }
}

/// The entries right under the root of `unit` that can be [`candidate`]s, found by their
/// abbreviations alone: scopes, and code with an address range (code without one, such as
/// the declarations of every function a header declares, can hold no address). Every other
/// entry is skipped without its attributes being read, and its children by DW_AT_sibling
/// where it has one: reading each top-level entry whole was a quarter of a run's
/// instructions (a CPython unit has thousands of them, mostly from the headers).
fn root_children_to_read(unit: &Unit<Reader>) -> gimli::Result<Vec<UnitOffset>> {
    let mut wanted = Vec::new();
    let mut raw = unit.entries_raw(None)?;
    let Some(root) = raw.read_abbreviation()? else { return Ok(wanted) };
    raw.skip_attributes(root.attributes())?;
    if !root.has_children() {
        return Ok(wanted);
    }
    // The depth of the root's children in `raw` (which restarts at 0 when it jumps to a sibling).
    let mut level = raw.next_depth();
    while !raw.is_empty() {
        let at = raw.next_offset();
        let Some(abbreviation) = raw.read_abbreviation()? else { break };
        let specs = abbreviation.attributes();
        let has = |name| specs.iter().any(|s| s.name() == name);
        let tag = abbreviation.tag();
        let code = matches!(tag, gimli::DW_TAG_subprogram | gimli::DW_TAG_inlined_subroutine);
        if (code && (has(gimli::DW_AT_low_pc) || has(gimli::DW_AT_ranges))) || (!code && is_scope(tag)) {
            wanted.push(at);
        }
        // The attributes before DW_AT_sibling skipped together, it read, those after skipped.
        let mut sibling = None;
        let at_sibling = specs.iter().position(|s| s.name() == gimli::DW_AT_sibling);
        match at_sibling.filter(|_| abbreviation.has_children()) {
            Some(index) => {
                raw.skip_attributes(&specs[..index])?;
                if let AttributeValue::UnitRef(next) = raw.read_attribute(specs[index])?.value() {
                    sibling = Some(next);
                }
                raw.skip_attributes(&specs[index + 1..])?;
            }
            None => raw.skip_attributes(specs)?,
        }
        if !abbreviation.has_children() {
            continue;
        }
        if let Some(next) = sibling.filter(|next| next.0 > at.0) {
            raw = unit.entries_raw(Some(next))?;
            level = raw.next_depth();
            continue;
        }
        while raw.next_depth() > level && !raw.is_empty() {
            if let Some(descendant) = raw.read_abbreviation()? {
                raw.skip_attributes(descendant.attributes())?;
            }
        }
    }
    Ok(wanted)
}

fn is_scope(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_lexical_block
            | gimli::DW_TAG_namespace
            | gimli::DW_TAG_module
            | gimli::DW_TAG_try_block
            | gimli::DW_TAG_catch_block
    )
}

/// Where the units of `dwarf` start, in order; only those at or below `up_to` when given.
fn unit_starts(dwarf: &gimli::Dwarf<Reader>, up_to: Option<DebugInfoOffset>) -> Vec<DebugInfoOffset> {
    let mut starts = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        match header.debug_info_offset() {
            Some(start) if up_to.is_none_or(|end| start.0 <= end.0) => starts.push(start),
            _ => break,
        }
    }
    starts
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

/// A name as DWARF has it, before demangling.
struct RawName {
    text: String,
    /// A linkage (mangled) name, not DW_AT_name.
    linkage: bool,
}

/// The entries (units, subprograms) whose ranges, sorted by start, contain `probe`;
/// the one starting nearest below it first.
fn covering<T: Copy + PartialEq>(ranges: &[(u64, u64, T)], probe: u64) -> Vec<T> {
    let end = ranges.partition_point(|r| r.0 <= probe);
    let mut out: Vec<T> = ranges[..end].iter().rev().filter(|r| probe < r.1).map(|r| r.2).collect();
    out.dedup();
    out
}

/// An entry `descend` looks into: code (a subprogram or an inlined call) or a scope that may
/// hold code, with its ranges.
struct Candidate {
    offset: UnitOffset,
    is_code: bool,
    /// An inlined call's call site (file, line).
    call_site: Option<(u64, u32)>,
    ranges: Vec<(u64, u64)>,
}

/// `entry` as a [`Candidate`]; None when it is neither code nor a scope.
fn candidate(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &Unit<Reader>,
    entry: &gimli::DebuggingInformationEntry<Reader>,
) -> Option<gimli::Result<Candidate>> {
    let tag = entry.tag();
    let is_code = matches!(tag, gimli::DW_TAG_subprogram | gimli::DW_TAG_inlined_subroutine);
    let scope = is_scope(tag);
    if !is_code && !scope {
        return None;
    }
    let ranges = (|| -> gimli::Result<Vec<(u64, u64)>> {
        let mut found = Vec::new();
        let mut ranges = dwarf.die_ranges(unit, entry)?;
        while let Some(r) = ranges.next()? {
            found.push((r.begin, r.end));
        }
        Ok(found)
    })();
    Some(ranges.map(|ranges| Candidate {
        offset: entry.offset(),
        is_code,
        call_site: (tag == gimli::DW_TAG_inlined_subroutine).then(|| call_site(entry)).flatten(),
        ranges,
    }))
}

/// One step of `descend`: when `child` contains `probe` (or is a scope without ranges, as
/// namespaces are, which may hold code), pushes it onto `chain` if it is code and walks into
/// it with `inside`. True when the walk ends there.
fn step(
    child: &Candidate,
    probe: u64,
    chain: &mut Vec<(UnitOffset, Option<(u64, u32)>)>,
    inside: impl FnOnce(&mut Vec<(UnitOffset, Option<(u64, u32)>)>) -> gimli::Result<()>,
) -> gimli::Result<bool> {
    let contains = child.ranges.iter().any(|&(begin, end)| begin <= probe && probe < end);
    if !contains && (child.is_code || !child.ranges.is_empty()) {
        return Ok(false);
    }
    if child.is_code {
        chain.push((child.offset, child.call_site));
    }
    let before = chain.len();
    inside(chain)?;
    Ok(contains && (child.is_code || chain.len() > before))
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
        let Some(found) = candidate(dwarf, unit, child.entry()) else { continue };
        if step(&found?, probe, chain, |chain| descend(dwarf, unit, child, probe, chain, depth + 1))? {
            return Ok(());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::ElfFile;

    /// A lambda's `operator()` and a local class's member function: DWARF nests both in the
    /// function that defines them (the lambda's also in its closure type), whose own code
    /// does not contain theirs.
    const NESTED: &str = "\
template <typename F> __attribute__((noinline)) int call(F f) { return f(); }
int outer(int x) {
    struct Local {
        __attribute__((noinline)) static int twice(int v) {
            return v * 2;  // @twice
        }
    };
    return call([x] {
        return Local::twice(x) + 1;  // @lambda
    });
}
";

    fn marker_line(marker: &str) -> u32 {
        let index = NESTED.lines().position(|l| l.ends_with(&format!("// @{marker}"))).unwrap();
        index as u32 + 1
    }

    /// Two units; `in_b`'s is left out of .debug_aranges (its object's aranges removed
    /// before linking), as some toolchains do (clang without -gdwarf-aranges).
    const UNIT_A: &str = "__attribute__((noinline)) int in_a(int x) {\n    return x * 3;  // @a\n}\n";
    const UNIT_B: &str = "__attribute__((noinline)) int in_b(int x) {\n    return x + 7;  // @b\n}\n";

    fn run(program: &str, args: &[&std::ffi::OsStr]) {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("these tests need {program} (gcc, binutils): {e}"));
        assert!(status.success(), "{program} {args:?}");
    }

    /// (function, file name, line) of the outermost frame at the first address of `function`
    /// (a symbol) whose line is 2, the body's.
    fn body_frame(file: &ElfFile, dwarf: &LazyDwarf, function: &str) -> (String, String, u32) {
        let symbols = file.symbols();
        let start = symbols.iter().find(|(_, name)| *name == function).unwrap().0.address;
        let frames = (start..start + 64)
            .map(|a| dwarf.frames(a))
            .find(|f| f.last().is_some_and(|f| f.line == Some(2)));
        let frame = frames.unwrap_or_else(|| panic!("{function}: no frame on line 2")).pop().unwrap();
        let file_name =
            frame.file.as_deref().and_then(|f| f.rsplit('/').next()).unwrap_or_default().to_string();
        (frame.function.unwrap_or_default(), file_name, frame.line.unwrap())
    }

    #[test]
    fn the_unit_comes_from_aranges_else_from_every_units_ranges() {
        let dir = std::env::temp_dir().join(format!("crashcatch-aranges-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |name: &str| dir.join(name);
        for (name, source) in [("a", UNIT_A), ("b", UNIT_B)] {
            std::fs::write(path(&format!("{name}.c")), source).unwrap();
            let (c, o) = (path(&format!("{name}.c")), path(&format!("{name}.o")));
            run(
                "gcc",
                &[
                    "-c".as_ref(),
                    "-g".as_ref(),
                    "-O0".as_ref(),
                    "-fPIC".as_ref(),
                    "-o".as_ref(),
                    o.as_ref(),
                    c.as_ref(),
                ],
            );
        }
        run("objcopy", &["--remove-section=.debug_aranges".as_ref(), path("b.o").as_ref()]);
        let (partial, none) = (path("partial.so"), path("none.so"));
        let link = [path("a.o"), path("b.o")];
        run(
            "gcc",
            &["-shared".as_ref(), "-o".as_ref(), partial.as_ref(), link[0].as_ref(), link[1].as_ref()],
        );
        run("objcopy", &["--remove-section=.debug_aranges".as_ref(), partial.as_ref(), none.as_ref()]);
        let expected = |f: &str, file: &str| (f.to_string(), file.to_string(), 2);

        // in_a's unit is in aranges: only it is parsed (its abbreviations too), nothing scanned.
        let file = ElfFile::open(&partial).unwrap();
        // C only: no C++ name the symbol table could give, so it is never made for DWARF's names.
        assert!(!file.lazy_symbols().has_mangled());
        let dwarf = LazyDwarf::new(file.dwarf().unwrap());
        assert!(!dwarf.aranges.is_empty());
        assert_eq!(body_frame(&file, &dwarf, "in_a"), expected("in_a", "a.c"));
        assert_eq!((dwarf.units.borrow().len(), dwarf.abbreviations.borrow().len()), (1, 1));
        assert!(dwarf.scanned.get().is_none());
        // in_b's is not: found by every unit's root ranges.
        assert_eq!(body_frame(&file, &dwarf, "in_b"), expected("in_b", "b.c"));
        assert!(dwarf.scanned.get().is_some_and(|s| s.len() >= 2));

        // No .debug_aranges at all: both by the scan.
        let file = ElfFile::open(&none).unwrap();
        let dwarf = LazyDwarf::new(file.dwarf().unwrap());
        assert!(dwarf.aranges.is_empty());
        assert_eq!(body_frame(&file, &dwarf, "in_b"), expected("in_b", "b.c"));
        assert_eq!(body_frame(&file, &dwarf, "in_a"), expected("in_a", "a.c"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn functions_nested_in_classes_inside_functions_are_found() {
        let dir = std::env::temp_dir().join(format!("crashcatch-dwarf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (source, library) = (dir.join("nested.cpp"), dir.join("nested.so"));
        std::fs::write(&source, NESTED).unwrap();
        let built = std::process::Command::new("c++")
            .args(["-shared", "-fPIC", "-g", "-O0", "-o"])
            .arg(&library)
            .arg(&source)
            .status()
            .expect("these tests need a C++ compiler (install g++)");
        assert!(built.success());
        let file = ElfFile::open(&library).unwrap();
        let dwarf = LazyDwarf::new(file.dwarf().unwrap());
        assert!(file.lazy_symbols().has_mangled());
        let symbols = file.symbols();
        let address_of = |mangled: &str| symbols.iter().find(|(_, name)| *name == mangled).unwrap().0.address;
        for (mangled, name, marker) in [
            ("_ZZ5outeriEN5Local5twiceEi", "twice", "twice"),
            ("_ZZ5outeriENKUlvE_clEv", "operator()", "lambda"),
        ] {
            // Past the prologue, on the marked line.
            let start = address_of(mangled);
            let frames = (start..start + 64)
                .map(|a| dwarf.frames(a))
                .find(|f| f.first().is_some_and(|f| f.line == Some(marker_line(marker))));
            let frames =
                frames.unwrap_or_else(|| panic!("{mangled}: no frame on line {}", marker_line(marker)));
            assert_eq!(frames.len(), 1, "{frames:?}");
            assert_eq!(frames[0].function.as_deref(), Some(name));
            assert_eq!(frames[0].file.as_deref(), source.to_str());
            assert!(!frames[0].inlined && !frames[0].qualified);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
