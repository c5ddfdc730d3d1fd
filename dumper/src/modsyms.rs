//! Symbols of another process's modules, from the module files' ELF symbol tables: the
//! mapped files come from /proc/PID/maps and are read through /proc/PID/root, so a process
//! in another mount namespace (a container) is read from its own files.
//!
//! Overlaps the symbolizer's module-symbol lookup for cores (issue 12): kept minimal here
//! because the dumper does not depend on the symbolizer.

use object::{Object, ObjectSegment, ObjectSymbol};
use std::collections::HashMap;
use std::path::PathBuf;

/// A file mapped into the process, and where its first byte is mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFile {
    pub path: String,
    /// The start of the mapping of file offset 0.
    pub start: u64,
}

/// The files mapped from offset 0, in address order, once each.
pub fn mapped_files(maps: &str) -> Vec<MappedFile> {
    let mut out: Vec<MappedFile> = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(_perms), Some(offset), Some(_dev), Some(_inode)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = parts.collect::<Vec<_>>().join(" ");
        if !path.starts_with('/') || u64::from_str_radix(offset, 16) != Ok(0) {
            continue;
        }
        let Some(start) = range.split_once('-').and_then(|(a, _)| u64::from_str_radix(a, 16).ok()) else {
            continue;
        };
        if !out.iter().any(|m| m.path == path) {
            out.push(MappedFile { path, start });
        }
    }
    out
}

/// The file as the process sees it: through /proc/PID/root (its mount namespace), else
/// by the same path here.
pub fn read_module(pid: i32, path: &str) -> Option<Vec<u8>> {
    let inside = PathBuf::from(format!("/proc/{pid}/root{path}"));
    std::fs::read(inside).or_else(|_| std::fs::read(path)).ok()
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
    for sym in file.dynamic_symbols().chain(file.symbols()) {
        if !sym.is_definition() {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if names.contains(&name) && !found.contains_key(name) {
            found.insert(name.to_string(), sym.address().wrapping_add(bias));
        }
    }
    found
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
    fn micro_versions_from_the_version_string() {
        assert_eq!(micro_version_in(b"xx\x003.9.18\x00yy", 9), Some(18));
        assert_eq!(micro_version_in(b"\x003.10.\x00\x003.10.4+\x00", 10), Some(4));
        assert_eq!(micro_version_in(b"/tmp/Python-3.9.18\x00", 9), Some(18));
        assert_eq!(micro_version_in(b"\x003.9.1a\x00\x0013.9.2\x00", 9), None);
        assert_eq!(micro_version_in(b"libpython3.9.so\x003.9.1", 9), None);
    }

    /// A symbol of the test program itself, to look up through its file.
    #[no_mangle]
    pub extern "C" fn crashcatch_modsyms_probe() -> u32 {
        7
    }

    #[test]
    fn symbols_of_this_test_program() {
        // Our own executable, mapped where /proc/self/maps says: a function's address found
        // through its file must be the function's real address.
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let exe = std::fs::read_link("/proc/self/exe").expect("exe").display().to_string();
        let me = mapped_files(&maps).into_iter().find(|m| m.path == exe).expect("exe mapped");
        let data = std::fs::read(&exe).expect("read exe");
        let found = lookup(&data, me.start, &["crashcatch_modsyms_probe", "malloc"]);
        let real = crashcatch_modsyms_probe as *const () as u64;
        assert_eq!(found.get("crashcatch_modsyms_probe"), Some(&real));
        // malloc is not defined by the test program: only definitions count.
        assert!(!found.contains_key("malloc"));
    }
}
