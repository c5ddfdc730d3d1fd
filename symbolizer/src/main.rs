//! `crashcatch-symbolize`: the engine behind `crashcatch symbolize`, `core` and `list` (the
//! `crashcatch` command runs it from the installed package). Its command line describes every
//! `crashcatch` command, those the Python front runs itself too, so that `crashcatch --help`
//! and the shell completions (`crashcatch completion SHELL`) cover them all.

use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use symbolizer::{list, render, terminal, Crash, Options};

#[derive(Parser)]
#[command(
    name = "crashcatch",
    bin_name = "crashcatch",
    about = "Crash reports for Python processes: run programs with crashcatch, read its minidumps and core files",
    after_help = "`python -m crashcatch ...` is the same, run by that Python."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Python script (or `-m MODULE`) with crashcatch enabled, and in the Python
    /// processes it starts.
    Run {
        /// Run TARGET as a module.
        #[arg(short = 'm')]
        module: bool,
        /// The script's path, or the module's name with -m.
        target: String,
        /// The script's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The dumps in the crash directory, newest first: time, program, pid, signal, size, and
    /// the crash signature (the crashing thread's innermost Python and native frame).
    List {
        /// The crash directory (default: the one enable() uses, $CRASHCATCH_DUMP_DIR or
        /// $XDG_CACHE_HOME/crashcatch/dumps).
        dir: Option<PathBuf>,
        /// Machine-readable output (schema "crashcatch-list/1").
        #[arg(long)]
        json: bool,
    },
    /// Show what happened and every thread's stack, crashing thread first.
    Symbolize {
        /// The minidump (see `crashcatch: minidump written to …` in the report), or an ELF
        /// core file of a Python process (also zstd-, lz4- or xz-compressed, as systemd-coredump
        /// keeps them), told apart by content.
        dump: Option<PathBuf>,
        /// Use the newest dump in the crash directory ($CRASHCATCH_DUMP_DIR or
        /// $XDG_CACHE_HOME/crashcatch/dumps).
        #[arg(long, conflicts_with = "dump")]
        last: bool,
        /// A running process instead of a dump: `crashcatch symbolize --pid PID` dumps it
        /// first (its threads stopped for a moment; it goes on running) and reads that; with
        /// --nonblocking, reads it where it is without stopping it.
        #[arg(long, value_name = "PID", conflicts_with_all = ["dump", "last"])]
        pid: Option<i32>,
        /// With --pid: read the process's memory while it runs (no ptrace; works even when a
        /// debugger is attached). A thread blocked in a system call gets its Python and
        /// native stacks, a running one only its Python stack; stacks may be torn (a frame
        /// entered or left while it was read).
        #[arg(long, requires = "pid")]
        nonblocking: bool,
        /// Machine-readable output (schema: docs/json-schema.md).
        #[arg(long)]
        json: bool,
        /// Only the Python stacks.
        #[arg(long, conflicts_with = "native_all")]
        python_only: bool,
        /// Also show the interpreter's own native frames (eval loop, call plumbing), which
        /// are hidden between Python frames by default.
        #[arg(long)]
        native_all: bool,
        /// Also look for module files (by file name) and debug files (DIR/.build-id/xx/rest.debug)
        /// in DIR; repeatable. A file is used only if its build id is the one recorded in the
        /// dump. Debug files are also looked for in /usr/lib/debug ($CRASHCATCH_DEBUG_ROOT),
        /// through .gnu_debuglink, and from debuginfod servers ($DEBUGINFOD_URLS).
        #[arg(long = "symbols-path", value_name = "DIR")]
        symbols_path: Vec<PathBuf>,
        /// The target's root file system, as gdb's `set sysroot`: a module recorded at /p is
        /// looked for at DIR/p first (its build id still checked), its debug files under
        /// DIR/usr/lib/debug. For a process in a container or chroot: /proc/PID/root while it
        /// runs, else a copy of its files.
        #[arg(long, value_name = "DIR")]
        sysroot: Option<PathBuf>,
        /// A CPython layout table made by tools/layouts/gen_layouts.py for an interpreter
        /// build the built-in table does not describe (3.13+ dumps carry their own offsets,
        /// which are preferred anyway).
        #[arg(long, value_name = "FILE")]
        layout_table: Option<PathBuf>,
    },
    /// Write the dump as an ELF core file that gdb opens with the program:
    /// `gdb /usr/bin/python3.12 FILE` (threads, registers, signal, the dump's memory, the
    /// shared libraries' list).
    Core {
        /// The minidump.
        dump: PathBuf,
        /// The core file to write (replaced if it exists; written completely or not at all).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Write a minidump of a running Python process from outside (it goes on running).
    Dump {
        /// The process to dump.
        pid: u32,
        /// The dump's path (default: PROGRAM-PID-TIME.dmp in the current directory).
        #[arg(short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// gdb with crashcatch's commands loaded (py-bt, cc-bt, ...); every argument goes to gdb.
    Gdb {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// lldb with crashcatch's commands loaded (the newest lldb with Python, or
    /// $CRASHCATCH_LLDB); every argument goes to lldb.
    Lldb {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Print the path of crashcatch's gdb commands (for `(gdb) source PATH`).
    DebuggerScripts {
        /// The gdb commands (the default).
        #[arg(long, conflicts_with = "lldb")]
        gdb: bool,
        /// The lldb plugin instead (for `command script import PATH`).
        #[arg(long)]
        lldb: bool,
    },
    /// Print a shell completion script for every crashcatch command, e.g.
    /// `crashcatch completion bash > ~/.local/share/bash-completion/completions/crashcatch`.
    Completion { shell: clap_complete::Shell },
    /// The helper process of crashcatch's gdb commands (gdb-scripts/): speaks a line
    /// protocol on stdin/stdout, not for people.
    #[command(hide = true)]
    DebuggerHelper,
}

fn dump_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CRASHCATCH_DUMP_DIR").filter(|d| !d.is_empty()) {
        return d.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("crashcatch").join("dumps")
}

fn newest_dump() -> Result<PathBuf, String> {
    let dir = dump_dir();
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        format!(
            "cannot list the crash directory {}: {e} (give the dump's path, or set CRASHCATCH_DUMP_DIR to \
             where the program wrote it)",
            dir.display()
        )
    })?;
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "dmp"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
        .ok_or_else(|| {
            format!(
                "no .dmp file in {} (give the dump's path, or set CRASHCATCH_DUMP_DIR to where the \
                 program wrote it)",
                dir.display()
            )
        })
}

fn main() {
    let cli = Cli::parse();
    let (dump, last, pid, json, python_only, native_all, symbols_path, sysroot, layout_table) =
        match cli.command {
            Command::DebuggerHelper => return symbolizer::debugger::serve(),
            Command::Symbolize { pid: Some(_), nonblocking: false, .. } => python_front("symbolize --pid"),
            Command::Symbolize {
                dump,
                last,
                pid,
                json,
                python_only,
                native_all,
                symbols_path,
                sysroot,
                layout_table,
                ..
            } => (dump, last, pid, json, python_only, native_all, symbols_path, sysroot, layout_table),
            Command::Core { dump, output } => write_core(&dump, &output),
            Command::List { dir, json } => list_dumps(dir, json),
            Command::Completion { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "crashcatch", &mut std::io::stdout());
                return;
            }
            Command::Run { .. } => python_front("run"),
            Command::Dump { .. } => python_front("dump"),
            Command::Gdb { .. } => python_front("gdb"),
            Command::Lldb { .. } => python_front("lldb"),
            Command::DebuggerScripts { .. } => python_front("debugger-scripts"),
        };
    let path = match (dump, last, pid) {
        (_, _, Some(pid)) => PathBuf::from(format!("/proc/{pid}")),
        (Some(p), _, _) => p,
        (None, true, _) => newest_dump().unwrap_or_else(|e| fail(&e)),
        (None, false, _) => fail("give a dump file, or --last for the newest one, or --pid PID"),
    };
    let layout_table = layout_table.map(|p| {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| fail(&format!("cannot read the layout table {}: {e}", p.display())))
    });
    let options = Options { symbol_dirs: symbols_path, sysroot, layout_table, python_only };
    let loaded = match pid {
        Some(pid) => symbolizer::from_live::load(pid, &options).map_err(|e| e.to_string()),
        None => Crash::load_with(&path, &options).map_err(|e| e.to_string()),
    };
    let mut crash = loaded.unwrap_or_else(|e| fail(&e));
    if python_only {
        crash.threads.iter_mut().for_each(|t| {
            t.native.clear();
            t.native_stopped = None;
        });
    }
    if json {
        emit(&(terminal::json_text(&render::JsonDoc(&crash)) + "\n"));
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        emit(&render::text(&crash, &render::Style::new(colour), native_all));
    }
    if let Some(damaged) = &crash.damaged {
        fail(&format!("{}: {damaged}", path.display()));
    }
    // What could be read is printed above; a dump whose Python stacks cannot be decoded at
    // all (no memory, a Python version crashcatch does not know) is still a failure.
    if let Some(problem) = &crash.python_problem {
        if crash.threads.iter().all(|t| t.python.is_empty()) {
            let hint = if crash.python_version.is_empty() {
                ""
            } else {
                "; for an interpreter build crashcatch does not know, try --layout-table"
            };
            fail(&format!(
                "{}: no Python stack could be decoded: {problem} (the native stacks above are complete{hint})",
                path.display()
            ));
        }
    }
}

/// The commands the Python package's `crashcatch` runs itself (they need the interpreter
/// or the package's files); this program only describes them.
fn python_front(command: &str) -> ! {
    fail(&format!("`{command}` is run by the `crashcatch` command of the Python package (or `python -m crashcatch`), not by this program"))
}

fn list_dumps(dir: Option<PathBuf>, json: bool) -> ! {
    let dir = dir.unwrap_or_else(dump_dir);
    let listed = list::list(&dir).unwrap_or_else(|e| fail(&e.to_string()));
    if json {
        emit(&(terminal::json_text(&list::json(&listed)) + "\n"));
    } else {
        emit(&list::text(&dir, &listed));
    }
    std::process::exit(0);
}

fn write_core(dump: &std::path::Path, output: &std::path::Path) -> ! {
    let done = symbolizer::core::convert_file(dump, output).unwrap_or_else(|e| fail(&e.to_string()));
    for warning in &done.warnings {
        eprintln!("crashcatch: warning: {}", terminal::Escaped(warning));
    }
    let program = done.program.as_deref().unwrap_or("PROGRAM");
    println!(
        "{}",
        terminal::Escaped(&format!(
            "crashcatch: wrote {} ({} threads, {} memory ranges, {} bytes); open it with: gdb {program} {}",
            output.display(),
            done.threads,
            done.segments,
            done.bytes,
            output.display()
        ))
    );
    std::process::exit(0);
}

/// `msg` may name the dump (whose file name comes from the crashed program's) or quote it.
/// Writes the command's output. When whoever reads it has gone (`crashcatch symbolize DUMP
/// | head`), the process ends as C tools do, of SIGPIPE and without a word, instead of
/// panicking with a backtrace: Rust ignores SIGPIPE, which is kept for the rest of the run
/// (a closed socket must be an error, not the end).
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // SAFETY: restores SIGPIPE's default action and raises it in this thread: the
            // process ends here, as the reader's shell expects (status 141).
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
            std::process::exit(141);
        }
        Err(e) => fail(&format!("cannot write the output: {e}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("crashcatch: {}", terminal::Escaped(msg));
    std::process::exit(2);
}
