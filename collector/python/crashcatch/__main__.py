"""The `crashcatch` command.

    crashcatch run SCRIPT [ARGS...]      run a Python script with crashcatch enabled (and in
                                         the Python processes it starts)
    crashcatch run -m MODULE [ARGS...]   run a module with crashcatch enabled
    crashcatch symbolize DUMP|--last [--json]
                                         read a minidump: what happened, every thread's stack
    crashcatch core DUMP -o FILE         write a minidump as an ELF core file for gdb
    python -m crashcatch ...             the same, without the console script
"""
import argparse
import os
import runpy
import sys

# Commands the native program shipped in this package runs.
_NATIVE_COMMANDS = ("symbolize", "core")
_SYMBOLIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "crashcatch-symbolize")


def _enable_in_children():
    """Python processes started from here (subprocesses, multiprocessing children) enable
    crashcatch at start-up too, through the sitecustomize module in _run_children (which
    runs any sitecustomize it shadows). Interpreters started with -E, -I or -S skip it."""
    children = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_run_children")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = children + (os.pathsep + path if path else "")
    os.environ["CRASHCATCH_RUN_CHILDREN"] = "1"


def _run(args):
    import crashcatch

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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in _NATIVE_COMMANDS:
        # The symbolizer is a native program shipped in this package.
        if not os.access(_SYMBOLIZER, os.X_OK):
            print(f"crashcatch: {_SYMBOLIZER} is missing: reinstall crashcatch", file=sys.stderr)
            return 2
        os.execv(_SYMBOLIZER, ["crashcatch", *argv])
    parser = argparse.ArgumentParser(prog="crashcatch", description="Crash reports for Python processes.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("symbolize", help="read a minidump (crashcatch symbolize --help)")
    commands.add_parser("core", help="write a minidump as an ELF core file for gdb (crashcatch core --help)")
    run = commands.add_parser("run", help="run a script or module with crashcatch enabled")
    run.add_argument("-m", dest="module", action="store_true", help="run TARGET as a module")
    run.add_argument("target", help="script path, or module name with -m")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
