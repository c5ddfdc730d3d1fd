"""Crash-to-exit time, side by side: no handler, faulthandler, crashcatch text-only,
crashcatch with its minidump (the default).

    python bench/crash_to_exit.py [--python VENV_PYTHON] [--ext-dir DIR] [--runs N]

The child writes CLOCK_MONOTONIC (system-wide) just before calling buggyext.segfault();
the parent takes the same clock when waitpid() returns. Reports the median and p90 over
N runs for 1 and 100 threads (the extra threads sit in Python code, so every report has
100 tracebacks to write). Output goes to /dev/null-backed files, as a service's stderr would.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DUMP_DIR = tempfile.mkdtemp(prefix="crashcatch-bench-")
REPO = os.path.dirname(HERE)

SCRIPT = """
import os, sys, threading, time
mode, nthreads = sys.argv[1], int(sys.argv[2])
import buggyext
if mode == "faulthandler":
    import faulthandler; faulthandler.enable()
elif mode == "crashcatch-text":
    import crashcatch; crashcatch.enable(minidump=False)
elif mode == "crashcatch":
    import crashcatch; crashcatch.enable()
stop = threading.Event()
ready = threading.Barrier(nthreads)
def idle():
    ready.wait()
    stop.wait()
for _ in range(nthreads - 1):
    threading.Thread(target=idle, daemon=True).start()
ready.wait()
os.write(int(os.environ["CLOCK_FD"]), str(time.clock_gettime_ns(time.CLOCK_MONOTONIC)).encode())
buggyext.segfault()
"""


def one(python, ext_dir, mode, nthreads, script):
    r, w = os.pipe()
    env = dict(os.environ, PYTHONPATH=ext_dir, CLOCK_FD=str(w), CRASHCATCH_DUMP_DIR=DUMP_DIR)
    with open(os.devnull, "w") as devnull:
        p = subprocess.Popen([python, script, mode, str(nthreads)], pass_fds=(w,), env=env,
                             stdout=devnull, stderr=devnull)
        os.close(w)
        p.wait()
        end = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    start = int(os.read(r, 64) or 0)
    os.close(r)
    if p.returncode != -11 or not start:
        raise SystemExit(f"{mode}/{nthreads}: unexpected exit {p.returncode}")
    return (end - start) / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=os.path.join(REPO, "build", "demo-venv", "bin", "python"))
    ap.add_argument("--ext-dir", default=os.path.join(REPO, "build", "demo-ext"))
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(SCRIPT)
    print(f"crash-to-exit time, ms (median / p90 of {args.runs} runs), {args.python}")
    modes = ("none", "faulthandler", "crashcatch-text", "crashcatch")
    print(f"{'threads':>8} {'no handler':>16} {'faulthandler':>16} {'crashcatch text':>16} {'+ minidump':>16}")
    for nthreads in (1, 100):
        cells = []
        for mode in modes:
            times = sorted(one(args.python, args.ext_dir, mode, nthreads, f.name) for _ in range(args.runs))
            cells.append(f"{statistics.median(times):7.2f} / {times[int(len(times) * 0.9) - 1]:6.2f}")
        print(f"{nthreads:>8} " + " ".join(f"{c:>16}" for c in cells))
    os.unlink(f.name)
    shutil.rmtree(DUMP_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
