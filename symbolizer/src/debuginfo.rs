//! Finding a module's DWARF in a separate debug file when its own file has none (stripped)
//! or is missing, in gdb's order:
//!
//! 1. each `--symbols-path DIR`: `DIR/.build-id/xx/rest.debug`;
//! 2. with `--sysroot SYSROOT`, `SYSROOT/usr/lib/debug/.build-id/xx/rest.debug`;
//! 3. the debug root (`$CRASHCATCH_DEBUG_ROOT`, default `/usr/lib/debug`, where Debian's
//!    `-dbg`/`-dbgsym` packages install): `.build-id/xx/rest.debug`;
//! 4. the module file's `.gnu_debuglink`: next to the file, in its `.debug/` directory,
//!    and under the debug roots (`<root>/<file's dir>/<name>`), its CRC32 checked;
//! 5. debuginfod (`$DEBUGINFOD_URLS`).
//!
//! (xx = the first byte of the build id in hex, rest = the others.) A candidate is used
//! only if it has DWARF and the dump's build id; refusals are kept to tell the user.

use crate::debuginfod::Debuginfod;
use crate::elf::ElfFile;
use std::path::{Path, PathBuf};

/// Where symbols of a module came from (what `Modules::sources` reports).
pub const MODULE_FILE: &str = "module file";
pub const BUILD_ID_DIR: &str = "build-id dir";
pub const DEBUGLINK: &str = "debuglink";
pub const DEBUGINFOD: &str = "debuginfod";
pub const SYMBOL_TABLE_ONLY: &str = "symbol table only";

/// The default debug root, where distributions install separate debug files.
pub const DEFAULT_DEBUG_ROOT: &str = "/usr/lib/debug";

/// `$CRASHCATCH_DEBUG_ROOT`, else `/usr/lib/debug`.
pub fn debug_root() -> PathBuf {
    std::env::var_os("CRASHCATCH_DEBUG_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_DEBUG_ROOT.into())
}

/// `<root>/.build-id/xx/rest.debug`.
pub fn build_id_path(root: &Path, build_id: &str) -> Option<PathBuf> {
    let (head, rest) = (build_id.get(..2)?, build_id.get(2..)?);
    (!rest.is_empty()).then(|| root.join(".build-id").join(head).join(format!("{rest}.debug")))
}

/// A debug file found for a module, and by which rule.
pub struct Found {
    pub file: ElfFile,
    pub source: &'static str,
}

/// The places to look, for every module of a dump.
pub struct Search {
    pub symbol_dirs: Vec<PathBuf>,
    /// The target's root file system (`--sysroot`), whose debug root comes before ours.
    pub sysroot: Option<PathBuf>,
    pub debug_root: PathBuf,
    pub debuginfod: Option<Debuginfod>,
}

impl Search {
    /// `symbol_dirs` and `sysroot` plus what the environment says (debug root, debuginfod).
    pub fn from_env(symbol_dirs: &[PathBuf], sysroot: Option<&Path>) -> Search {
        Search {
            symbol_dirs: symbol_dirs.to_vec(),
            sysroot: sysroot.map(Path::to_path_buf),
            debug_root: debug_root(),
            debuginfod: Debuginfod::from_env(),
        }
    }

    /// The first separate debug file with DWARF and build id `want`, for a module whose
    /// file (`binary`, if found) has none. Refused candidates are added to `refused`.
    pub fn debug_file(
        &self,
        want: &str,
        binary: Option<&ElfFile>,
        refused: &mut Vec<String>,
    ) -> Option<Found> {
        let debug_roots = self.debug_roots();
        let roots = self.symbol_dirs.iter().chain(&debug_roots);
        for path in roots.filter_map(|root| build_id_path(root, want)) {
            if let Some(file) = candidate(&path, want, None, refused) {
                return Some(Found { file, source: BUILD_ID_DIR });
            }
        }
        if let Some((b, (name, crc))) = binary.and_then(|b| Some((b, b.debuglink.as_ref()?))) {
            for path in self.debuglink_paths(&b.path, name) {
                if let Some(file) = candidate(&path, want, Some(*crc), refused) {
                    return Some(Found { file, source: DEBUGLINK });
                }
            }
        }
        let server = self.debuginfod.as_ref()?;
        match server.fetch(want, "debuginfo") {
            Ok(file) if file.has_dwarf => Some(Found { file, source: DEBUGINFOD }),
            Ok(file) => {
                refused.push(format!("{}: has no DWARF (.debug_info)", file.path.display()));
                None
            }
            Err(why) => {
                refused.push(why);
                None
            }
        }
    }

    /// The dwz supplementary file a debug file refers to (`.gnu_debugaltlink`), checked
    /// against the build id it records: the recorded path (relative to the debug file's
    /// directory when relative), then the build-id directories, then debuginfod.
    pub fn supplementary(&self, debug: &ElfFile, refused: &mut Vec<String>) -> Option<ElfFile> {
        let (name, id) = debug.altlink.as_ref()?;
        let dir = debug.path.parent().unwrap_or(Path::new("/"));
        let recorded = std::iter::once(dir.join(name));
        let debug_roots = self.debug_roots();
        let roots = self.symbol_dirs.iter().chain(&debug_roots);
        for path in recorded.chain(roots.filter_map(|root| build_id_path(root, id))) {
            if let Some(file) = candidate(&path, id, None, refused) {
                return Some(file);
            }
        }
        match self.debuginfod.as_ref()?.fetch(id, "debuginfo") {
            Ok(file) => Some(file),
            Err(why) => {
                refused.push(why);
                None
            }
        }
    }

    /// The sysroot's debug root, then ours.
    fn debug_roots(&self) -> Vec<PathBuf> {
        let in_sysroot = self.sysroot.as_ref().map(|s| s.join(DEFAULT_DEBUG_ROOT.trim_start_matches('/')));
        in_sysroot.into_iter().chain(std::iter::once(self.debug_root.clone())).collect()
    }

    /// gdb's debuglink places: `<dir>/<name>`, `<dir>/.debug/<name>`, `<root>/<dir>/<name>`
    /// for each debug root, where dir is the module file's real directory. A module file
    /// under the sysroot is not resolved (its links, /proc/PID/root's above all, point into
    /// the target's file system, not ours): dir is its directory there.
    fn debuglink_paths(&self, module: &Path, name: &str) -> Vec<PathBuf> {
        // A debuglink is a file name; anything with a directory in it is not followed.
        if name.is_empty() || name.contains('/') {
            return Vec::new();
        }
        let in_sysroot =
            self.sysroot.as_ref().and_then(|s| Some((s, module.strip_prefix(s).ok()?.parent()?)));
        let (beside, dir_in_target) = match in_sysroot {
            Some((sysroot, dir)) => (sysroot.join(dir), dir.to_path_buf()),
            None => {
                let real = std::fs::canonicalize(module).unwrap_or_else(|_| module.to_path_buf());
                let Some(dir) = real.parent() else { return Vec::new() };
                (dir.to_path_buf(), dir.strip_prefix("/").unwrap_or(dir).to_path_buf())
            }
        };
        let under_roots = self.debug_roots().into_iter().map(|root| root.join(&dir_in_target).join(name));
        [beside.join(name), beside.join(".debug").join(name)].into_iter().chain(under_roots).collect()
    }
}

/// `path` if it exists, has DWARF, build id `want` and (for a debuglink) the CRC32; a file
/// that exists but does not fit is added to `refused` with the reason.
fn candidate(path: &Path, want: &str, crc: Option<u32>, refused: &mut Vec<String>) -> Option<ElfFile> {
    if !path.is_file() {
        return None;
    }
    let file = match ElfFile::open_checked(path, Some(want)) {
        Ok(f) => f,
        Err(why) => {
            refused.push(why);
            return None;
        }
    };
    if !file.has_dwarf {
        refused.push(format!("{}: has no DWARF (.debug_info)", path.display()));
        return None;
    }
    if let Some(crc) = crc.filter(|&c| c != file.crc32()) {
        refused.push(format!(
            "{}: CRC32 {:08x} is not the {crc:08x} its module's .gnu_debuglink records",
            path.display(),
            file.crc32()
        ));
        return None;
    }
    Some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_paths() {
        let p = build_id_path(Path::new("/usr/lib/debug"), "93ac61ec5a");
        assert_eq!(p, Some(PathBuf::from("/usr/lib/debug/.build-id/93/ac61ec5a.debug")));
        assert_eq!(build_id_path(Path::new("/r"), "93"), None);
    }

    fn search(sysroot: Option<&str>) -> Search {
        Search {
            symbol_dirs: Vec::new(),
            sysroot: sysroot.map(PathBuf::from),
            debug_root: "/root".into(),
            debuginfod: None,
        }
    }

    #[test]
    fn debuglink_places_are_gdbs() {
        let paths = search(None).debuglink_paths(Path::new("/nonexistent/lib/x.so"), "x.so.debug");
        let want = [
            "/nonexistent/lib/x.so.debug",
            "/nonexistent/lib/.debug/x.so.debug",
            "/root/nonexistent/lib/x.so.debug",
        ];
        assert_eq!(paths, want.map(PathBuf::from));
        assert!(search(None).debuglink_paths(Path::new("/lib/x.so"), "../../etc/passwd").is_empty());
    }

    #[test]
    fn a_sysroots_debug_files_come_first() {
        let s = search(Some("/proc/7/root"));
        let paths = s.debuglink_paths(Path::new("/proc/7/root/usr/lib/x.so"), "x.debug");
        let want = [
            "/proc/7/root/usr/lib/x.debug",
            "/proc/7/root/usr/lib/.debug/x.debug",
            "/proc/7/root/usr/lib/debug/usr/lib/x.debug",
            "/root/usr/lib/x.debug",
        ];
        assert_eq!(paths, want.map(PathBuf::from));
        assert_eq!(s.debug_roots(), ["/proc/7/root/usr/lib/debug", "/root"].map(PathBuf::from));
    }
}
