//! Native stacks from a dump: every thread unwound with the CFI (.eh_frame, .debug_frame) of
//! the module files (framehop), then symbolized with their DWARF (addr2line): function,
//! inlined frames, file:line. A module file is used only if its build id equals the one
//! the dump recorded; otherwise frames show module+offset.

use crate::memory::DumpMemory;
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module as FhModule, Unwinder};
use minidump::{Minidump, MinidumpModuleList, Module};
use object::{Object, ObjectSection, ObjectSegment};
use pylayout::Memory;
use std::path::PathBuf;

/// Frames walked per thread at most.
const MAX_FRAMES: usize = 4096;

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
    /// unwind tables) or "frame pointer" (the callee's module had no usable unwind tables).
    pub trust: &'static str,
    /// The stack pointer while this frame runs (at its call to the next frame in): the
    /// frame's locals lie between it and the caller's `sp`. Inlined frames share it.
    pub sp: u64,
}

struct ModuleFile {
    path: String,
    base: u64,
    size: u64,
    /// The file's lowest segment address: 0 for shared objects and PIE, 0x400000 for a
    /// classic executable (Debian's python3.11). File address = runtime - base + base_svma.
    base_svma: u64,
    /// Build-id-checked file contents, when the file was found.
    data: Option<Vec<u8>>,
    loader: Option<addr2line::Loader>,
    /// Why there are no symbols for it (shown to the user).
    problem: Option<String>,
}

/// The modules of a dump, with their files when they can be used.
pub struct Modules {
    list: Vec<ModuleFile>,
    unwinder: UnwinderX86_64<Vec<u8>>,
}

/// The file's bytes if its build id is `want`, else why not.
fn check_build_id(path: &std::path::Path, want: Option<&str>) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let have = object::File::parse(&*bytes).ok().and_then(|f| f.build_id().ok().flatten().map(hex_build_id));
    match (want, have) {
        (Some(w), Some(h)) if w == h => Ok(bytes),
        (Some(w), h) => {
            Err(format!("{shown}: build id {} is not the dump's {w}", h.as_deref().unwrap_or("(none)")))
        }
        (None, _) => Err(format!("{shown}: the dump has no build id for it")),
    }
}

fn hex_build_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Modules {
    /// The dump's modules, each with the first candidate file whose build id is the dump's:
    /// the path recorded in the dump, then `<dir>/<file name>` for each of `symbol_dirs`.
    pub fn load<T: std::ops::Deref<Target = [u8]>>(dump: &Minidump<T>, symbol_dirs: &[PathBuf]) -> Modules {
        let mut list = Vec::new();
        if let Ok(modules) = dump.get_stream::<MinidumpModuleList>() {
            for m in modules.iter() {
                let recorded = m.code_file().to_string();
                let want = m.code_identifier().map(|c| c.to_string().to_lowercase());
                let file_name = PathBuf::from(&recorded).file_name().map(PathBuf::from);
                let candidates = std::iter::once(PathBuf::from(&recorded))
                    .chain(symbol_dirs.iter().filter_map(|d| Some(d.join(file_name.as_ref()?))));
                let mut refused = Vec::new();
                let mut found = None;
                for candidate in candidates {
                    match check_build_id(&candidate, want.as_deref()) {
                        Ok(bytes) => {
                            found = Some((candidate, bytes));
                            break;
                        }
                        Err(why) => refused.push(why),
                    }
                }
                let (path, data, problem) = match found {
                    Some((p, bytes)) => (p.display().to_string(), Some(bytes), None),
                    None => (recorded.clone(), None, Some(refused.join("; "))),
                };
                let loader = data.as_ref().and_then(|_| addr2line::Loader::new(&path).ok());
                let base_svma = data
                    .as_ref()
                    .and_then(|d| object::File::parse(&**d).ok())
                    .and_then(|f| f.segments().map(|s| s.address()).min())
                    .unwrap_or(0);
                list.push(ModuleFile {
                    path,
                    base: m.base_address(),
                    size: m.size(),
                    base_svma,
                    data,
                    loader,
                    problem,
                });
            }
        }
        let unwinder = unwinder_for(&list);
        Modules { list, unwinder }
    }

    fn at(&self, addr: u64) -> Option<&ModuleFile> {
        self.list.iter().find(|m| addr >= m.base && addr - m.base < m.size)
    }

    /// Modules whose files could not be used, and why.
    pub fn problems(&self) -> Vec<String> {
        self.list.iter().filter_map(|m| m.problem.clone()).collect()
    }
}

/// A framehop unwinder over the CFI of every usable module file.
fn unwinder_for(list: &[ModuleFile]) -> UnwinderX86_64<Vec<u8>> {
    {
        let mut unwinder = UnwinderX86_64::new();
        for m in list {
            let Some(data) = &m.data else { continue };
            let Ok(file) = object::File::parse(&**data) else { continue };
            let section = |name: &str| file.section_by_name(name);
            let range = |s: &object::Section| s.address()..s.address() + s.size();
            let bytes = |s: &object::Section| s.data().ok().map(|d| d.to_vec());
            let info = ExplicitModuleSectionInfo {
                base_svma: m.base_svma,
                text_svma: section(".text").map(|s| range(&s)),
                text: section(".text").and_then(|s| bytes(&s)),
                eh_frame_svma: section(".eh_frame").map(|s| range(&s)),
                eh_frame: section(".eh_frame").and_then(|s| bytes(&s)),
                eh_frame_hdr_svma: section(".eh_frame_hdr").map(|s| range(&s)),
                eh_frame_hdr: section(".eh_frame_hdr").and_then(|s| bytes(&s)),
                debug_frame: section(".debug_frame").and_then(|s| bytes(&s)),
                got_svma: section(".got").map(|s| range(&s)),
                ..Default::default()
            };
            unwinder.add_module(FhModule::new(m.path.clone(), m.base..m.base + m.size, m.base, info));
        }
        unwinder
    }
}

impl Modules {
    /// Unwinds one thread from its registers and symbolizes every frame.
    pub fn stack(&self, mem: &DumpMemory, ip: u64, sp: u64, bp: u64) -> Vec<NativeFrame> {
        let mut cache = CacheX86_64::<_>::new();
        let mut read = |addr: u64| mem.read_u64(addr).ok_or(());
        let mut regs = UnwindRegsX86_64::new(ip, sp, bp);
        let mut frames = self.symbolize(ip, ip, "context", sp);
        let mut address = FrameAddress::InstructionPointer(ip);
        while frames.len() < MAX_FRAMES {
            // The rule comes from the module of the frame being unwound.
            let callee_has_cfi = self.at(address.address_for_lookup()).is_some_and(|m| m.data.is_some());
            let Ok(Some(ret)) = self.unwinder.unwind_frame(address, &mut regs, &mut cache, &mut read) else {
                break;
            };
            let Some(next) = FrameAddress::from_return_address(ret) else { break };
            let trust = if callee_has_cfi { "cfi" } else { "frame pointer" };
            frames.extend(self.symbolize(ret, ret - 1, trust, regs.sp()));
            address = next;
        }
        frames
    }

    /// The frames at `addr` (inlined calls first, then the function containing them).
    fn symbolize(&self, addr: u64, lookup: u64, trust: &'static str, sp: u64) -> Vec<NativeFrame> {
        let Some(m) = self.at(lookup) else {
            return vec![NativeFrame {
                address: addr,
                module: None,
                module_offset: 0,
                function: None,
                file: None,
                line: None,
                inlined: false,
                trust,
                sp,
            }];
        };
        let offset = addr - m.base;
        let name = PathBuf::from(&m.path).file_name().map(|n| n.to_string_lossy().into_owned());
        let plain = NativeFrame {
            address: addr,
            module: name.clone(),
            module_offset: offset,
            function: None,
            file: None,
            line: None,
            inlined: false,
            trust,
            sp,
        };
        let Some(loader) = &m.loader else { return vec![plain] };
        // addr2line works in file addresses.
        let probe = lookup - m.base + m.base_svma;
        let mut out = Vec::new();
        if let Ok(mut iter) = loader.find_frames(probe) {
            while let Ok(Some(f)) = iter.next() {
                let function = f.function.as_ref().and_then(|n| n.demangle().ok()).map(|n| n.into_owned());
                let (file, line) = f.location.map_or((None, None), |l| (l.file.map(String::from), l.line));
                out.push(NativeFrame { function, file, line, inlined: true, ..plain.clone() });
            }
        }
        match out.last_mut() {
            Some(outer) => outer.inlined = false,
            None => {
                let function = loader
                    .find_symbol(probe)
                    .map(|s| addr2line::demangle_auto(std::borrow::Cow::Borrowed(s), None).into_owned());
                out.push(NativeFrame { function, ..plain });
            }
        }
        out
    }
}
