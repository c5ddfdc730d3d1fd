//! `crashcatch`, the command `pip install crashcatch` puts in the scripts directory (a native
//! program rather than a Python console script, which cost ~30 ms of Python start-up before
//! every `crashcatch symbolize`). It finds the package of its own installation from its own
//! path and execs:
//! - the package's symbolizer (`crashcatch/_bin/crashcatch-symbolize`) for the commands that
//!   program runs: symbolize (but blocking `--pid`), core, list, completion, --help;
//! - a Python with crashcatch's command line (`crashcatch.__main__`) for the others (run, dump,
//!   gdb, lldb, debugger-scripts, symbolize --pid), and for everything when the package is
//!   not where the installation scheme puts it: $CRASHCATCH_PYTHON, else the installation's
//!   own Python, else `python3.X` (the site-packages' X) or `python3` from PATH.

mod site;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Run by the Python: what `python -m crashcatch` runs (without the current directory on
/// sys.path, as for a console script), or a message and exit status 2 when that Python does
/// not have crashcatch. %-formatting: it must reach the message on any Python.
const BOOTSTRAP: &str = r#"import sys
if sys.path and sys.path[0] == "":
    del sys.path[0]
try:
    from crashcatch.__main__ import main
except ImportError as e:
    sys.stderr.write("crashcatch: %s cannot import crashcatch (%s): install it for that Python "
                     "(%s -m pip install crashcatch), or set CRASHCATCH_PYTHON to a Python that has it\n"
                     % (sys.executable, e, sys.executable))
    sys.exit(2)
sys.argv[0] = "crashcatch"
sys.exit(main())
"#;

/// The commands crashcatch.__main__ runs itself; the symbolizer runs all others. The same
/// test as its `main`.
fn runs_in_python(args: &[OsString]) -> bool {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    match args.first().and_then(|a| a.to_str()) {
        Some("run" | "dump" | "gdb" | "lldb" | "debugger-scripts") => true,
        Some("symbolize") => has("--pid") && !has("--nonblocking"),
        _ => false,
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // /proc/self/exe: the file itself, also when started through a symbolic link (pipx's).
    let exe = std::env::current_exe().ok();
    let bin_dir = exe.as_deref().and_then(Path::parent);
    let sites = bin_dir.and_then(Path::parent).map(site::sites).unwrap_or_default();
    if !runs_in_python(&args) {
        if let Some(program) = sites.first().and_then(|s| site::symbolizer(&s.package)) {
            let error = Command::new(&program).arg0("crashcatch").args(&args).exec();
            eprintln!("crashcatch: cannot run {}: {error}; trying Python", program.display());
        }
    }
    let chosen = std::env::var_os("CRASHCATCH_PYTHON").filter(|p| !p.is_empty());
    let tried = pythons(chosen, bin_dir, sites.first().map(|s| s.python.as_str()))
        .into_iter()
        .map(|python| {
            let error = if is_this_program(&python, exe.as_deref()) {
                "this command itself".to_string()
            } else {
                Command::new(&python).arg("-c").arg(BOOTSTRAP).args(&args).exec().to_string()
            };
            format!("{} ({error})", python.to_string_lossy())
        })
        .collect::<Vec<_>>();
    eprintln!(
        "crashcatch: found no Python to run crashcatch with (tried: {}): set CRASHCATCH_PYTHON to a \
         Python that has crashcatch installed, or run `python3 -m crashcatch ...`",
        tried.join(", ")
    );
    std::process::exit(2);
}

/// The Pythons to try, in order: $CRASHCATCH_PYTHON alone if set; else those of the
/// installation's bin directory, then from PATH.
fn pythons(chosen: Option<OsString>, bin_dir: Option<&Path>, site_python: Option<&str>) -> Vec<OsString> {
    if let Some(chosen) = chosen {
        return vec![chosen];
    }
    let mut names: Vec<&str> = site_python.into_iter().filter(|p| *p != "python3").collect();
    names.extend(["python3", "python"]);
    let local = bin_dir.into_iter().flat_map(|dir| names.iter().map(move |n| dir.join(n)));
    let mut found: Vec<OsString> = local.filter(|p| p.is_file()).map(PathBuf::into_os_string).collect();
    found.extend(site_python.filter(|p| *p != "python3").map(OsString::from));
    found.push("python3".into());
    found
}

/// Never exec ourselves (CRASHCATCH_PYTHON set to this command, or a `python` that is it).
fn is_this_program(python: &OsString, exe: Option<&Path>) -> bool {
    let path = Path::new(python);
    path.components().count() > 1 && std::fs::canonicalize(path).ok().as_deref() == exe
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn python_runs_what_crashcatch_main_runs_itself() {
        for line in
            ["run x.py", "dump 12", "gdb -p 1", "lldb", "debugger-scripts --lldb", "symbolize --pid 3"]
        {
            assert!(runs_in_python(&args(line)), "{line}");
        }
        for line in
            ["", "--help", "symbolize d.dmp", "symbolize --pid 3 --nonblocking", "core d -o c", "list"]
        {
            assert!(!runs_in_python(&args(line)), "{line}");
        }
    }

    #[test]
    fn the_installation_python_comes_before_path() {
        let bin = std::env::temp_dir().join(format!("crashcatch-launcher-bin-{}", std::process::id()));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("python3.12"), "").unwrap();
        std::fs::write(bin.join("python"), "").unwrap();
        let found = pythons(None, Some(&bin), Some("python3.12"));
        let expected: Vec<OsString> = vec![
            bin.join("python3.12").into(),
            bin.join("python").into(),
            "python3.12".into(),
            "python3".into(),
        ];
        assert_eq!(found, expected);
        assert_eq!(pythons(Some("/opt/py".into()), Some(&bin), None), vec![OsString::from("/opt/py")]);
        std::fs::remove_dir_all(bin).unwrap();
    }
}
