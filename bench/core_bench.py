"""One crash, two core files: the kernel's, and `crashcatch core` of crashcatch's minidump.
Size (apparent and on disk) and gdb's start + `bt` time on each; run by hand, not a test.

    python3 bench/core_bench.py [--runs 5] [--interp pyenv-3.12]

Needs the interpreters prepared by tests/prepare_envs.py (build/envs.json) and a plain
`core` core_pattern (a pipe to a crash collector is reported, not changed). The crash:
buggyext.call_back(lambda: buggyext.segfault(2)) two Python frames deep, three Python
threads waiting. gdb runs `gdb -nx -batch -ex bt PYTHON CORE` once untimed (page cache warm),
then --runs times; the median and minimum wall times are printed, with the load average (the
machine is shared: compare runs made together).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from crashlib import THREADED_CRASH, run_script  # noqa: E402
from interpreters import load_prepared  # noqa: E402


def gdb_times(python, core, runs):
    cmd = ["gdb", "-nx", "-batch", "-ex", "bt", python, core]
    first = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, DEBUGINFOD_URLS=""))
    frames = sum(line.startswith("#") for line in first.stdout.splitlines())
    times = []
    for _ in range(runs):
        start = time.monotonic()
        subprocess.run(cmd, capture_output=True, env=dict(os.environ, DEBUGINFOD_URLS=""))
        times.append(time.monotonic() - start)
    return statistics.median(times), min(times), frames


def crash_and_convert(interp):
    """One crash of `interp` (prepared, on the host) with cores allowed: (minidump, kernel core,
    converted core, seconds `crashcatch core` took); exits when the kernel writes no core file."""
    pattern = open("/proc/sys/kernel/core_pattern").read().strip()
    if pattern != "core":
        sys.exit(f"core_pattern is {pattern!r}, not a plain 'core' file: no kernel core to compare with")
    r = run_script(interp, THREADED_CRASH.format(call="buggyext.call_back(lambda: buggyext.segfault(2))"),
                   core=True)
    run_dir = os.path.dirname(r.script)
    kernel, converted = run_dir + "/core", run_dir + "/converted.core"
    if len(r.dumps) != 1 or not os.path.exists(kernel):
        sys.exit(f"the crash left {len(r.dumps)} dumps and {'a' if os.path.exists(kernel) else 'no'} core")
    crashcatch = os.path.join(os.path.dirname(interp.venv_python), "crashcatch")
    start = time.monotonic()
    subprocess.run([crashcatch, "core", r.dumps[0], "-o", converted], check=True, capture_output=True)
    return r.dumps[0], kernel, converted, time.monotonic() - start


def host_interpreter(prefix):
    return next(i for i in load_prepared()[0] if i.name.startswith(prefix) and not i.root)


def print_core_table(interp, dump, cores, convert, runs):
    """Size and gdb start + `bt` time of each (name, path) in `cores`."""
    print(f"{interp.name}, loadavg {os.getloadavg()[0]:.1f}; minidump {os.path.getsize(dump)} bytes, "
          f"`crashcatch core` took {convert * 1000:.0f} ms")
    print(f"{'core':<22} {'bytes':>12} {'on disk':>10} {'gdb bt median':>14} {'min':>7} {'frames':>7}")
    for name, path in cores:
        median, best, frames = gdb_times(interp.python, path, runs)
        disk = os.stat(path).st_blocks * 512
        print(f"{name:<22} {os.path.getsize(path):>12} {disk:>10} {median:>13.2f}s {best:>6.2f}s {frames:>7}")


def parse_and_crash(description):
    """Parses --runs and --interp, crashes that interpreter once: (args, interp, minidump,
    kernel core, converted core, seconds `crashcatch core` took)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interp", default="pyenv-3.12", help="prefix of a prepared host interpreter's name")
    args = parser.parse_args()
    interp = host_interpreter(args.interp)
    return (args, interp, *crash_and_convert(interp))


def main():
    args, interp, dump, kernel, converted, convert = parse_and_crash(__doc__.splitlines()[0])
    print_core_table(interp, dump, [("kernel", kernel), ("crashcatch core", converted)], convert, args.runs)


if __name__ == "__main__":
    main()
