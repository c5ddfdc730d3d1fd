"""crashcatch's gdb commands vs CPython's own (Tools/gdb/libpython.py) on the same stop, and the
two cores of one crash in gdb; run by hand, not a test.

    python3 bench/gdb_bench.py [--runs 5] [--interp pyenv-3.12]

The stop: bench/core_bench.py's crash (buggyext.call_back(lambda: buggyext.segfault(2)), three
Python threads waiting) on a pyenv build, which has DWARF: libpython.py needs it, crashcatch
does not. Its kernel core is opened in gdb once with crashcatch's commands (the script
`crashcatch debugger-scripts` prints) and once with libpython.py (the python3.X-gdb.py pyenv
installs beside the interpreter). Inside each gdb, `py-bt` runs once (cold: crashcatch starts its helper process,
libpython.py looks up its types) and then --runs times (warm); both frame lists are printed
to show they agree. Then core_bench's table: size and gdb start + `bt` for the kernel core vs
the converted minidump (`crashcatch core`). Offline (DEBUGINFOD_URLS empty); the machine is
shared: compare numbers made in one run, with the load average printed on top.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from core_bench import parse_and_crash, print_core_table  # noqa: E402

# Runs inside gdb (its own Python): py-bt's output once, then the cold and warm times.
TIMER = r"""
python
import time, statistics
def _timed():
    start = time.monotonic()
    text = gdb.execute("py-bt", to_string=True)
    return time.monotonic() - start, text
cold, text = _timed()
warm = [_timed()[0] for _ in range(RUNS)]
print(text, end="")
print("@@TIMES %f %f %f" % (cold, statistics.median(warm), min(warm)))
end
"""
FRAME_RE = re.compile(r'^  File "(?P<file>[^"]*)", line (?P<line>\d+),? in (?P<func>.*)$')


def libpython_script(interp):
    beside = os.path.join(os.path.dirname(interp.python), f"python3.{interp.minor}-gdb.py")
    if os.path.exists(beside):
        return beside
    sys.exit(f"no libpython.py (python3.{interp.minor}-gdb.py) beside {interp.python}: pick a pyenv build")


def py_bt(interp, core, loader, runs):
    """(frames, cold seconds, warm median, warm min) of py-bt in gdb with `loader` arguments."""
    timer = os.path.join(os.path.dirname(core), "py-bt-timer.gdb")
    with open(timer, "w") as f:
        f.write(TIMER.replace("RUNS", str(runs)))
    cmd = ["gdb", "-nx", "-batch", *loader, "-x", timer, interp.python, core]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, DEBUGINFOD_URLS=""))
    m = re.search(r"^@@TIMES (\S+) (\S+) (\S+)$", r.stdout, re.M)
    if not m:
        sys.exit(f"py-bt failed with {loader}:\n{r.stdout}\n{r.stderr}")
    frames = [(os.path.basename(f["file"]), f["line"], f["func"])
              for f in map(FRAME_RE.match, r.stdout.splitlines()) if f]
    return frames, *map(float, m.groups())


def main():
    args, interp, dump, kernel, converted, convert = parse_and_crash(__doc__.splitlines()[0])
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    ours = subprocess.run([crashcatch, "debugger-scripts"], capture_output=True, text=True, check=True).stdout.strip()
    theirs = libpython_script(interp)
    print(f"{interp.name}, loadavg {os.getloadavg()[0]:.1f}; py-bt on the kernel core, {args.runs} warm runs; "
          f"libpython.py: {theirs}")
    print(f"{'py-bt':<14} {'cold':>8} {'warm median':>12} {'min':>8} {'frames':>7}")
    results = {}
    for name, loader in (("crashcatch", ["-ex", "source " + ours]),
                         ("libpython.py", ["-x", theirs])):
        frames, cold, median, best = py_bt(interp, kernel, loader, args.runs)
        results[name] = frames
        print(f"{name:<14} {cold * 1000:>6.0f}ms {median * 1000:>10.1f}ms {best * 1000:>6.1f}ms {len(frames):>7}")
    same = len(set(map(tuple, results.values()))) == 1
    print("the same frames (file name, line, function)" if same else f"frames differ: {results}")
    print()
    print_core_table(interp, dump, [("kernel", kernel), ("crashcatch core", converted)], convert, args.runs)


if __name__ == "__main__":
    main()
