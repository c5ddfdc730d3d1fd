"""The `crashcatch` console script's entry point, a top-level module next to the `crashcatch`
package so that `crashcatch symbolize` and `crashcatch core` exec the native program without
importing the package (its Rust extension, threading, argparse, subprocess: about 60 ms of
CPU before the symbolizer even starts). Every other command, and `symbolize --pid` (which
runs the dumper first), goes to crashcatch.__main__.main, as `python -m crashcatch` does."""
import os
import sys


def _symbolizer():
    """crashcatch/_bin/crashcatch-symbolize beside this file, found without importing
    crashcatch (None if it is not there: the full command then says what is wrong)."""
    here = os.path.dirname(os.path.abspath(__file__))
    program = os.path.join(here, "crashcatch", "_bin", "crashcatch-symbolize")
    return program if os.access(program, os.X_OK) else None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    native = argv[:1] == ["core"] or (argv[:1] == ["symbolize"] and "--pid" not in argv)
    program = _symbolizer() if native else None
    if program is not None:
        os.execv(program, ["crashcatch", *argv])
    from crashcatch.__main__ import main as full_main

    return full_main(argv)


if __name__ == "__main__":
    sys.exit(main())
