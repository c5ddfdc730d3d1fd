"""The `crashcatch` command.

    crashcatch run SCRIPT [ARGS...]      run a Python script with crashcatch enabled
    crashcatch run -m MODULE [ARGS...]   run a module with crashcatch enabled
    python -m crashcatch run ...         the same, without the console script
"""
import argparse
import runpy
import sys


def _run(args):
    import crashcatch

    crashcatch.enable()
    if args.module:
        sys.argv = [args.target, *args.args]
        runpy.run_module(args.target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [args.target, *args.args]
        runpy.run_path(args.target, run_name="__main__")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="crashcatch", description="Crash reports for Python processes.")
    commands = parser.add_subparsers(dest="command", required=True)
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
