"""The `crashcatch` command.

    crashcatch run SCRIPT [ARGS...]      run a Python script with crashcatch enabled (and in
                                         the Python processes it starts)
    crashcatch run -m MODULE [ARGS...]   run a module with crashcatch enabled
    crashcatch symbolize DUMP|--last [--json]
                                         read a minidump: what happened, every thread's stack
    crashcatch symbolize --pid PID [--json]
                                         the same for a running Python process (dumped first;
                                         it goes on running)
    crashcatch symbolize --pid PID --nonblocking [--json]
                                         the same, read while it runs, never stopped (no
                                         ptrace; stacks may be torn)
    crashcatch dump PID [-o FILE]        write a minidump of a running Python process from
                                         outside (it goes on running)
    crashcatch core DUMP -o FILE         write a minidump as an ELF core file for gdb
    crashcatch list [DIR] [--json]       the dumps in the crash directory, newest first, with
                                         their crash signatures
    crashcatch completion SHELL          a completion script for bash, zsh, fish, ...
    crashcatch gdb ARGS...               gdb with crashcatch's commands loaded (py-bt, cc-bt, ...);
                                         every argument goes to gdb
    crashcatch lldb ARGS...              lldb with crashcatch's commands loaded (the newest
                                         lldb with Python, or $CRASHCATCH_LLDB)
    crashcatch debugger-scripts [--lldb] the path of the gdb commands, for `(gdb) source PATH`
                                         (--lldb: of the lldb plugin, for `command script import`)
    python -m crashcatch ...             the same (the installed `crashcatch` is a native program
                                         that runs this for the commands above it cannot run)

`crashcatch --help` (answered by the native program) lists them all.
"""
import argparse
import glob
import os
import re
import subprocess
import runpy
import shutil
import sys

_SYMBOLIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "crashcatch-symbolize")
_DUMPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "crashcatch-dump")
# gdb-scripts/ of the source tree, copied here when the wheel is built.
_DEBUGGER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_debugger")
_SCRIPTS = {"gdb": "crashcatch_gdb.py", "lldb": "crashcatch_lldb.py"}


def _debugger_script(debugger="gdb"):
    script = os.path.join(_DEBUGGER_DIR, _SCRIPTS[debugger])
    if not os.path.exists(script):
        print(f"crashcatch: {script} is missing: reinstall crashcatch", file=sys.stderr)
        return None
    return script


def _gdb(args):
    """Runs gdb with crashcatch's commands loaded; every argument is gdb's."""
    script = _debugger_script("gdb")
    if script is None:
        return 2
    gdb = os.environ.get("CRASHCATCH_GDB") or "gdb"
    try:
        os.execvp(gdb, [gdb, "-x", script, *args])
    except OSError as e:
        print(f"crashcatch: cannot run {gdb}: {e} (install gdb, or set CRASHCATCH_GDB to it)", file=sys.stderr)
        return 2


def _lldb_python_problem(lldb):
    """None if `lldb` runs and has its Python module (`lldb -P` names the directory holding
    the `lldb` package: a quick check that starts no debugger session), else what is wrong."""
    try:
        r = subprocess.run([lldb, "-P"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot run it ({e})"
    where = r.stdout.decode("utf-8", "replace").strip().splitlines()
    if r.returncode != 0 or not where:
        return "`lldb -P` failed: built without Python?"
    if not os.path.exists(os.path.join(where[-1], "lldb", "__init__.py")):
        return f"its Python module is not installed ({where[-1]}/lldb; Debian: python3-lldb-NN)"
    return None


def _lldb_candidates():
    """lldb programs to try, best first: $CRASHCATCH_LLDB alone when set; else the newest
    /usr/lib/llvm-NN/bin/lldb first, then `lldb` on PATH (Debian's plain `lldb` may be old)."""
    env = os.environ.get("CRASHCATCH_LLDB")
    if env:
        return [env]

    def version(path):
        m = re.search(r"/llvm-(\d+)/", path)
        return int(m.group(1)) if m else -1

    found = sorted(glob.glob("/usr/lib/llvm-*/bin/lldb"), key=version, reverse=True)
    on_path = shutil.which("lldb")
    if on_path and os.path.realpath(on_path) not in [os.path.realpath(p) for p in found]:
        found.append(on_path)
    return found


def _lldb(args):
    """Runs lldb with crashcatch's plugin loaded; every argument is lldb's."""
    script = _debugger_script("lldb")
    if script is None:
        return 2
    tried = []
    for lldb in _lldb_candidates():
        problem = _lldb_python_problem(lldb)
        if problem is None:
            try:
                # `crashcatch-frames auto`: Python frames in `bt` (lldb 22+) from the start;
                # the target exists only after the -O commands, before the program runs.
                os.execv(lldb, [lldb, "-O", f"command script import \"{script}\"",
                                "-o", "crashcatch-frames auto", *args])
            except OSError as e:
                problem = f"cannot run it ({e})"
        tried.append(f"  {lldb}: {problem}")
    if not tried:
        tried.append("  no lldb found (/usr/lib/llvm-NN/bin/lldb, lldb on PATH)")
    print("crashcatch: no usable lldb with Python; tried:\n" + "\n".join(tried) +
          "\ninstall lldb with its Python module (Debian: lldb-19 python3-lldb-19), or set CRASHCATCH_LLDB",
          file=sys.stderr)
    return 2


def _native_program(path):
    if not os.access(path, os.X_OK):
        print(f"crashcatch: {path} is missing: reinstall crashcatch", file=sys.stderr)
        return False
    return True


def _dump(args):
    """`crashcatch dump PID [-o FILE]`: crashcatch-dump --pid does the work and the talking."""
    parser = argparse.ArgumentParser(prog="crashcatch dump",
                                     description="Write a minidump of a running Python process; it goes on running.")
    parser.add_argument("pid", type=int, help="the process to dump")
    parser.add_argument("-o", dest="output", metavar="FILE",
                        help="the dump's path (default: PROGRAM-PID-TIME.dmp in the current directory)")
    opts = parser.parse_args(args)
    if not _native_program(_DUMPER):
        return 2
    os.execv(_DUMPER, [_DUMPER, "--pid", str(opts.pid), *(["-o", opts.output] if opts.output else [])])


def _symbolize_pid(args):
    """`crashcatch symbolize --pid PID ...`: a dump of the process to a temporary file, read
    by the symbolizer with the other arguments, so the output is that of the dump's."""
    import tempfile

    at = args.index("--pid")
    if at + 1 >= len(args) or not args[at + 1].isdigit():
        print("usage: crashcatch symbolize --pid PID [--nonblocking] [--json] [other symbolize options]",
              file=sys.stderr)
        return 2
    pid, rest = args[at + 1], args[:at] + args[at + 2:]
    if not (_native_program(_DUMPER) and _native_program(_SYMBOLIZER)):
        return 2
    with tempfile.TemporaryDirectory(prefix="crashcatch-pid-") as tmp:
        path = os.path.join(tmp, f"{pid}.dmp")
        dumped = subprocess.run([_DUMPER, "--pid", pid, "-o", path], stdout=subprocess.DEVNULL)
        if dumped.returncode != 0:
            return 2
        # The process still runs: its own files (in a container or chroot, not ours at the
        # same paths) are reachable through /proc/PID/root.
        if not any(a == "--sysroot" or a.startswith("--sysroot=") for a in rest):
            rest = ["--sysroot", f"/proc/{pid}/root", *rest]
        return subprocess.run([_SYMBOLIZER, "symbolize", *rest, path]).returncode


def _enable_in_children():
    """Python processes started from here (subprocesses, multiprocessing children) enable
    crashcatch at start-up too, through the sitecustomize module in _run_children (which
    runs any sitecustomize it shadows). Interpreters started with -E, -I or -S skip it."""
    children = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_run_children")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = children + (os.pathsep + path if path else "")
    os.environ["CRASHCATCH_RUN_CHILDREN"] = "1"


def _run(argv):
    import crashcatch

    parser = argparse.ArgumentParser(prog="crashcatch run",
                                     description="Run a script or module with crashcatch enabled.")
    parser.add_argument("-m", dest="module", action="store_true", help="run TARGET as a module")
    parser.add_argument("target", help="script path, or module name with -m")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    args = parser.parse_args(argv)
    # sys.argv first: enable() names the dumps after sys.argv[0], the program being run
    # (not `crashcatch` or `__main__.py`).
    sys.argv = [args.target, *args.args]
    crashcatch.enable()
    _enable_in_children()
    if args.module:
        runpy.run_module(args.target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(args.target, run_name="__main__")
    return 0


def _debugger_scripts(flags):
    if flags not in ([], ["--gdb"], ["--lldb"]):
        print("usage: crashcatch debugger-scripts [--gdb | --lldb]", file=sys.stderr)
        return 2
    script = _debugger_script("lldb" if flags == ["--lldb"] else "gdb")
    if script is None:
        return 2
    print(script)
    return 0


# The commands run here, in Python; the native program runs the others (symbolize, core,
# list, completion) and answers --help for all of them: its command line describes every
# command, so `crashcatch --help` and `crashcatch completion SHELL` cover these too.
_PYTHON_COMMANDS = {"run": _run, "dump": _dump, "gdb": _gdb, "lldb": _lldb, "debugger-scripts": _debugger_scripts}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["symbolize"] and "--pid" in argv and "--nonblocking" not in argv:
        return _symbolize_pid(argv[1:])
    if argv and argv[0] in _PYTHON_COMMANDS:
        return _PYTHON_COMMANDS[argv[0]](argv[1:])
    if not _native_program(_SYMBOLIZER):
        return 2
    os.execv(_SYMBOLIZER, ["crashcatch", *argv])


if __name__ == "__main__":
    sys.exit(main())
