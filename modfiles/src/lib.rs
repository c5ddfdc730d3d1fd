//! The module files of another process (or of a core): which files are mapped where
//! (/proc/PID/maps), each file as the process sees it (through /proc/PID/root, so a process
//! in another mount namespace — a container — is read from its own files), the run-time
//! addresses of the symbols they define, and the module that holds CPython's `_PyRuntime`.
//!
//! Shared by the dumper (`crashcatch dump PID`) and the symbolizer (cores, and running
//! processes read without stopping them). Stripped interpreters keep the symbols looked up
//! here in `.dynsym` (CPython exports them), so no debug file is needed.

use object::{Object, ObjectSegment, ObjectSymbol};
use std::collections::HashMap;
use std::path::PathBuf;

/// The symbols always read from the module defining `_PyRuntime`.
pub const PYTHON_SYMBOLS: [&str; 3] = ["_PyRuntime", "Py_Version", "PyUnicode_Type"];

/// A file mapped into the process, and where its first byte is mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFile {
    pub path: String,
    /// The start of the mapping of file offset 0.
    pub start: u64,
}

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// "rwxp"-style permissions.
    pub perms: String,
    /// The file offset mapped at `start`.
    pub offset: u64,
    /// The file's path, a pseudo name ("[stack]"), or empty.
    pub path: String,
}

impl Mapping {
    pub fn is_readable(&self) -> bool {
        self.perms.starts_with('r')
    }
    pub fn is_writable(&self) -> bool {
        self.perms.get(1..2) == Some("w")
    }
    pub fn is_executable(&self) -> bool {
        self.perms.get(2..3) == Some("x")
    }
}

/// Every well-formed line of /proc/PID/maps, in its order.
pub fn mappings(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (range, perms, offset, _dev, _inode) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                perms: perms.to_string(),
                offset: u64::from_str_radix(offset, 16).ok()?,
                path: parts.collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

/// The files mapped from offset 0, in address order, once each.
pub fn mapped_files(maps: &str) -> Vec<MappedFile> {
    let mut out: Vec<MappedFile> = Vec::new();
    for m in mappings(maps) {
        if m.path.starts_with('/') && m.offset == 0 && !out.iter().any(|f| f.path == m.path) {
            out.push(MappedFile { path: m.path, start: m.start });
        }
    }
    out
}

/// The file process `pid` maps at `start` from `path`: the very file through
/// /proc/PID/map_files (from another mount namespace, through a chroot, deleted since), else
/// through /proc/PID/root (its mount namespace), else by the same path here; `pid` None (a
/// core): the path here. None unless it is a regular file that can be mapped.
pub fn open_as_seen_by(pid: Option<i32>, path: &str, start: u64) -> Option<memmap2::Mmap> {
    let path = path.trim_end_matches(" (deleted)");
    if !path.starts_with('/') {
        return None;
    }
    let mapped = pid.and_then(|pid| map_files_entry(pid, start));
    let inside = pid.map(|pid| PathBuf::from(format!("/proc/{pid}/root{path}")));
    let file = mapped
        .into_iter()
        .chain(inside)
        .chain([PathBuf::from(path)])
        .find_map(|p| std::fs::File::open(p).ok())?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // SAFETY: a read-only private mapping of a module file, as the symbolizer maps them
    // (a file truncated meanwhile could fault, as it would for gdb).
    unsafe { memmap2::Mmap::map(&file) }.ok()
}

/// `/proc/PID/map_files/START-END` for the mapping that starts at `start`.
pub fn map_files_entry(pid: i32, start: u64) -> Option<PathBuf> {
    let prefix = format!("{start:x}-");
    let entries = std::fs::read_dir(format!("/proc/{pid}/map_files")).ok()?;
    entries.flatten().find(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path())
}

/// The run-time addresses of `names` that the file `data`, mapped at `start`, defines
/// (dynamic symbols first, then the full symbol table of an unstripped file).
pub fn lookup(data: &[u8], start: u64, names: &[&str]) -> HashMap<String, u64> {
    let mut found = HashMap::new();
    let Ok(file) = object::File::parse(data) else {
        return found;
    };
    // The segment holding file offset 0 is the one mapped at `start`; its page-aligned
    // address gives the load bias (0 for a non-PIE executable).
    let Some(first) = file.segments().find(|s| s.file_range().0 == 0) else {
        return found;
    };
    let bias = start.wrapping_sub(first.address() & !0xfff);
    let wanted = names.iter().collect::<std::collections::HashSet<_>>().len();
    for sym in file.dynamic_symbols().chain(file.symbols()) {
        if !sym.is_definition() {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if names.contains(&name) && !found.contains_key(name) {
            found.insert(name.to_string(), sym.address().wrapping_add(bias));
            if found.len() == wanted {
                // Everything found (usually among the dynamic symbols): the full symbol
                // table of an unstripped interpreter is tens of thousands more (issue 14).
                break;
            }
        }
    }
    found
}

/// The module that defines `_PyRuntime` (the interpreter, or libpython): its file, its
/// bytes, and the run-time address of each symbol looked for that it defines.
pub struct PythonModule {
    pub file: MappedFile,
    pub data: memmap2::Mmap,
    pub symbols: HashMap<String, u64>,
}

impl PythonModule {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }
}

/// Files whose name says Python first (python3.X, libpython3.X…), then the others, each
/// group in the order given; the first that defines `_PyRuntime` wins. `pid`: whose view of
/// the files (None: this machine's, for a core). `wanted`: the symbols to look up there
/// besides [`PYTHON_SYMBOLS`]. None when no module file defines it (not a Python process,
/// or the files are not here).
pub fn python_module(files: &[MappedFile], pid: Option<i32>, wanted: &[&str]) -> Option<PythonModule> {
    let named_python = |f: &&MappedFile| f.path.rsplit('/').next().is_some_and(|n| n.contains("python"));
    let (first, rest): (Vec<&MappedFile>, Vec<&MappedFile>) = files.iter().partition(named_python);
    let names: Vec<&str> = PYTHON_SYMBOLS.iter().chain(wanted).copied().collect();
    first.into_iter().chain(rest).find_map(|f| {
        let data = open_as_seen_by(pid, &f.path, f.start)?;
        let symbols = lookup(&data, f.start, &names);
        symbols.contains_key("_PyRuntime").then(|| PythonModule { file: f.clone(), data, symbols })
    })
}

/// What stops ptrace (and process_vm_readv, which needs the same permission) here and how
/// to get past it: Yama's `ptrace_scope`, or a missing CAP_SYS_PTRACE (containers). Starts
/// with a space, to follow the error it explains.
pub fn ptrace_hint() -> String {
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok();
    match scope.as_deref().map(str::trim) {
        Some("1") => " (Yama ptrace_scope is 1: only a parent may trace its children; run as root or with \
                      CAP_SYS_PTRACE, or `sysctl kernel.yama.ptrace_scope=0`)"
            .into(),
        Some("2") => " (Yama ptrace_scope is 2: only root with CAP_SYS_PTRACE may trace; run as root)".into(),
        Some("3") => " (Yama ptrace_scope is 3: ptrace is off until reboot)".into(),
        _ => " (ptrace refused: run as the process's user or as root; in a container, add CAP_SYS_PTRACE: \
               `docker run --cap-add=SYS_PTRACE`)"
            .into(),
    }
}

/// The patch version in a CPython ≤3.10 file (which has no `Py_Version`): its
/// `PY_VERSION` string, "3.X.Y" ending in a NUL (or "3.X.Y+" for a development build).
/// The linker may have merged it into the tail of a longer string (a build path ending in
/// "Python-3.X.Y"), so only the byte before it is checked: not part of a number.
pub fn micro_version_in(data: &[u8], minor: u32) -> Option<u32> {
    let prefix = format!("3.{minor}.");
    let mut at = 0;
    while let Some(pos) = memchr::memmem::find(&data[at..], prefix.as_bytes()) {
        let before = (at + pos).checked_sub(1).and_then(|i| data.get(i)).copied();
        let digits_start = at + pos + prefix.len();
        if before.is_some_and(|b| b.is_ascii_digit() || b == b'.') {
            at = digits_start;
            continue;
        }
        let digits: Vec<u8> =
            data[digits_start..].iter().take_while(|b| b.is_ascii_digit()).copied().collect();
        let after = data.get(digits_start + digits.len()).copied();
        if !digits.is_empty() && digits.len() <= 3 && matches!(after, Some(0 | b'+')) {
            return std::str::from_utf8(&digits).ok()?.parse().ok();
        }
        at = digits_start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_files_take_each_file_at_offset_zero() {
        let maps = "5600000-5601000 r--p 00000000 08:02 17 /usr/bin/python3.11\n\
                    5601000-5602000 r-xp 00001000 08:02 17 /usr/bin/python3.11\n\
                    7f00000-7f01000 r--p 00000000 08:02 18 /opt/my lib/libx.so\n\
                    7f10000-7f11000 rw-p 00000000 00:00 0 \n\
                    7ffe000-7fff000 rw-p 00000000 00:00 0 [stack]\n";
        assert_eq!(
            mapped_files(maps),
            vec![
                MappedFile { path: "/usr/bin/python3.11".into(), start: 0x5600000 },
                MappedFile { path: "/opt/my lib/libx.so".into(), start: 0x7f00000 },
            ]
        );
    }

    #[test]
    fn mapping_permissions() {
        let m = &mappings("7ffe000-7fff000 rw-p 00001000 00:00 0 [stack]\nnot a line\n")[..];
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].start, m[0].end, m[0].offset, m[0].path.as_str()),
            (0x7ffe000, 0x7fff000, 0x1000, "[stack]")
        );
        assert!(m[0].is_readable() && m[0].is_writable() && !m[0].is_executable());
    }

    #[test]
    fn micro_versions_from_the_version_string() {
        assert_eq!(micro_version_in(b"xx\x003.9.18\x00yy", 9), Some(18));
        assert_eq!(micro_version_in(b"\x003.10.\x00\x003.10.4+\x00", 10), Some(4));
        assert_eq!(micro_version_in(b"/tmp/Python-3.9.18\x00", 9), Some(18));
        assert_eq!(micro_version_in(b"\x003.9.1a\x00\x0013.9.2\x00", 9), None);
        assert_eq!(micro_version_in(b"libpython3.9.so\x003.9.1", 9), None);
    }

    /// A symbol of the test program itself, to look up through its file.
    #[no_mangle]
    pub extern "C" fn crashcatch_modfiles_probe() -> u32 {
        7
    }

    #[test]
    fn symbols_of_this_test_program() {
        // Our own executable, mapped where /proc/self/maps says: a function's address found
        // through its file must be the function's real address.
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let exe = std::fs::read_link("/proc/self/exe").expect("exe").display().to_string();
        let me = mapped_files(&maps).into_iter().find(|m| m.path == exe).expect("exe mapped");
        let data = open_as_seen_by(Some(std::process::id() as i32), &exe, me.start).expect("read exe");
        let found = lookup(&data, me.start, &["crashcatch_modfiles_probe", "malloc"]);
        let real = crashcatch_modfiles_probe as *const () as u64;
        assert_eq!(found.get("crashcatch_modfiles_probe"), Some(&real));
        // malloc is not defined by the test program: only definitions count.
        assert!(!found.contains_key("malloc"));
    }

    #[test]
    fn no_python_module_in_this_test_program() {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        assert!(python_module(&mapped_files(&maps), None, &[]).is_none());
    }

    #[test]
    fn only_regular_files_by_absolute_path() {
        assert!(open_as_seen_by(None, "[heap]", 0).is_none());
        assert!(open_as_seen_by(None, "/proc/self", 0).is_none());
        assert!(open_as_seen_by(Some(std::process::id() as i32), "/proc/self/exe (deleted)", 0).is_some());
    }

    #[test]
    fn the_mapped_file_whatever_its_path_says() {
        // A path that does not exist here (another mount namespace's): /proc/PID/map_files
        // still gives the file mapped at that address.
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let exe = std::fs::read_link("/proc/self/exe").expect("exe").display().to_string();
        let me = mapped_files(&maps).into_iter().find(|m| m.path == exe).expect("exe mapped");
        let pid = Some(std::process::id() as i32);
        let data = open_as_seen_by(pid, "/nonexistent/crashcatch/exe", me.start).expect("through map_files");
        assert_eq!(&data[..], &std::fs::read(&exe).expect("read exe")[..]);
        assert!(open_as_seen_by(None, "/nonexistent/crashcatch/exe", me.start).is_none());
    }
}
