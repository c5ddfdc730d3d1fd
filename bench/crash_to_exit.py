"""Crash-to-exit time, side by side: no handler, faulthandler, crashcatch text-only,
crashcatch with its minidump (the default).

    python bench/crash_to_exit.py [--python VENV_PYTHON] [--ext-dir DIR] [--runs N]
                                  [--threads 1,100,500,1000] [--no-strace]

The child writes CLOCK_MONOTONIC (system-wide) and its own CPU time just before calling
buggyext.segfault(); the parent takes the same clock when wait4() returns, and the child's
CPU time (its threads and the dump helper it reaped) from wait4's rusage. Reports the
median and p90 of the wall time and the median CPU time (user + sys) from the crash to the
exit, over N runs per thread count (the extra threads sit in Python code, so every report
has a traceback per thread to write; faulthandler and crashcatch stop at 100 by default).
Output goes to /dev/null-backed files, as a service's stderr would.

Then where the dump helper's time went (the metadata's `helper_ms`, medians over the runs
with the minidump: `spawned` is from the crash's request to the helper's main, `total` from
there until the dump is complete in memory; the crash also waits for the file write and for
its own text), and, as a figure the machine's load cannot change, one run of each crashcatch mode under
`strace -f` counts the process_vm_readv calls: the handler's own (the process reading
itself) and the dump helper's (reading the process).
"""
import argparse
import collections
import glob
import json
import os
import shutil
import statistics
import struct
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
# Every other thread waits in stop.wait(), so each report shows the same stacks.
while len(stop._cond._waiters) < nthreads - 1:
    time.sleep(0.001)
os.write(int(os.environ["CLOCK_FD"]),
         f"{time.clock_gettime_ns(time.CLOCK_MONOTONIC)} {time.process_time_ns()}".encode())
buggyext.segfault()
"""


def one(python, ext_dir, mode, nthreads, script):
    """(wall ms, CPU ms) from the crash to the exit."""
    r, w = os.pipe()
    env = dict(os.environ, PYTHONPATH=ext_dir, CLOCK_FD=str(w), CRASHCATCH_DUMP_DIR=DUMP_DIR)
    with open(os.devnull, "w") as devnull:
        p = subprocess.Popen([python, script, mode, str(nthreads)], pass_fds=(w,), env=env,
                             stdout=devnull, stderr=devnull)
        os.close(w)
        _, status, usage = os.wait4(p.pid, 0)
        end = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        p.returncode = os.waitstatus_to_exitcode(status)
    start, cpu_start = (int(x) for x in (os.read(r, 64) or b"0 0").split())
    os.close(r)
    if p.returncode != -11 or not start:
        raise SystemExit(f"{mode}/{nthreads}: unexpected exit {p.returncode}")
    cpu_end = (usage.ru_utime + usage.ru_stime) * 1e9
    return (end - start) / 1e6, (cpu_end - cpu_start) / 1e6


METADATA_STREAM = 0x4343_0001
# Besides the phases (helper_ms's marks), in the order they ended (its `ends`): a crash's
# writer stops the threads on its own thread meanwhile, so its marks (writer_stopped,
# handoff_wait) fall among the walk's.
BEFORE, AFTER = ("spawned_ms",), ("total_ms",)
SKIP = {"ends", "user_ms", "sys_ms", "max_rss_kib"}
# A helper without `ends` (an older build, side by side) ran its phases in this order.
SEQUENTIAL = ("request", "proc_files", "walk", "names", "names_joined", "metadata", "writer_until_stopped",
              "look_again", "writer_after_stop", "report_wait", "finish")


def helper_ms(dump):
    """The `helper_ms` entry of a dump's crashcatch metadata stream ({} if none)."""
    data = open(dump, "rb").read()
    count, directory = struct.unpack_from("<II", data, 8)
    for i in range(count):
        kind, size, rva = struct.unpack_from("<III", data, directory + 12 * i)
        if kind == METADATA_STREAM:
            return json.loads(data[rva:rva + size]).get("helper_ms", {})
    return {}


def count_reads(python, ext_dir, mode, nthreads, script):
    """process_vm_readv calls in one run under strace: (the process's own, the helper's)."""
    with tempfile.NamedTemporaryFile(suffix=".strace") as log:
        r, w = os.pipe()
        env = dict(os.environ, PYTHONPATH=ext_dir, CLOCK_FD=str(w), CRASHCATCH_DUMP_DIR=DUMP_DIR)
        with open(os.devnull, "w") as devnull:
            subprocess.run(["strace", "-f", "-qq", "-e", "trace=process_vm_readv,execve,clone,clone3", "-o", log.name,
                            python, script, mode, str(nthreads)], pass_fds=(w,), env=env,
                           stdout=devnull, stderr=devnull)
        os.close(w)
        os.close(r)
        counts = collections.Counter()
        helpers = set()
        for line in open(log.name, errors="replace"):
            caller, _, call = line.partition(" ")
            call = call.lstrip()
            if call.startswith("execve(") and "crashcatch-dump" in call:
                helpers.add(caller)
            elif caller in helpers and call.startswith(("clone", "<... clone")) and ") = " in call:
                # The helper's own threads (a crash's writer, the names reader) are its too.
                helpers.add(call.rsplit(") = ", 1)[1].split()[0])
            elif call.startswith("process_vm_readv("):
                counts["helper" if caller in helpers else "own"] += 1
    return counts["own"], counts["helper"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=os.path.join(REPO, "build", "demo-venv", "bin", "python"))
    ap.add_argument("--ext-dir", default=os.path.join(REPO, "build", "demo-ext"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", default="1,100,500,1000")
    ap.add_argument("--no-strace", action="store_true", help="skip the read counts")
    args = ap.parse_args()
    threads = [int(n) for n in args.threads.split(",")]
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(SCRIPT)
    print(f"crash-to-exit, ms: wall median / p90 (CPU median) of {args.runs} runs, {args.python}")
    modes = ("none", "faulthandler", "crashcatch-text", "crashcatch")
    heads = ("no handler", "faulthandler", "crashcatch text", "+ minidump")
    print(f"{'threads':>8} " + " ".join(f"{h:>24}" for h in heads))
    phases = {}
    for nthreads in threads:
        cells = []
        for mode in modes:
            runs = [one(args.python, args.ext_dir, mode, nthreads, f.name) for _ in range(args.runs)]
            walls = sorted(wall for wall, _ in runs)
            cpu = statistics.median(cpu for _, cpu in runs)
            cells.append(f"{statistics.median(walls):7.2f} / {walls[int(len(walls) * 0.9) - 1]:6.2f} ({cpu:6.2f})")
        print(f"{nthreads:>8} " + " ".join(f"{c:>24}" for c in cells), flush=True)
        dumps = glob.glob(os.path.join(DUMP_DIR, "*.dmp"))
        phases[nthreads] = [helper_ms(d) for d in dumps]
        for d in dumps:
            os.unlink(d)
    print("\ndump helper, ms (metadata helper_ms, medians of the runs with the minidump)")
    print(f"{'phase':>21} " + " ".join(f"{n:>8}" for n in threads))
    ends = collections.defaultdict(list)
    for runs in phases.values():
        for p in runs:
            for name, at in p.get("ends", {}).items():
                ends[name].append(at)
    order = sorted((n for n in ends if n not in SKIP), key=lambda n: statistics.median(ends[n])) or SEQUENTIAL
    for phase in BEFORE + tuple(order) + AFTER:
        cells = []
        for nthreads in threads:
            values = [p[phase] for p in phases[nthreads] if phase in p]
            cells.append(f"{statistics.median(values):8.2f}" if values else f"{'-':>8}")
        print(f"{phase.removesuffix('_ms'):>21} " + " ".join(cells))
    if not args.no_strace and shutil.which("strace"):
        print("\nprocess_vm_readv calls in one run (strace -f): the handler's own / the dump helper's")
        print(f"{'threads':>8} {'crashcatch text':>24} {'+ minidump':>24}")
        for nthreads in threads:
            cells = []
            for mode in modes[2:]:
                own, helper = count_reads(args.python, args.ext_dir, mode, nthreads, f.name)
                cells.append(f"{own} / {helper}")
            print(f"{nthreads:>8} " + " ".join(f"{c:>24}" for c in cells), flush=True)
    os.unlink(f.name)
    shutil.rmtree(DUMP_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
