//! One ELF file (a module, or a separate debug file), memory-mapped and parsed once.
//!
//! Its section bytes are handed to framehop (CFI) and gimli/addr2line (DWARF) as [`Bytes`]:
//! slices of the shared mapping, so nothing is copied except sections that are stored
//! compressed (debug files often are), which are inflated on first use.

use gimli::SectionId;
use memmap2::Mmap;
use object::{
    Object, ObjectSection, ObjectSegment, ObjectSymbol, ObjectSymbolTable, SectionKind, SymbolMap,
    SymbolMapEntry,
};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Section data: a range of a mapped file, or inflated bytes of a compressed section.
#[derive(Clone)]
pub enum Bytes {
    Mapped(Arc<Mmap>, Range<usize>),
    /// A `Vec`, not `[u8]`: turning the inflated `Vec` into an `Arc<[u8]>` would copy it,
    /// doubling the peak memory of libc's 6 MB .debug_info.
    Owned(Arc<Vec<u8>>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            // Ranges are checked when made; `get` keeps a bad one from panicking anyway.
            Bytes::Mapped(map, range) => map.get(range.clone()).unwrap_or(&[]),
            Bytes::Owned(bytes) => bytes,
        }
    }
}

impl Default for Bytes {
    fn default() -> Bytes {
        Bytes::Owned(Arc::new(Vec::new()))
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.len())
    }
}

// SAFETY: `deref` points into the mapping owned by the `Arc<Mmap>` or into the `Arc<Vec<u8>>`
// `Vec`'s heap buffer. Neither moves when a `Bytes` (or a clone of it) moves, and both live as long
// as any clone holds its `Arc`, which is what gimli's `EndianReader` needs.
unsafe impl gimli::StableDeref for Bytes {}
// SAFETY: cloning a `Bytes` clones the `Arc`, so the clone derefs to the same address.
unsafe impl gimli::CloneStableDeref for Bytes {}

/// The DWARF reader used over [`Bytes`].
pub type Reader = gimli::EndianReader<gimli::RunTimeEndian, Bytes>;

/// A symbol table entry; its name is a range of the file's mapping (a copy of every name of
/// libpython's 17,000 symbols was a third of building its table).
pub struct Sym {
    pub address: u64,
    pub size: u64,
    name: Range<usize>,
}

/// A file's symbol table by address (built only for modules that have frames to name).
pub struct Symbols {
    map: SymbolMap<Sym>,
    /// The mapping the names are in.
    file: Option<Arc<Mmap>>,
}

impl Symbols {
    pub fn empty() -> Symbols {
        Symbols { map: SymbolMap::new(Vec::new()), file: None }
    }

    /// The symbol containing `address`, and its name.
    pub fn containing(&self, address: u64) -> Option<(&Sym, &str)> {
        self.map.containing(address).map(|s| (s, self.name(s)))
    }

    /// Every symbol with its name, by address.
    pub fn iter(&self) -> impl Iterator<Item = (&Sym, &str)> {
        self.map.symbols().iter().map(|s| (s, self.name(s)))
    }

    fn name(&self, sym: &Sym) -> &str {
        let bytes = self.file.as_ref().and_then(|f| f.get(sym.name.clone())).unwrap_or_default();
        // Checked when the table was made: object gives only UTF-8 names.
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl SymbolMapEntry for Sym {
    fn address(&self) -> u64 {
        self.address
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// What the unwinder needs from a module file: section address ranges and bytes.
#[derive(Default)]
pub struct Cfi {
    pub text: Option<(Range<u64>, Bytes)>,
    pub eh_frame: Option<(Range<u64>, Bytes)>,
    pub eh_frame_hdr: Option<(Range<u64>, Bytes)>,
    pub debug_frame: Option<Bytes>,
    pub got: Option<Range<u64>>,
}

/// A mapped ELF file and what one parse of it told.
pub struct ElfFile {
    pub path: PathBuf,
    map: Arc<Mmap>,
    /// Lowercase hex of the GNU build id note.
    pub build_id: Option<String>,
    /// The lowest segment address (see `native::ModuleFile`); None without program headers.
    pub base_svma: Option<u64>,
    /// Whether it has DWARF (.debug_info with contents, not a NOBITS placeholder).
    pub has_dwarf: bool,
    /// Whether it has a .symtab (a debug file made with --only-keep-debug keeps it).
    pub has_symtab: bool,
    /// `.gnu_debuglink`: the debug file's name and the CRC32 of its contents.
    pub debuglink: Option<(String, u32)>,
    /// `.gnu_debugaltlink` (dwz): the supplementary file's path and build id.
    pub altlink: Option<(String, String)>,
    pub cfi: Cfi,
}

/// The identifier minidump-writer (like Breakpad) records for a module without a build-id
/// note (a vendored OpenBLAS in a wheel, say): the first page of its first executable
/// section, XOR-folded into 16 bytes. Computed the same way here, such a file is still
/// recognised as the dump's, and a different build of it is not.
fn text_hash(obj: &object::File) -> Option<[u8; 16]> {
    const SHF_ALLOC: u64 = 0x2;
    let text = obj.sections().find(|s| {
        s.kind() == SectionKind::Text
            && matches!(s.flags(), object::SectionFlags::Elf { sh_flags, .. } if sh_flags.0 & SHF_ALLOC != 0)
    })?;
    let (offset, size) = text.file_range()?;
    let start = usize::try_from(offset).ok()?;
    let len = usize::try_from(size.min(4096)).ok()?;
    let page = obj_data(obj).get(start..start.checked_add(len)?)?;
    let mut id = [0u8; 16];
    for chunk in page.chunks(16) {
        id.iter_mut().zip(chunk).for_each(|(b, c)| *b ^= c);
    }
    Some(id)
}

fn obj_data<'a>(obj: &object::File<'a>) -> &'a [u8] {
    match obj {
        object::File::Elf64(f) => f.data(),
        object::File::Elf32(f) => f.data(),
        _ => &[],
    }
}

pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sub` as a range of `map` when it lies in it (it does for uncompressed sections),
/// otherwise copied.
fn sub_bytes(map: &Arc<Mmap>, sub: &[u8]) -> Bytes {
    let start = (sub.as_ptr() as usize).wrapping_sub(map.as_ptr() as usize);
    if start <= map.len() && sub.len() <= map.len() - start {
        Bytes::Mapped(map.clone(), start..start + sub.len())
    } else {
        Bytes::Owned(Arc::new(sub.to_vec()))
    }
}

fn section_bytes(map: &Arc<Mmap>, section: &object::Section) -> Option<Bytes> {
    if section.kind() == SectionKind::UninitializedData {
        return None; // NOBITS: a debug file's placeholder for the module's own section
    }
    match section.uncompressed_data().ok()? {
        Cow::Borrowed(b) => Some(sub_bytes(map, b)),
        Cow::Owned(v) => Some(Bytes::Owned(Arc::new(v))),
    }
    .filter(|b| !b.is_empty())
}

impl ElfFile {
    /// Maps and parses `path`. The error says which file and why.
    pub fn open(path: &Path) -> Result<ElfFile, String> {
        let shown = path.display();
        // Only regular files: opening a FIFO would block, mapping a directory fails.
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("{shown}: not a regular file"));
        }
        let file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
        // SAFETY: the mapping is read-only and private. Module and debug files are not
        // expected to change while we read them (debuginfod downloads are renamed into
        // place, never rewritten); a file truncated meanwhile could fault, as it would for
        // gdb or addr2line, which map them the same way.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("{shown}: cannot map: {e}"))?;
        let map = Arc::new(map);
        let obj = object::File::parse(&map[..]).map_err(|e| format!("{shown}: not an ELF file: {e}"))?;
        let section = |name: &str| obj.section_by_name(name);
        let range = |s: &object::Section| s.address()..s.address().saturating_add(s.size());
        let with_range = |name: &str| {
            let s = section(name)?;
            Some((range(&s), section_bytes(&map, &s)?))
        };
        let cfi = Cfi {
            text: with_range(".text"),
            eh_frame: with_range(".eh_frame"),
            eh_frame_hdr: with_range(".eh_frame_hdr"),
            debug_frame: section(".debug_frame").and_then(|s| section_bytes(&map, &s)),
            got: section(".got").map(|s| range(&s)),
        };
        let has_dwarf = section(".debug_info")
            .is_some_and(|s| s.kind() != SectionKind::UninitializedData && s.size() > 0);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(ElfFile {
            path: path.to_path_buf(),
            build_id: obj.build_id().ok().flatten().map(hex).or_else(|| text_hash(&obj).map(|h| hex(&h))),
            base_svma: obj.segments().map(|s| s.address()).min(),
            has_dwarf,
            has_symtab: obj.symbol_table().is_some(),
            debuglink: obj.gnu_debuglink().ok().flatten().map(|(n, crc)| (text(n), crc)),
            altlink: obj.gnu_debugaltlink().ok().flatten().map(|(n, id)| (text(n), hex(id))),
            cfi,
            map,
        })
    }

    /// Like [`ElfFile::open`], refusing a file whose build id is not `want`.
    pub fn open_checked(path: &Path, want: Option<&str>) -> Result<ElfFile, String> {
        let file = ElfFile::open(path)?;
        match (want, file.build_id.as_deref()) {
            (Some(w), Some(h)) if w == h => Ok(file),
            (Some(w), h) => {
                Err(format!("{}: build id {} is not the dump's {w}", path.display(), h.unwrap_or("(none)")))
            }
            (None, _) => Err(format!("{}: the dump has no build id for it", path.display())),
        }
    }

    /// CRC32 of the whole file, as `.gnu_debuglink` records it.
    pub fn crc32(&self) -> u32 {
        crc32fast::hash(&self.map)
    }

    /// The whole file's bytes (its mapping).
    pub fn data(&self) -> &[u8] {
        &self.map
    }

    fn parse(&self) -> Result<object::File<'_>, String> {
        object::File::parse(&self.map[..]).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Calls `f` with a loader of this file's DWARF sections (slices of the mapping,
    /// compressed ones inflated; absent ones empty).
    fn with_sections<T>(
        &self,
        f: impl FnOnce(&mut dyn FnMut(SectionId) -> Result<Reader, String>) -> T,
    ) -> Result<T, String> {
        let obj = self.parse()?;
        let endian =
            if obj.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
        let cache = crate::dwarf_cache::root();
        let mut load = |id: SectionId| {
            let bytes = match id {
                // Not used to find functions and lines: spares inflating them (libc's
                // compressed .debug_loclists alone is several MB).
                SectionId::DebugLoc
                | SectionId::DebugLocLists
                | SectionId::DebugMacinfo
                | SectionId::DebugMacro => None,
                SectionId::DebugPubNames | SectionId::DebugPubTypes => None,
                _ => obj.section_by_name(id.name()).and_then(|s| self.dwarf_section(&s, cache.as_deref())),
            };
            Ok(gimli::EndianReader::new(bytes.unwrap_or_default(), endian))
        };
        Ok(f(&mut load))
    }

    /// A DWARF section's bytes; a compressed one's inflated copy comes from the cache by
    /// build id (`dwarf_cache`) when the file has one.
    fn dwarf_section(&self, section: &object::Section, cache: Option<&Path>) -> Option<Bytes> {
        let range = section.compressed_file_range().ok()?;
        let build_id = self.build_id.as_deref().filter(|_| range.format != object::CompressionFormat::None);
        let Some(build_id) = build_id.filter(|_| section.kind() != SectionKind::UninitializedData) else {
            return section_bytes(&self.map, section);
        };
        let inflate = || section.uncompressed_data().ok().map(Cow::into_owned);
        let name = section.name().ok()?;
        crate::dwarf_cache::inflated(cache, build_id, name, range.uncompressed_size, inflate)
            .filter(|b| !b.is_empty())
    }

    /// This file's DWARF.
    pub fn dwarf(&self) -> Result<gimli::Dwarf<Reader>, String> {
        self.with_sections(|load| gimli::Dwarf::load(load))?
    }

    /// Adds this file as the dwz supplementary object of `dwarf`.
    pub fn load_as_sup(&self, dwarf: &mut gimli::Dwarf<Reader>) -> Result<(), String> {
        self.with_sections(|load| dwarf.load_sup(load))?
    }

    /// Symbol table (.symtab, else .dynsym) entries, sized, by address.
    pub fn symbols(&self) -> Symbols {
        symbols_of(&self.map)
    }

    /// The same, made the first time it is asked for.
    pub fn lazy_symbols(&self) -> LazySymbols {
        LazySymbols { file: Some(self.map.clone()), table: OnceCell::new(), mangled: OnceCell::new() }
    }
}

fn symbols_of(file: &Arc<Mmap>) -> Symbols {
    let Ok(obj) = object::File::parse(&file[..]) else { return Symbols::empty() };
    let start = file.as_ptr() as usize;
    // Names lie in the mapping (string tables are not compressed); any other is left out.
    let in_map = |name: &str| {
        let offset = (name.as_ptr() as usize).checked_sub(start)?;
        (offset.checked_add(name.len())? <= file.len()).then(|| offset..offset + name.len())
    };
    let map = obj.symbol_map();
    let entries = map
        .symbols()
        .iter()
        .filter_map(|s| Some(Sym { address: s.address(), size: s.size(), name: in_map(s.name())? }));
    Symbols { map: SymbolMap::new(entries.collect()), file: Some(file.clone()) }
}

/// A file's [`Symbols`], made on first use: a module whose frames DWARF names fully (C++
/// linkage names, or C where the table has no C++ name to offer) never needs its table.
pub struct LazySymbols {
    file: Option<Arc<Mmap>>,
    table: OnceCell<Symbols>,
    mangled: OnceCell<bool>,
}

impl LazySymbols {
    pub fn none() -> LazySymbols {
        LazySymbols { file: None, table: OnceCell::new(), mangled: OnceCell::new() }
    }

    pub fn get(&self) -> &Symbols {
        self.table.get_or_init(|| self.file.as_ref().map_or_else(Symbols::empty, symbols_of))
    }

    /// Whether the table [`Symbols`] are made from has a C++ (`_Z`) name: one pass over the
    /// raw names, without sorting them or checking their UTF-8 (libpython has none of its
    /// 17,000, and needs no table then).
    pub fn has_mangled(&self) -> bool {
        *self.mangled.get_or_init(|| {
            let Some(Ok(obj)) = self.file.as_ref().map(|f| object::File::parse(&f[..])) else { return false };
            let Some(table) = obj.symbol_table().or_else(|| obj.dynamic_symbol_table()) else { return false };
            table.symbols().any(|s| s.name_bytes().is_ok_and(|n| n.starts_with(b"_Z")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_executable_is_mapped_once_and_its_cfi_not_copied() {
        let exe = std::env::current_exe().unwrap();
        let file = ElfFile::open(&exe).unwrap();
        let id = file.build_id.clone().expect("the linker gives test binaries a build id");
        assert!(ElfFile::open_checked(&exe, Some(&id)).is_ok());
        let err = ElfFile::open_checked(&exe, Some("00")).err().unwrap();
        assert!(err.contains(&format!("build id {id} is not the dump's 00")), "{err}");
        let (_, eh_frame) = file.cfi.eh_frame.as_ref().expect(".eh_frame");
        assert!(matches!(eh_frame, Bytes::Mapped(..)) && !eh_frame.is_empty());
        assert!(file.has_dwarf && file.dwarf().is_ok());
        assert!(file.symbols().iter().any(|(_, name)| name.contains("main")));
    }

    #[test]
    fn missing_and_non_elf_files_are_errors_that_name_them() {
        let err = ElfFile::open(Path::new("/nonexistent/x.so")).err().unwrap();
        assert!(err.starts_with("/nonexistent/x.so: "), "{err}");
        let err = ElfFile::open(Path::new("/proc/self/cmdline")).err().unwrap();
        assert!(err.starts_with("/proc/self/cmdline: "), "{err}");
    }
}
