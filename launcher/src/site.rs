//! Where the crashcatch package of this command's installation is: pip puts the command in
//! its scheme's scripts directory, `<prefix>/bin`, and the package in
//! `<prefix>/lib/python3.X/site-packages` (a venv, pyenv, conda, `pip install --user` with
//! `~/.local`), `<prefix>/lib/python3.X/dist-packages` (Debian's /usr/local),
//! `<prefix>/lib/python3/dist-packages` (Debian's own packages) or `lib64` (Fedora's
//! platlib). An editable install leaves a `crashcatch.pth` there naming the source tree.

use std::path::{Path, PathBuf};

/// A site-packages directory that has crashcatch.
pub struct Site {
    /// The `crashcatch` package directory (in site-packages, or in the source tree of an
    /// editable install).
    pub package: PathBuf,
    /// The Python of that directory: `python3.12`, `python3.13t`, or `python3`.
    pub python: String,
    /// Its dist-info is this launcher's version (installed together).
    pub same_version: bool,
}

/// The crashcatch installations under `prefix`, the one of this launcher's version first.
pub fn sites(prefix: &Path) -> Vec<Site> {
    let mut found = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else { continue };
        let mut pythons: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.starts_with("python3"))
            .collect();
        // The newest Python first among those of the same version (python3.9 < python3.12).
        pythons.sort_by_key(|name| std::cmp::Reverse(python_order(name)));
        for python in pythons {
            for dir in ["site-packages", "dist-packages"] {
                let site = prefix.join(lib).join(&python).join(dir);
                if let Some(package) = package_in(&site) {
                    let same_version =
                        site.join(format!("crashcatch-{}.dist-info", env!("CARGO_PKG_VERSION"))).is_dir();
                    found.push(Site { package, python: python.clone(), same_version });
                }
            }
        }
    }
    // Stable: lib before lib64 (a venv's lib64 is a link to lib), newest Python first.
    found.sort_by_key(|s| !s.same_version);
    found
}

/// `python3.12` -> (12, 0); free-threaded `python3.13t` sorts after python3.13.
fn python_order(name: &str) -> (u32, u32) {
    let minor = name.strip_prefix("python3.").unwrap_or("");
    let digits: String = minor.chars().take_while(char::is_ascii_digit).collect();
    (digits.parse().unwrap_or(0), u32::from(minor.len() > digits.len()))
}

/// `site/crashcatch`, or the package of the source tree an editable install's
/// `crashcatch.pth` names.
fn package_in(site: &Path) -> Option<PathBuf> {
    let installed = site.join("crashcatch");
    if installed.join("__init__.py").is_file() {
        return Some(installed);
    }
    let pth = std::fs::read_to_string(site.join("crashcatch.pth")).ok()?;
    pth.lines()
        .map(|line| Path::new(line.trim()).join("crashcatch"))
        .find(|package| package.join("__init__.py").is_file())
}

/// The package's symbolizer, if it is there and executable.
pub fn symbolizer(package: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let program = package.join("_bin").join("crashcatch-symbolize");
    let meta = std::fs::metadata(&program).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(site: &Path, version: &str) {
        std::fs::create_dir_all(site.join("crashcatch/_bin")).unwrap();
        std::fs::write(site.join("crashcatch/__init__.py"), "").unwrap();
        std::fs::create_dir_all(site.join(format!("crashcatch-{version}.dist-info"))).unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crashcatch-launcher-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_same_version_comes_first_then_the_newest_python() {
        let prefix = scratch("order");
        install(&prefix.join("lib/python3.9/site-packages"), env!("CARGO_PKG_VERSION"));
        install(&prefix.join("lib/python3.12/site-packages"), "0.0.1");
        install(&prefix.join("lib/python3.11/dist-packages"), env!("CARGO_PKG_VERSION"));
        std::fs::create_dir_all(prefix.join("lib/python3.13/site-packages")).unwrap();
        let found: Vec<(String, bool)> =
            sites(&prefix).into_iter().map(|s| (s.python, s.same_version)).collect();
        let expected = [("python3.11", true), ("python3.9", true), ("python3.12", false)];
        assert_eq!(found, expected.map(|(p, v)| (p.to_string(), v)));
        std::fs::remove_dir_all(prefix).unwrap();
    }

    #[test]
    fn an_editable_install_is_found_through_its_pth_file() {
        let prefix = scratch("editable");
        let source = prefix.join("src");
        install(&source, "0");
        let site = prefix.join("lib/python3.12/site-packages");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("crashcatch.pth"), format!("{}\n", source.display())).unwrap();
        let found = sites(&prefix);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].package, source.join("crashcatch"));
        std::fs::remove_dir_all(prefix).unwrap();
    }

    #[test]
    fn python_versions_sort_by_number() {
        assert!(python_order("python3.12") > python_order("python3.9"));
        assert!(python_order("python3.13t") > python_order("python3.13"));
        assert_eq!(python_order("python3"), (0, 0));
    }
}
