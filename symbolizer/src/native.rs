//! Native stacks from a dump: every thread unwound with the CFI (.eh_frame, .debug_frame) of
//! the module files (framehop), then symbolized with DWARF (`symbols`, `dwarf`): function,
//! inlined frames, file:line. A file is used only if its build id equals the one the dump
//! recorded; otherwise frames show module+offset.
//!
//! Module files are memory-mapped and parsed once when the dump is loaded (the unwinder
//! needs every module's CFI). DWARF is looked up lazily, only for modules that have frames
//! to name: in the module file, else in a separate debug file (`debuginfo`: build-id
//! directories, .gnu_debuglink, debuginfod).

use crate::debuginfo::{self, Search};
use crate::elf::{Bytes, ElfFile};
use crate::merge::Plumbing;
use crate::symbols::{self, Lookup};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module as FhModule, Unwinder};
use minidump::{Minidump, MinidumpModuleList, Module};
use std::cell::{OnceCell, RefCell};
use std::path::{Path, PathBuf};

/// One native frame (an inlined call is a frame of its own, `inlined: true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NativeFrame {
    pub address: u64,
    pub module: Option<String>,
    pub module_offset: u64,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub inlined: bool,
    /// How the frame was found: "context" (the thread's registers), "cfi" (the callee's
    /// unwind tables) or "frame pointer" (the callee had no usable module file, so no CFI).
    pub trust: &'static str,
    /// The stack pointer while this frame runs (at its call to the next frame in): the
    /// frame's locals lie between it and the caller's `sp`. Inlined frames share it.
    pub sp: u64,
    /// Where the module's symbols came from ("module file", "build-id dir", "debuglink",
    /// "debuginfod", "symbol table only"); None when its module has no usable file.
    pub symbol_source: Option<&'static str>,
}

struct ModuleFile {
    /// The path the dump recorded, and its file name (what frames show).
    recorded: String,
    name: Option<String>,
    /// Lowercase hex of the dump's build id for it.
    build_id: Option<String>,
    base: u64,
    size: u64,
    /// The build-id-checked module file found on disk.
    local: Option<ElfFile>,
    /// Why candidate module files were not used.
    refused: Vec<String>,
    /// Without a local file: debuginfod's copy, asked for the first time a frame lands in
    /// the module (so a dump's many frameless modules cost no request), or why there is none.
    fetched: OnceCell<Result<ElfFile, String>>,
    /// Filled on the first frame to symbolize in this module.
    symbols: OnceCell<Lookup>,
}

/// One module loaded in the target, as a dump or a debugger's target lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedModule {
    /// Its file's path in the target (empty or a pseudo name for the vDSO).
    pub path: String,
    pub base: u64,
    pub size: u64,
    /// Lowercase hex; a file is used only with this build id.
    pub build_id: Option<String>,
}

/// With `/proc/PID/root` as the sysroot (`symbolize --pid`), the file the process has mapped
/// at `base`, whatever its path says: `/proc/PID/map_files/BASE-END` opens the very file,
/// from another mount namespace, through a chroot, or deleted since (an upgraded library).
fn process_mapped_file(sysroot: &Path, base: u64) -> Option<PathBuf> {
    let proc_dir = sysroot.strip_prefix("/proc").ok()?;
    let (pid, rest) = proc_dir.to_str()?.split_once('/')?;
    if rest.trim_end_matches('/') != "root" {
        return None;
    }
    modfiles::map_files_entry(pid.parse().ok()?, base)
}

impl ModuleFile {
    /// The first candidate file whose build id is `m`'s: the file a live process maps there
    /// (`process_mapped_file`), under `sysroot` (as gdb's `set sysroot`: a module recorded at
    /// /p is looked for at SYSROOT/p), its recorded path, then `<dir>/<file name>` for each of
    /// `symbol_dirs`.
    fn find(m: &LoadedModule, symbol_dirs: &[PathBuf], sysroot: Option<&Path>) -> ModuleFile {
        let name = PathBuf::from(&m.path).file_name().map(|n| n.to_string_lossy().into_owned());
        let in_sysroot = sysroot.and_then(|root| Some(root.join(m.path.strip_prefix('/')?)));
        let candidates = sysroot
            .and_then(|root| process_mapped_file(root, m.base))
            .into_iter()
            .chain(in_sysroot)
            .chain(std::iter::once(PathBuf::from(&m.path)))
            .chain(symbol_dirs.iter().filter_map(|d| Some(d.join(name.as_ref()?))));
        let mut refused = Vec::new();
        let mut local = None;
        for candidate in candidates {
            match ElfFile::open_checked(&candidate, m.build_id.as_deref()) {
                Ok(file) => {
                    local = Some(file);
                    break;
                }
                Err(why) => refused.push(why),
            }
        }
        ModuleFile {
            recorded: m.path.clone(),
            name,
            build_id: m.build_id.clone(),
            base: m.base,
            size: m.size,
            local,
            refused,
            fetched: OnceCell::new(),
            symbols: OnceCell::new(),
        }
    }
}

/// The modules of a dump, with their files when they can be used.
pub struct Modules {
    /// In the dump's order (the main executable first).
    list: Vec<ModuleFile>,
    /// Indices into `list`, by base address: a frame's module is found by binary search.
    by_base: Vec<usize>,
    /// Grows when debuginfod supplies a module file (RefCell: unwinding reads `&self`).
    unwinder: RefCell<UnwinderX86_64<Bytes>>,
    search: Search,
}

impl Modules {
    /// The dump's modules, each with the first candidate file whose build id is the dump's:
    /// under `sysroot`, at the path recorded in the dump, then `<dir>/<file name>` for each of
    /// `symbol_dirs`,
    /// then (with `$DEBUGINFOD_URLS`, and only once a frame is in it) debuginfod's copy.
    /// Separate debug files are looked for later, as `debuginfo` says, for the modules that
    /// have frames.
    pub fn load<T: std::ops::Deref<Target = [u8]>>(
        dump: &Minidump<T>,
        symbol_dirs: &[PathBuf],
        sysroot: Option<&Path>,
    ) -> Modules {
        let listed: Vec<LoadedModule> = match dump.get_stream::<MinidumpModuleList>() {
            Ok(modules) => modules
                .iter()
                .map(|m| LoadedModule {
                    path: m.code_file().to_string(),
                    base: m.base_address(),
                    size: m.size(),
                    build_id: m.code_identifier().map(|c| c.to_string().to_lowercase()),
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        Modules::from_list(&listed, symbol_dirs, sysroot)
    }

    /// Like [`Modules::load`], from a module list found elsewhere (a debugger's target), the
    /// main executable first.
    pub fn from_list(listed: &[LoadedModule], symbol_dirs: &[PathBuf], sysroot: Option<&Path>) -> Modules {
        let search = Search::from_env(symbol_dirs, sysroot);
        let list: Vec<ModuleFile> =
            listed.iter().map(|m| ModuleFile::find(m, symbol_dirs, sysroot)).collect();
        let mut by_base: Vec<usize> = (0..list.len()).collect();
        by_base.sort_by_key(|&i| list[i].base);
        // In address order: framehop keeps its modules sorted, and each one added below the
        // last would move all those above it.
        let mut unwinder = UnwinderX86_64::new();
        for m in by_base.iter().map(|&i| &list[i]) {
            if let Some(file) = &m.local {
                unwinder.add_module(unwind_module(m, file));
            }
        }
        Modules { list, by_base, unwinder: RefCell::new(unwinder), search }
    }

    /// The module holding `addr`: the one with the highest base at or below it, if it
    /// reaches that far (modules of a sane dump do not overlap).
    fn at(&self, addr: u64) -> Option<&ModuleFile> {
        let above = self.by_base.partition_point(|&i| self.list[i].base <= addr);
        let m = &self.list[*self.by_base.get(above.checked_sub(1)?)?];
        (addr - m.base < m.size).then_some(m)
    }

    /// The module's file and how it was found: on disk, else (asked once, the first time
    /// one of its frames needs it) from debuginfod, whose copy then also serves unwinding.
    fn binary<'a>(&self, m: &'a ModuleFile) -> Option<(&'a ElfFile, &'static str)> {
        if let Some(file) = &m.local {
            return Some((file, debuginfo::MODULE_FILE));
        }
        let fetched = m.fetched.get_or_init(|| {
            let server = self.search.debuginfod.as_ref().ok_or_else(String::new)?;
            let id = m.build_id.as_deref().ok_or_else(String::new)?;
            let file = server.fetch(id, "executable")?;
            self.unwinder.borrow_mut().add_module(unwind_module(m, &file));
            Ok(file)
        });
        fetched.as_ref().ok().map(|file| (file, debuginfo::DEBUGINFOD))
    }

    /// Modules whose symbols could not be had (or only from the symbol table because
    /// debug files were refused), and why; each line ends with what to try.
    pub fn problems(&self) -> Vec<String> {
        let problem = |m: &ModuleFile| {
            let mut refused = m.refused.clone();
            match m.fetched.get() {
                Some(Err(why)) if !why.is_empty() => refused.push(why.clone()),
                None if m.local.is_none() && self.search.debuginfod.is_some() && m.build_id.is_some() => {
                    refused.push("debuginfod not asked: no frame is in it".into())
                }
                _ => {}
            }
            let has_binary = m.local.is_some() || m.fetched.get().is_some_and(Result::is_ok);
            symbols::problem(&m.recorded, has_binary, &refused, m.symbols.get(), &self.search)
        };
        // The kernel's vDSO (recorded without a path) has no file to find: not a problem.
        self.list.iter().filter(|m| m.recorded.starts_with('/')).filter_map(problem).collect()
    }

    /// The modules whose frames are glue between Python frames: the main executable (the
    /// interpreter; the eval loop's own module is added per thread) and crashcatch's
    /// extension, which starts every Python thread.
    pub fn plumbing(&self) -> Plumbing {
        Plumbing {
            interpreter: self.list.first().and_then(|m| m.name.clone()).into_iter().collect(),
            collector: self
                .list
                .iter()
                .find(|m| m.recorded.contains("/crashcatch/_native."))
                .and_then(|m| m.name.clone()),
        }
    }

    fn symbols<'a>(&self, m: &'a ModuleFile) -> &'a Lookup {
        m.symbols.get_or_init(|| symbols::lookup(&self.search, self.binary(m), m.build_id.as_deref()))
    }
}

/// The unwinder's view of a module: the CFI of its file.
fn unwind_module(m: &ModuleFile, file: &ElfFile) -> FhModule<Bytes> {
    let cfi = &file.cfi;
    let info = ExplicitModuleSectionInfo {
        base_svma: file.base_svma.unwrap_or(0),
        text_svma: cfi.text.as_ref().map(|(r, _)| r.clone()),
        text: cfi.text.as_ref().map(|(_, b)| b.clone()),
        eh_frame_svma: cfi.eh_frame.as_ref().map(|(r, _)| r.clone()),
        eh_frame: cfi.eh_frame.as_ref().map(|(_, b)| b.clone()),
        eh_frame_hdr_svma: cfi.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
        eh_frame_hdr: cfi.eh_frame_hdr.as_ref().map(|(_, b)| b.clone()),
        debug_frame: cfi.debug_frame.clone(),
        got_svma: cfi.got.clone(),
        ..Default::default()
    };
    let path = file.path.display().to_string();
    FhModule::new(path, m.base..m.base.saturating_add(m.size), m.base, info)
}

impl Modules {
    /// Whether the module holding `addr` has a file, so its CFI drives the unwind.
    pub(crate) fn has_cfi(&self, addr: u64) -> bool {
        self.at(addr).is_some_and(|m| self.binary(m).is_some())
    }

    /// One unwind step (framehop): the caller's return address, None at the stack's end.
    pub(crate) fn unwind_frame(
        &self,
        address: FrameAddress,
        regs: &mut UnwindRegsX86_64,
        cache: &mut CacheX86_64,
        read: &mut dyn FnMut(u64) -> Result<u64, ()>,
    ) -> Result<Option<u64>, framehop::Error> {
        self.unwinder.borrow().unwind_frame(address, regs, cache, &mut |addr| read(addr))
    }

    /// The frames at `addr` (inlined calls first, then the function containing them).
    pub(crate) fn symbolize(&self, addr: u64, lookup: u64, trust: &'static str, sp: u64) -> Vec<NativeFrame> {
        let mut plain = NativeFrame {
            address: addr,
            module: None,
            module_offset: 0,
            function: None,
            file: None,
            line: None,
            inlined: false,
            trust,
            sp,
            symbol_source: None,
        };
        let Some(m) = self.at(lookup) else { return vec![plain] };
        plain.module = m.name.clone();
        plain.module_offset = addr - m.base;
        let Some(s) = &self.symbols(m).symbolizer else { return vec![plain] };
        plain.symbol_source = Some(s.source);
        // DWARF and symbol tables work in file addresses.
        let probe = (lookup - m.base).wrapping_add(s.base_svma);
        let named = s.names(probe).into_iter();
        named
            .map(|n| NativeFrame {
                function: n.function,
                file: n.file,
                line: n.line,
                inlined: n.inlined,
                ..plain.clone()
            })
            .collect()
    }
}
